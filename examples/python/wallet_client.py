#!/usr/bin/env python3
"""A wallet service talking to ringi's coordinator, in Python.

Stubs are generated from ../../proto with grpcio-tools on first use (into
./generated, not committed), so the proto files stay the single source.

    pip install grpcio grpcio-tools
    wallet_client.py --coordinator 127.0.0.1:7000 pubkey --key-id hot-1
    wallet_client.py --coordinator 127.0.0.1:7000 submit --key-id hot-1 \\
        --message-hex <sighash> --asset BTC --amount 50000000 \\
        --destination bc1q... --requester wallet-service --idempotency-key order-42
    wallet_client.py --coordinator 127.0.0.1:7000 watch <request id>

`watch` prints each state transition as it happens and, once SIGNED, the
65-byte signature in hex; it exits 0 only if the request was signed.

A bitcoin-taproot key spends coins with a PSBT (BIP-174) instead of a raw
message: `spend` reads the key's internal and output keys from
GetPublicKey, builds the unsigned PSBT with embit (psbt_builder.py: each
prevout of the key's P2TR address as an input, the payments, the change back
to the key's address), submits it and prints the request id. What approvers
see and the caps count are derived from the PSBT by the coordinator and
every signer; there is no amount or destination to declare.

    pip install -r requirements.txt
    wallet_client.py --coordinator 127.0.0.1:7000 pubkey --key-id btc-hot --show address
    wallet_client.py --coordinator 127.0.0.1:7000 spend --key-id btc-hot \\
        --prevout <txid>:<vout> --prevout-amount 60000 \\
        --pay <address> --pay-amount 25000 --fee 1000 \\
        --requester wallet-service --idempotency-key order-43
    wallet_client.py --coordinator 127.0.0.1:7000 watch <request id>

For a PSBT request `watch` prints, once SIGNED, the signed transaction's hex
(what `bitcoin-cli sendrawtransaction` takes) and then its txid, one per
line. `build-psbt` builds the same PSBT offline from the keys themselves
(no coordinator) and writes it in binary (`--out FILE`) or base64.

Against a coordinator that runs mutual TLS (anything but loopback must), give
the wallet's certificate, its key and the CA (or set RINGI_TLS_CLIENT_CERT,
RINGI_TLS_CLIENT_KEY and RINGI_TLS_CA, as for the `ringi` CLI):

    wallet_client.py --coordinator ringi.example:7000 --tls-ca ca.pem \
        --tls-client-cert wallet-service.pem --tls-client-key wallet-service.key pubkey --key-id hot-1

The coordinator then knows the wallet by its certificate: `--requester` must
be that identity.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto")
GENERATED = os.path.join(HERE, "generated")
PROTOS = [
    "ringi/approval/v1/approval.proto",
    "ringi/coordinator/v1/coordinator.proto",
]


def load_stubs():
    """Generates the stubs if missing or older than a proto file, and
    imports them."""
    marker = os.path.join(GENERATED, "ringi", "coordinator", "v1", "coordinator_pb2_grpc.py")
    newest_proto = max(os.path.getmtime(os.path.join(PROTO, p)) for p in PROTOS)
    if not os.path.exists(marker) or os.path.getmtime(marker) < newest_proto:
        os.makedirs(GENERATED, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
             f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}", *PROTOS],
            check=True,
        )
    sys.path.insert(0, GENERATED)
    from ringi.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc  # noqa: E402
    return coordinator_pb2, coordinator_pb2_grpc


def add_spend_args(parser):
    parser.add_argument("--prevout", action="append", required=True, metavar="TXID:VOUT",
                        help="an output of the key's P2TR address to spend (repeat for several)")
    parser.add_argument("--prevout-amount", action="append", required=True, type=int, metavar="SATS",
                        help="its amount, in the same order as --prevout")
    parser.add_argument("--pay", action="append", required=True, metavar="ADDRESS",
                        help="a payee's address (repeat for several)")
    parser.add_argument("--pay-amount", action="append", required=True, type=int, metavar="SATS",
                        help="what it is paid, in the same order as --pay")
    parser.add_argument("--fee", required=True, type=int, metavar="SATS",
                        help="the fee; the rest goes back to the key's address as change")


def build_from_args(args, internal_key, output_key, network):
    """The PSBT the spend arguments describe (psbt_builder.build_spend)."""
    import psbt_builder
    if len(args.prevout) != len(args.prevout_amount):
        raise ValueError("give one --prevout-amount per --prevout")
    if len(args.pay) != len(args.pay_amount):
        raise ValueError("give one --pay-amount per --pay")
    return psbt_builder.build_spend(
        internal_key, output_key, network,
        list(zip(args.prevout, args.prevout_amount)),
        list(zip(args.pay, args.pay_amount)),
        args.fee)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default=os.environ.get("RINGI_COORDINATOR", "127.0.0.1:7000"))
    parser.add_argument("--tls-ca", default=os.environ.get("RINGI_TLS_CA"),
                        help="CA certificate (PEM) that certifies the coordinator")
    parser.add_argument("--tls-client-cert", default=os.environ.get("RINGI_TLS_CLIENT_CERT"),
                        help="this wallet's certificate (PEM)")
    parser.add_argument("--tls-client-key", default=os.environ.get("RINGI_TLS_CLIENT_KEY"),
                        help="this wallet's private key (PEM)")
    parser.add_argument("--server-name", default=os.environ.get("RINGI_COORDINATOR_NAME", "coordinator"),
                        help="the name in the coordinator's certificate")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pubkey")
    p.add_argument("--key-id", required=True)
    p.add_argument("--show", default="group-key",
                   choices=["group-key", "kind", "internal-key", "output-key", "network", "address"],
                   help="which field to print (default: the group public key, hex)")
    sp = sub.add_parser("spend", help="build a PSBT spending coins of a bitcoin-taproot key and submit it")
    sp.add_argument("--key-id", required=True)
    add_spend_args(sp)
    for flag in ("--requester", "--idempotency-key"):
        sp.add_argument(flag, required=True)
    sp.add_argument("--memo", default="")
    sp.add_argument("--psbt-out", help="also write the PSBT submitted (binary) to this file")
    bp = sub.add_parser("build-psbt", help="build the PSBT offline, from the key's keys")
    bp.add_argument("--internal-key", required=True, help="x-only internal key P, hex")
    bp.add_argument("--output-key", required=True, help="x-only output key Q, hex")
    bp.add_argument("--network", required=True, choices=["bitcoin", "testnet", "signet", "regtest"])
    add_spend_args(bp)
    bp.add_argument("--out", help="write the binary PSBT here (default: print base64)")
    s = sub.add_parser("submit")
    for flag in ("--key-id", "--message-hex", "--asset", "--amount", "--destination",
                 "--requester", "--idempotency-key"):
        s.add_argument(flag, required=True)
    s.add_argument("--memo", default="")
    w = sub.add_parser("watch")
    w.add_argument("request_id")
    args = parser.parse_args(argv)

    if args.command == "build-psbt":
        try:
            psbt = build_from_args(args, bytes.fromhex(args.internal_key),
                                   bytes.fromhex(args.output_key), args.network)
        except ValueError as e:
            print(f"wallet_client: {e}", file=sys.stderr)
            return 2
        if args.out:
            with open(args.out, "wb") as f:
                f.write(psbt.serialize())
        else:
            print(psbt.to_string())
        return 0

    import grpc
    pb, rpc = load_stubs()
    tls = (args.tls_ca, args.tls_client_cert, args.tls_client_key)
    if any(tls) and not all(tls):
        print("wallet_client: mutual TLS needs --tls-ca, --tls-client-cert and --tls-client-key",
              file=sys.stderr)
        return 2
    if all(tls):
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.tls_ca),
            private_key=read(args.tls_client_key),
            certificate_chain=read(args.tls_client_cert))
        # The coordinator is checked against the name in its certificate,
        # whatever address it is reached at.
        channel = grpc.secure_channel(
            args.coordinator, credentials,
            options=[("grpc.ssl_target_name_override", args.server_name)])
    else:
        # Plaintext: loopback development only (the coordinator refuses
        # anything else).
        channel = grpc.insecure_channel(args.coordinator)
    try:
        if args.command == "pubkey":
            key = rpc.KeyServiceStub(channel).GetPublicKey(pb.GetPublicKeyRequest(key_id=args.key_id)).key
            field = args.show.replace("-", "_")
            value = key.group_public_key if field == "group_key" else getattr(key, field)
            print(value.hex() if isinstance(value, bytes) else value)
            return 0
        requests = rpc.RequestServiceStub(channel)
        if args.command == "spend":
            key = rpc.KeyServiceStub(channel).GetPublicKey(pb.GetPublicKeyRequest(key_id=args.key_id)).key
            if key.kind != "bitcoin-taproot":
                print(f"wallet_client: key {args.key_id} is of kind {key.kind or 'frost-secp256k1'}, "
                      "not bitcoin-taproot: it signs raw messages (submit), not PSBTs", file=sys.stderr)
                return 2
            try:
                psbt = build_from_args(args, key.internal_key, key.output_key, key.network)
            except ValueError as e:
                print(f"wallet_client: {e}", file=sys.stderr)
                return 2
            raw = psbt.serialize()
            if args.psbt_out:
                with open(args.psbt_out, "wb") as f:
                    f.write(raw)
            view = requests.SubmitSigningRequest(pb.SubmitSigningRequestRequest(
                key_id=args.key_id, psbt=raw, memo=args.memo, requester=args.requester,
                idempotency_key=args.idempotency_key))
            print(view.request_id)
            return 0
        if args.command == "submit":
            view = requests.SubmitSigningRequest(pb.SubmitSigningRequestRequest(
                key_id=args.key_id, message=bytes.fromhex(args.message_hex), asset=args.asset,
                amount=args.amount, destination=args.destination, memo=args.memo,
                requester=args.requester, idempotency_key=args.idempotency_key))
            print(view.request_id)
            return 0
        signed = None
        for event in requests.WatchSigningRequest(pb.WatchSigningRequestRequest(request_id=args.request_id)):
            t = event.transition
            print(f"{event.seq} {t.from_state or '-'} -> {t.to_state} {t.reason}", file=sys.stderr)
            if t.to_state == "SIGNED":
                signed = event.request
        if signed is None:
            return 1
        if signed.signed_transaction:
            # A PSBT request: the network transaction, then its id.
            print(signed.signed_transaction.hex())
            print(signed.transaction.txid)
        else:
            print(signed.signature.hex())
        return 0
    except grpc.RpcError as e:
        print(f"wallet_client: {e.code().name}: {e.details()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
