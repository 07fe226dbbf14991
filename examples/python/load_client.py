#!/usr/bin/env python3
"""Throughput of ringi's whole signing flow from an independent Python
client: N requests, C in flight (grpcio asyncio), each one submitted as the
wallet, approved by every approver given (the statements built and signed
here, in Python), and watched until it ends.

    pip install -r requirements.txt
    load_client.py --coordinator 127.0.0.1:7000 --key-id hot-1 -n 1000 -c 64 \\
        --approver treasury=alice.pem --approver compliance=carol.pem \\
        --tls-ca ca.pem --tls-client-cert operator.pem --tls-client-key operator.key \\
        --wallet-tls-cert wallet-service.pem --wallet-tls-key wallet-service.key

It is the Python counterpart of `ringi bench-load --mode flow` and shares
no code with ringi: the request id and content digest are recomputed from
the request the coordinator returns (the canonical encoding of
docs/approvals.md) and must match what it says; each approval statement is
signed with the approver's P-256 key file (`ringi approver-key generate`,
PKCS#8 PEM) by `cryptography`; every signature is checked, after the clock
stops, against the key's group key by softhsm-setup/verify_frost_signature.py
(RFC 9591, written from the RFC).

Printed: requests per second, latency p50/p90/p99/max (submit -> signed,
approved -> signed, the latter from the answer to the last Decide), every
request that did not end SIGNED with a valid signature by cause, and this
client's CPU per request. The exit status is 0 only if every request did.

Mutual TLS options as for wallet_client.py (RINGI_TLS_CA,
RINGI_TLS_CLIENT_CERT, RINGI_TLS_CLIENT_KEY): that identity approves (it
needs the approver role); `--wallet-tls-cert/--wallet-tls-key` name the
identity that submits (default: the same one).
"""
import argparse
import asyncio
import hashlib
import math
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFIER = os.path.join(HERE, "..", "..", "softhsm-setup")

TERMINAL = ("SIGNED", "REJECTED", "EXPIRED", "FAILED")
# The longest approval validity `ringi approve` accepts from a coordinator
# (cli/src/view.rs MAX_APPROVAL_TTL_SECS): a longer one is refused, not
# signed for.
MAX_APPROVAL_TTL_SECS = 7 * 24 * 60 * 60
# secp256r1's group order, for low-s signatures.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class LoadError(Exception):
    """A request that cannot go on, with why."""


def canonical(domain, *fields):
    """docs/approvals.md: domain || 0x00 || (u32 big-endian length || bytes)*."""
    out = bytearray(domain.encode())
    out.append(0)
    for f in fields:
        out += struct.pack(">I", len(f)) + f
    return bytes(out)


def u64(n):
    return n.to_bytes(8, "big")


def u128(n):
    return n.to_bytes(16, "big")


def _amount(request):
    try:
        amount = int(request.amount, 10)
    except ValueError:
        raise LoadError(f"amount {request.amount!r} is not an integer") from None
    if not 0 <= amount < 2**128:
        raise LoadError(f"amount {request.amount} out of range")
    return amount


def request_id(request):
    """The id of a raw-message request (ringi.approval.v1.SigningRequest):
    v2 with the coordinator's 16-byte nonce, v1 without."""
    if request.psbt:
        raise LoadError("a PSBT request: this client submits raw messages only")
    v2 = len(request.nonce) > 0
    fields = [
        request.key_id.encode(), request.message, request.asset.encode(),
        u128(_amount(request)), request.destination.encode(), request.memo.encode(),
        request.requester.encode(), u64(request.created_at), u64(request.expires_at),
        request.policy_hash,
    ]
    if v2:
        fields.append(request.nonce)
    domain = "ringi signing request v2" if v2 else "ringi signing request v1"
    return hashlib.sha256(canonical(domain, *fields)).digest()


def content_digest(request):
    """What an approval names as the content approved: message and metadata."""
    return hashlib.sha256(canonical(
        "ringi request content v1", request.message, request.asset.encode(),
        u128(_amount(request)), request.destination.encode(), request.memo.encode(),
    )).digest()


