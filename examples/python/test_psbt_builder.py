#!/usr/bin/env python3
"""Unit tests of psbt_builder.py: no cluster, no network.

    python -m unittest test_psbt_builder      (from examples/python)

The PSBTs built decode with embit and carry what ringi's derive requires;
the spend described by FIXTURE_ARGS is committed as
psbt/tests/fixtures/python_embit_spend.psbt, which the Rust test
psbt/tests/python_fixture.rs derives (payments, change, fee, txid): this
test checks the builder still produces that file byte for byte. To
regenerate it after a deliberate change of the builder:

    python test_psbt_builder.py --write-fixture
"""
import os
import sys
import unittest

from embit.psbt import PSBT

import psbt_builder
from psbt_builder import BuildError, build_spend

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "..", "psbt", "tests", "fixtures", "python_embit_spend.psbt")

# BIP-86's first receiving key (m/86'/0'/0'/0/0): internal key, output key.
P = bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115")
Q = bytes.fromhex("a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c")
OWN_SCRIPT = bytes.fromhex("5120") + Q
# Another P2TR key's address, and a P2WPKH one (Bitcoin Core's key_io
# vectors), both on regtest.
PAYEE_TR = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6"
PAYEE_WPKH = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"
PAYEE_WPKH_SCRIPT = bytes.fromhex("00146f58bac9506f9bfb821d62e69330410bb56f0085")

COIN_A = "a1" * 32 + ":0"
COIN_B = "b2" * 32 + ":1"
# Two coins (60,000 + 40,000), 25,000 and 30,000 paid, 1,500 fee:
# 43,500 back as change.
FIXTURE_ARGS = (P, Q, "regtest", [(COIN_A, 60_000), (COIN_B, 40_000)],
                [(PAYEE_TR, 25_000), (PAYEE_WPKH, 30_000)], 1_500)


def roundtrip(psbt):
    """The PSBT as ringi receives it: serialized, then decoded by embit."""
    return PSBT.parse(psbt.serialize())


