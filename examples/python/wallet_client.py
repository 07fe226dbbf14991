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
    """Generates the stubs if needed and imports them."""
    marker = os.path.join(GENERATED, "ringi", "coordinator", "v1", "coordinator_pb2_grpc.py")
    if not os.path.exists(marker):
        os.makedirs(GENERATED, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
             f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}", *PROTOS],
            check=True,
        )
    sys.path.insert(0, GENERATED)
    from ringi.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc  # noqa: E402
    return coordinator_pb2, coordinator_pb2_grpc


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
    s = sub.add_parser("submit")
    for flag in ("--key-id", "--message-hex", "--asset", "--amount", "--destination",
                 "--requester", "--idempotency-key"):
        s.add_argument(flag, required=True)
    s.add_argument("--memo", default="")
    w = sub.add_parser("watch")
    w.add_argument("request_id")
    args = parser.parse_args(argv)

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
            print(key.group_public_key.hex())
            return 0
        requests = rpc.RequestServiceStub(channel)
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
                signed = event.request.signature
        if signed is None:
            return 1
        print(signed.hex())
        return 0
    except grpc.RpcError as e:
        print(f"wallet_client: {e.code().name}: {e.details()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
