#!/usr/bin/env python3
"""wallet_client.py's PSBT flow against a stand-in coordinator (in-process
gRPC servicers on loopback, stubs generated from proto/): `pubkey --show`,
`spend` (GetPublicKey, then SubmitSigningRequest with the PSBT) and `watch`
(the signed transaction and its txid once SIGNED). The real coordinator is
exercised by coordinator/tests/e2e_python_client.rs.

    python -m unittest test_wallet_client      (from examples/python)
"""
import contextlib
import io
import os
import unittest
from unittest import mock
from concurrent import futures

import grpc
from embit.psbt import PSBT

import wallet_client
from psbt_builder import build_spend, own_address
from test_psbt_builder import COIN_A, FIXTURE_ARGS, P, PAYEE_TR, Q

pb, rpc = wallet_client.load_stubs()

SIGNED_TX = bytes.fromhex("02000000000101" + "ab" * 40)
TXID = "3aa4bf4df982b4ac77da865b74e35365bad7e0b6fe3179182b50f8d8394de07c"


class Keys(rpc.KeyServiceServicer):
    def __init__(self, kind="bitcoin-taproot"):
        self.kind = kind

    def GetPublicKey(self, request, context):
        return pb.GetPublicKeyResponse(key=pb.PublicKey(
            key_id=request.key_id, kind=self.kind, internal_key=P, output_key=Q,
            network="regtest", address=own_address(Q, "regtest")))


class Requests(rpc.RequestServiceServicer):
    def __init__(self):
        self.submitted = []

    def SubmitSigningRequest(self, request, context):
        self.submitted.append(request)
        return pb.SigningRequestView(request_id="11" * 32, state="PENDING_APPROVAL")

    def WatchSigningRequest(self, request, context):
        states = ["PENDING_APPROVAL", "APPROVED", "SIGNING", "SIGNED"]
        for seq, (before, after) in enumerate(zip([""] + states, states)):
            view = pb.SigningRequestView(request_id=request.request_id, state=after)
            if after == "SIGNED":
                view.signed_transaction = SIGNED_TX
                view.transaction.txid = TXID
            yield pb.SigningRequestEvent(
                seq=seq, transition=pb.Transition(from_state=before, to_state=after), request=view)


class StandIn:
    """A coordinator stand-in on a loopback port."""

    def __init__(self, keys):
        self.requests = Requests()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        rpc.add_KeyServiceServicer_to_server(keys, self.server)
        rpc.add_RequestServiceServicer_to_server(self.requests, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def run(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = wallet_client.main(["--coordinator", f"127.0.0.1:{self.port}", *argv])
        return code, out.getvalue(), err.getvalue()


SPEND = ["spend", "--key-id", "btc-hot",
         "--prevout", COIN_A, "--prevout-amount", "60000",
         "--prevout", "b2" * 32 + ":1", "--prevout-amount", "40000",
         "--pay", PAYEE_TR, "--pay-amount", "25000",
         "--pay", "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", "--pay-amount", "30000",
         "--fee", "1500", "--requester", "wallet-service", "--idempotency-key", "py-psbt-1"]


class WalletClient(unittest.TestCase):
    def setUp(self):
        # Plaintext to the stand-in, whatever the environment says.
        env = mock.patch.dict(os.environ)
        env.start()
        self.addCleanup(env.stop)
        for var in ("RINGI_TLS_CA", "RINGI_TLS_CLIENT_CERT", "RINGI_TLS_CLIENT_KEY"):
            os.environ.pop(var, None)

    def stand_in(self, keys):
        s = StandIn(keys)
        self.addCleanup(s.server.stop, None)
        return s

    def test_spend_submits_the_psbt_and_watch_prints_the_transaction(self):
        s = self.stand_in(Keys())
        code, out, err = s.run(*SPEND, "--memo", "order 43")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), "11" * 32)
        (submitted,) = s.requests.submitted
        self.assertEqual(submitted.psbt, build_spend(*FIXTURE_ARGS).serialize())
        PSBT.parse(submitted.psbt)
        self.assertEqual(submitted.message, b"", "a PSBT request declares no message")
        self.assertEqual((submitted.asset, submitted.amount, submitted.destination), ("", "", ""))
        self.assertEqual((submitted.requester, submitted.idempotency_key, submitted.memo),
                         ("wallet-service", "py-psbt-1", "order 43"))

        code, out, err = s.run("watch", "11" * 32)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.split(), [SIGNED_TX.hex(), TXID])
        self.assertIn("-> SIGNED", err)

    def test_pubkey_shows_the_taproot_fields(self):
        s = self.stand_in(Keys())
        for show, expected in [("kind", "bitcoin-taproot"), ("internal-key", P.hex()),
                               ("output-key", Q.hex()), ("network", "regtest"),
                               ("address", own_address(Q, "regtest"))]:
            code, out, err = s.run("pubkey", "--key-id", "btc-hot", "--show", show)
            self.assertEqual((code, out.strip()), (0, expected), err)

    def test_spend_refuses_a_raw_message_key(self):
        s = self.stand_in(Keys(kind="frost-secp256k1"))
        code, _, err = s.run(*SPEND)
        self.assertEqual(code, 2)
        self.assertIn("not bitcoin-taproot", err)
        self.assertEqual(s.requests.submitted, [])

    def test_spend_refuses_what_cannot_be_built(self):
        s = self.stand_in(Keys())
        args = [a if a != "1500" else "100000" for a in SPEND]
        code, _, err = s.run(*args)
        self.assertEqual(code, 2)
        self.assertIn("do not cover", err)
        self.assertEqual(s.requests.submitted, [])

    def test_build_psbt_offline(self):
        # No coordinator is contacted: the stand-in's port is only a place holder.
        code, out, err = self.stand_in(Keys()).run(
            "build-psbt", "--internal-key", P.hex(), "--output-key", Q.hex(), "--network", "regtest",
            *SPEND[3:-4])
        self.assertEqual(code, 0, err)
        self.assertEqual(PSBT.from_string(out.strip()).serialize(), build_spend(*FIXTURE_ARGS).serialize())


if __name__ == "__main__":
    unittest.main()
