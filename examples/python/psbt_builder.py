"""The unsigned PSBT a wallet service submits to ringi for a bitcoin-taproot key.

Built with embit (pure Python, PSBT and Taproot support; see README.md for
why this library). No network access, no private key: the wallet knows the
key's internal key P and output key Q from ringi's GetPublicKey, the coins
it holds at the key's P2TR address, and whom it pays.

The PSBT follows what ringi's coordinator and signers check before any
approver sees it (psbt/src/derive.rs): version 0, every input spends the
key's own key-path P2TR output and carries its `witness_utxo` (amount and
`OP_1 <Q>`) and `tap_internal_key` = P (BIP-371), SIGHASH_DEFAULT (no
sighash field), standard non-dust outputs, and change (if any) back to the
key's own address as the last output.
"""

from embit import ec
from embit.networks import NETWORKS
from embit.psbt import PSBT
from embit.script import Script, address_to_scriptpubkey
from embit.transaction import Transaction, TransactionInput, TransactionOutput

# ringi's network names (policy, GetPublicKey) and embit's.
NETWORK_NAMES = {"bitcoin": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}

# A P2TR output below this is dust (Bitcoin Core's dust relay fee, 3 sat/vB);
# ringi refuses dust outputs.
P2TR_DUST = 330

# BIP-125 replaceable, no relative or absolute lock time: what wallets send.
SEQUENCE_RBF = 0xFFFFFFFD


class BuildError(ValueError):
    """Inputs from which no PSBT ringi would accept can be built."""


def _network(network):
    try:
        return NETWORKS[NETWORK_NAMES[network]]
    except KeyError:
        raise BuildError(f"unknown network {network!r} (one of {', '.join(NETWORK_NAMES)})") from None


def own_script(output_key):
    """`OP_1 <Q>`: the script of the key's outputs."""
    if len(output_key) != 32:
        raise BuildError("the output key is 32 bytes (x-only)")
    return Script(b"\x51\x20" + bytes(output_key))


def own_address(output_key, network):
    """The key's P2TR address on `network`."""
    return own_script(output_key).address(_network(network))


def check_keys(internal_key, output_key):
    """Q must be P tweaked by BIP-341 with no script tree (BIP-86): a wallet
    that took its keys from GetPublicKey checks they belong together."""
    if len(internal_key) != 32:
        raise BuildError("the internal key is 32 bytes (x-only)")
    tweaked = ec.PublicKey.from_xonly(bytes(internal_key)).taproot_tweak(b"").xonly()
    if tweaked != bytes(output_key):
        raise BuildError("the output key is not the internal key's BIP-86 tweak")


def address_script(address, network):
    """The script an address pays, refusing an address of another network
    (embit's decoder takes any network's)."""
    net = _network(network)
    try:
        script = address_to_scriptpubkey(address)
        canonical = script.address(net)
    except Exception as e:
        raise BuildError(f"{address}: not an address ({e})") from None
    # Re-encoded for `network`, it is the same string (bech32 is
    # case-insensitive; a base58 address with another case fails its
    # checksum above).
    if canonical.lower() != address.lower():
        raise BuildError(f"{address} is not a {network} address")
    return script


def parse_outpoint(text):
    """`txid:vout` (txid in the usual display order) as (txid bytes, vout)."""
    try:
        txid_hex, vout = text.rsplit(":", 1)
        txid = bytes.fromhex(txid_hex)
        vout = int(vout)
    except ValueError:
        raise BuildError(f"{text!r}: a prevout is TXID:VOUT") from None
    if len(txid) != 32 or not 0 <= vout < 2**32:
        raise BuildError(f"{text!r}: a txid is 32 bytes and vout a u32")
    return txid, vout


def build_spend(internal_key, output_key, network, coins, payments, fee):
    """An unsigned PSBT (embit `PSBT`) spending `coins` of the key.

    - `coins`: [(\"txid:vout\", amount_sats)], outputs of the key's address;
    - `payments`: [(address, amount_sats)], in output order;
    - `fee`: in sats. Whatever is left goes back to the key's own address
      as a last output, unless it is zero; change below the dust limit is
      refused rather than silently given to miners.
    """
    internal_key, output_key = bytes(internal_key), bytes(output_key)
    check_keys(internal_key, output_key)
    if not coins:
        raise BuildError("nothing to spend: give at least one prevout")
    if not payments:
        raise BuildError("nobody to pay: give at least one payment")
    if fee < 0:
        raise BuildError("the fee cannot be negative")
    total_in = sum(amount for _, amount in coins)
    total_out = sum(amount for _, amount in payments)
    change = total_in - total_out - fee
    if change < 0:
        raise BuildError(
            f"the prevouts ({total_in} sat) do not cover the payments ({total_out} sat) and fee ({fee} sat)")
    if 0 < change < P2TR_DUST:
        raise BuildError(f"the change of {change} sat would be dust: raise the fee by it, or pay it")
    script = own_script(output_key)
    vin = []
    for outpoint, amount in coins:
        txid, vout = parse_outpoint(outpoint)
        if amount <= 0:
            raise BuildError(f"{outpoint}: an amount is positive")
        vin.append(TransactionInput(txid, vout, sequence=SEQUENCE_RBF))
    vout = []
    for address, amount in payments:
        if amount <= 0:
            raise BuildError(f"{address}: an amount is positive")
        vout.append(TransactionOutput(amount, address_script(address, network)))
    if change:
        vout.append(TransactionOutput(change, script))
    psbt = PSBT(Transaction(version=2, vin=vin, vout=vout, locktime=0))
    internal = ec.PublicKey.from_xonly(internal_key)
    for scope, (_, amount) in zip(psbt.inputs, coins):
        scope.witness_utxo = TransactionOutput(amount, script)
        scope.taproot_internal_key = internal
    if change:
        # BIP-371: a change output names its internal key, as wallets that
        # recognise their own change expect.
        psbt.outputs[-1].taproot_internal_key = internal
    return psbt