def statement_bytes(rid, digest, key_id, department, decision, reason, issued_at, expires_at,
                    approver_sec1):
    """The bytes an approver signs (policy/src/statement.rs)."""
    return canonical(
        "ringi approval v1", rid, digest, key_id.encode(), department.encode(),
        decision.encode(), reason.encode(), u64(issued_at), u64(expires_at), approver_sec1,
    )


class Approver:
    """One department's approver and its P-256 key file."""

    def __init__(self, department, private_key):
        from cryptography.hazmat.primitives import serialization
        self.department = department
        self.key = private_key
        self.public = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)

    @classmethod
    def from_spec(cls, spec):
        """DEPARTMENT=KEYFILE."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        department, sep, path = spec.partition("=")
        if not sep or not department or not path:
            raise ValueError(f"--approver takes DEPARTMENT=KEYFILE, got {spec!r}")
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path} is not a P-256 key")
        return cls(department, key)

    def sign(self, message):
        """ECDSA-P256-SHA256, 64 bytes r || s, s low."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def approval(self, approval_pb2, request, rid, digest, ttl_secs, now):
        issued_at = int(now)
        expires_at = issued_at + ttl_secs
        signed = statement_bytes(rid, digest, request.key_id, self.department, "approve", "",
                                 issued_at, expires_at, self.public)
        return approval_pb2.Approval(
            request_id=rid, content_digest=digest, key_id=request.key_id,
            department=self.department, decision="approve", reason="",
            issued_at=issued_at, expires_at=expires_at,
            approver_public_key=self.public, signature=self.sign(signed))


def percentile(sorted_samples, q):
    """Nearest rank, as `ringi bench-load` computes it."""
    n = len(sorted_samples)
    return sorted_samples[min(max(math.ceil(q * n), 1), n) - 1]


def latency_row(name, samples):
    if not samples:
        return f"{name:<24} (no samples)"
    s = sorted(samples)
    cells = " ".join(f"{percentile(s, q) * 1e3:>9.1f}" for q in (0.50, 0.90, 0.99))
    return f"{name:<24} {len(s):>6} {cells} {s[-1] * 1e3:>9.1f}"