class BuildSpend(unittest.TestCase):
    def test_fixture_spend_decodes_with_everything_ringi_checks(self):
        psbt = roundtrip(build_spend(*FIXTURE_ARGS))
        self.assertIsNone(psbt.version, "a version-0 PSBT")
        self.assertEqual(psbt.unknown, {}, "no unknown global fields")
        tx = psbt.tx
        self.assertEqual(tx.version, 2)
        self.assertEqual(tx.locktime, 0)
        self.assertEqual([(i.txid.hex(), i.vout) for i in tx.vin], [("a1" * 32, 0), ("b2" * 32, 1)])
        self.assertTrue(all(i.sequence == 0xFFFFFFFD for i in tx.vin))
        for scope, amount in zip(psbt.inputs, [60_000, 40_000]):
            self.assertEqual(scope.witness_utxo.value, amount)
            self.assertEqual(scope.witness_utxo.script_pubkey.data, OWN_SCRIPT)
            self.assertEqual(scope.taproot_internal_key.xonly(), P)
            self.assertIsNone(scope.sighash_type, "SIGHASH_DEFAULT")
            self.assertIsNone(scope.non_witness_utxo)
            self.assertIsNone(scope.taproot_merkle_root)
            self.assertEqual(len(scope.taproot_scripts), 0)
            self.assertIsNone(scope.final_scriptwitness)
        self.assertEqual(
            [(o.value, o.script_pubkey.data) for o in tx.vout],
            [(25_000, bytes.fromhex("512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")),
             (30_000, PAYEE_WPKH_SCRIPT),
             (43_500, OWN_SCRIPT)])
        self.assertEqual(psbt.outputs[2].taproot_internal_key.xonly(), P)
        self.assertIsNone(psbt.outputs[0].taproot_internal_key)
        fee = sum(i.witness_utxo.value for i in psbt.inputs) - sum(o.value for o in tx.vout)
        self.assertEqual(fee, 1_500)

    def test_txid_and_sighashes(self):
        """embit's txid and BIP-341 sighashes (SIGHASH_DEFAULT) of the
        fixture spend: psbt/tests/python_fixture.rs checks ringi derives
        the same."""
        psbt = roundtrip(build_spend(*FIXTURE_ARGS))
        self.assertEqual(psbt.tx.txid().hex(),
                         "3aa4bf4df982b4ac77da865b74e35365bad7e0b6fe3179182b50f8d8394de07c")
        scripts = [i.witness_utxo.script_pubkey for i in psbt.inputs]
        values = [i.witness_utxo.value for i in psbt.inputs]
        self.assertEqual(
            [psbt.tx.sighash_taproot(i, scripts, values).hex() for i in range(2)],
            ["5f6bca48275d00224a6555eec4e747f1a51c3a250c203af6d542cda16d2d5665",
             "d22d82a622fd8aa75017c474bd6bd1c05654713f81502a5029209d0218fe2a85"])

    def test_fixture_is_what_the_builder_makes(self):
        with open(FIXTURE, "rb") as f:
            committed = f.read()
        self.assertEqual(build_spend(*FIXTURE_ARGS).serialize(), committed,
                         "the builder changed: regenerate the fixture (see the module doc) "
                         "and update psbt/tests/python_fixture.rs")

    def test_exact_amounts_leave_no_change(self):
        psbt = roundtrip(build_spend(P, Q, "regtest", [(COIN_A, 26_000)], [(PAYEE_TR, 25_000)], 1_000))
        self.assertEqual([o.value for o in psbt.tx.vout], [25_000])

    def test_own_address_is_bip86s(self):
        self.assertEqual(psbt_builder.own_address(Q, "bitcoin"),
                         "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr")

    def test_refusals(self):
        cases = [
            # change of 100 sat: dust
            ((P, Q, "regtest", [(COIN_A, 26_100)], [(PAYEE_TR, 25_000)], 1_000), "dust"),
            ((P, Q, "regtest", [(COIN_A, 25_000)], [(PAYEE_TR, 25_000)], 1_000), "do not cover"),
            # a mainnet address on a regtest key
            ((P, Q, "regtest", [(COIN_A, 60_000)],
              [("bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr", 25_000)], 1_000),
             "not a regtest address"),
            ((P, Q, "regtest", [(COIN_A, 60_000)], [("not-an-address", 25_000)], 1_000), "not an address"),
            # Q that is not P's tweak (P itself)
            ((P, P, "regtest", [(COIN_A, 60_000)], [(PAYEE_TR, 25_000)], 1_000), "tweak"),
            ((P, Q, "regtest", [("a1" * 31 + ":0", 60_000)], [(PAYEE_TR, 25_000)], 1_000), "32 bytes"),
            ((P, Q, "regtest", [("nocolon", 60_000)], [(PAYEE_TR, 25_000)], 1_000), "TXID:VOUT"),
            ((P, Q, "mainnet", [(COIN_A, 60_000)], [(PAYEE_TR, 25_000)], 1_000), "unknown network"),
            ((P, Q, "regtest", [], [(PAYEE_TR, 25_000)], 1_000), "nothing to spend"),
            ((P, Q, "regtest", [(COIN_A, 60_000)], [], 1_000), "nobody to pay"),
            ((P, Q, "regtest", [(COIN_A, 60_000)], [(PAYEE_TR, 0)], 1_000), "positive"),
        ]
        for args, reason in cases:
            with self.subTest(reason=reason):
                with self.assertRaises(BuildError) as caught:
                    build_spend(*args)
                self.assertIn(reason, str(caught.exception))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-fixture"]:
        os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
        with open(FIXTURE, "wb") as f:
            f.write(build_spend(*FIXTURE_ARGS).serialize())
        print(f"wrote {os.path.normpath(FIXTURE)}")
    else:
        unittest.main()