class Run:
    """What every in-flight request shares, and the tallies."""

    def __init__(self, pb, rpc, approval_pb2, wallet_channel, approver_channel, args, approvers):
        self.pb, self.approval_pb2 = pb, approval_pb2
        self.wallet = rpc.RequestServiceStub(wallet_channel)
        self.approver = rpc.RequestServiceStub(approver_channel)
        self.args = args
        self.approvers = approvers
        self.tag = os.urandom(8).hex()
        self.signed = []        # (message, signature, submit->signed, approved->signed)
        self.ended = {}         # state -> [count, one reason]
        self.errors = {}        # message -> count
        self.timed_out = 0

    async def submit(self, index, message):
        view = await self.wallet.SubmitSigningRequest(self.pb.SubmitSigningRequestRequest(
            key_id=self.args.key_id, message=message, asset="BENCH", amount="1",
            destination="bench-load", requester=self.args.requester,
            idempotency_key=f"py-load-{self.tag}-{index}"))
        request = view.request
        rid = request_id(request)
        if rid.hex() != view.request_id:
            raise LoadError(f"request {view.request_id} does not hash to its id")
        if request.message != message:
            raise LoadError(f"request {view.request_id} signs another message")
        digest = content_digest(request)
        if digest.hex() != view.content_digest:
            raise LoadError(f"request {view.request_id}: content digest differs")
        ttl = view.approval_ttl_secs
        if not 0 < ttl <= MAX_APPROVAL_TTL_SECS:
            raise LoadError(f"approval validity of {ttl} s proposed")
        return view.request_id, request, rid, digest, ttl

    async def until_ended(self, request_id):
        """The terminal transition's state and reason, and the signature.
        The stream is read to its end, which follows the terminal event (a
        stream left there is cancelled while its end is on the way: the
        API's doc comment says why not to). A stream that ends early is
        opened again (it replays history)."""
        while True:
            ended = None
            async for event in self.wallet.WatchSigningRequest(
                    self.pb.WatchSigningRequestRequest(request_id=request_id)):
                t = event.transition
                if ended is None and t.to_state in TERMINAL:
                    ended = t.to_state, t.reason, event.request.signature
            if ended is not None:
                return ended
            await asyncio.sleep(0.2)

    async def flow_untimed(self, index, message):
        request_id_hex, request, rid, digest, ttl = await self.submit(index, message)
        for a in self.approvers:
            approval = a.approval(self.approval_pb2, request, rid, digest, ttl, time.time())
            await self.approver.Decide(self.pb.DecideRequest(approval=approval))
        approved = time.perf_counter()
        return (approved, *await self.until_ended(request_id_hex))

    async def flow(self, index):
        """One request, submission to its end, tallied."""
        import grpc
        message = os.urandom(32)
        start = time.perf_counter()
        try:
            approved, state, reason, signature = await asyncio.wait_for(
                self.flow_untimed(index, message), self.args.timeout)
        except asyncio.TimeoutError:
            self.timed_out += 1
            return
        except grpc.RpcError as e:
            self.count_error(f"{e.code().name}: {e.details()}")
            return
        except LoadError as e:
            self.count_error(str(e))
            return
        done = time.perf_counter()
        if state == "SIGNED":
            self.signed.append((message, signature, done - start, done - approved))
        else:
            entry = self.ended.setdefault(state, [0, reason])
            entry[0] += 1

    def count_error(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    async def all(self):
        next_index = iter(range(self.args.requests))

        async def worker():
            for i in next_index:
                await self.flow(i)

        await asyncio.gather(*(worker() for _ in range(min(self.args.concurrency, self.args.requests))))


def credentials_channel(grpc, args, cert, key):
    """An asyncio channel to the coordinator, under mutual TLS with `cert`
    and `key` if a CA is given, else plaintext (loopback development)."""
    if not args.tls_ca:
        return grpc.aio.insecure_channel(args.coordinator)

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.tls_ca), private_key=read(key), certificate_chain=read(cert))
    return grpc.aio.secure_channel(
        args.coordinator, credentials, options=[("grpc.ssl_target_name_override", args.server_name)])


async def run(args, approvers):
    import grpc
    import wallet_client
    pb, rpc = wallet_client.load_stubs()
    from ringi.approval.v1 import approval_pb2
    approver_channel = credentials_channel(grpc, args, args.tls_client_cert, args.tls_client_key)
    wallet_channel = credentials_channel(
        grpc, args, args.wallet_tls_cert or args.tls_client_cert,
        args.wallet_tls_key or args.tls_client_key)
    try:
        key = (await rpc.KeyServiceStub(approver_channel).GetPublicKey(
            pb.GetPublicKeyRequest(key_id=args.key_id))).key
        if key.kind not in ("", "frost-secp256k1"):
            raise LoadError(f"key {args.key_id} is of kind {key.kind}: this client signs raw "
                            "messages with frost-secp256k1 keys")
        run = Run(pb, rpc, approval_pb2, wallet_channel, approver_channel, args, approvers)
        cpu, start = time.process_time(), time.perf_counter()
        await run.all()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await approver_channel.close()
        await wallet_channel.close()
    return key, run, elapsed, cpu


def report(args, key, run, elapsed, cpu, verify):
    """Prints the figures; the number of requests that did not end SIGNED
    with a valid signature."""
    verified = sum(1 for m, s, _, _ in run.signed if verify(key.group_public_key, m, s))
    n = args.requests
    print(f"python load client: flow, key {args.key_id!r} ({key.threshold}-of-{len(key.signers)}), "
          f"{n} requests, {args.concurrency} in flight, {len(run.approvers)} approvals each "
          f"({', '.join(a.department for a in run.approvers)})")
    print(f"signed {len(run.signed)} of {n}, signature verified {verified}; "
          f"failed {run.ended.get('FAILED', [0])[0]}, rejected {run.ended.get('REJECTED', [0])[0]}, "
          f"expired {run.ended.get('EXPIRED', [0])[0]}, errors {sum(run.errors.values())}, "
          f"timed out {run.timed_out}")
    rate = verified / elapsed if elapsed > 0 else 0.0
    print(f"throughput {rate:.1f} requests/s ({verified} in {elapsed:.2f} s)")
    for state, (count, reason) in sorted(run.ended.items()):
        print(f"  {count} {state}, e.g.: {reason!r}")
    if len(run.signed) > verified:
        print(f"  {len(run.signed) - verified} signatures did not verify under the key's group key")
    for error, count in sorted(run.errors.items()):
        print(f"  {count} x {error}")
    print(f"{'latency (ms)':<24} {'n':>6} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    print(latency_row("submit -> signed", [t for _, _, t, _ in run.signed]))
    print(latency_row("approved -> signed", [a for _, _, _, a in run.signed]))
    print(f"python client cpu {cpu:.2f} s, {cpu * 1e3 / n:.2f} ms/req")
    return n - verified


def frost_verifier():
    """verify(group_key, message, signature) -> bool, from the independent
    RFC 9591 verifier."""
    sys.path.insert(0, os.path.abspath(VERIFIER))
    import verify_frost_signature

    def verify(group_key, message, signature):
        try:
            return verify_frost_signature.verify(group_key, message, signature)
        except ValueError:
            return False
    return verify


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default=os.environ.get("RINGI_COORDINATOR", "127.0.0.1:7000"))
    parser.add_argument("--tls-ca", default=os.environ.get("RINGI_TLS_CA"))
    parser.add_argument("--tls-client-cert", default=os.environ.get("RINGI_TLS_CLIENT_CERT"),
                        help="the approving identity's certificate (PEM)")
    parser.add_argument("--tls-client-key", default=os.environ.get("RINGI_TLS_CLIENT_KEY"))
    parser.add_argument("--wallet-tls-cert", help="the submitting identity's certificate (PEM)")
    parser.add_argument("--wallet-tls-key")
    parser.add_argument("--server-name", default=os.environ.get("RINGI_COORDINATOR_NAME", "coordinator"))
    parser.add_argument("--key-id", required=True)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("--approver", action="append", required=True, metavar="DEPARTMENT=KEYFILE",
                        help="in the order they approve; the last completes the quorum")
    parser.add_argument("--requester", default="",
                        help="who asks (plaintext only: under mutual TLS the certificate says)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="longest time for one request, submission to its end, seconds")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    tls = (args.tls_ca, args.tls_client_cert, args.tls_client_key)
    if any(tls) and not all(tls):
        parser.error("mutual TLS needs --tls-ca, --tls-client-cert and --tls-client-key")
    if bool(args.wallet_tls_cert) != bool(args.wallet_tls_key):
        parser.error("give --wallet-tls-cert and --wallet-tls-key together")
    if args.wallet_tls_cert and not args.tls_ca:
        parser.error("--wallet-tls-cert needs the mutual TLS options")
    if not args.tls_ca and not args.requester:
        args.requester = "wallet-service"
    try:
        approvers = [Approver.from_spec(s) for s in args.approver]
    except (OSError, ValueError) as e:
        print(f"load_client: {e}", file=sys.stderr)
        return 2
    import grpc
    try:
        key, run_, elapsed, cpu = asyncio.run(run(args, approvers))
    except grpc.RpcError as e:
        print(f"load_client: {e.code().name}: {e.details()}", file=sys.stderr)
        return 2
    except LoadError as e:
        print(f"load_client: {e}", file=sys.stderr)
        return 2
    bad = report(args, key, run_, elapsed, cpu, frost_verifier())
    if bad:
        print(f"load_client: {bad} of {args.requests} requests did not end SIGNED with a valid "
              "signature", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main(sys.argv[1:]))
