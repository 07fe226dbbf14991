#!/usr/bin/env python3
"""load_client.py against a stand-in coordinator (in-process gRPC servicers
on loopback, stubs generated from proto/) that checks every approval's
P-256 signature over its statement and signs with a FROST(secp256k1)
group key of its own: every request signed and verified at C in flight,
and each way a request can go wrong counted and failing the run. The
request id encoding is pinned to ringi's own test vectors; the real
coordinator (which verifies the statements itself) is exercised by
coordinator/tests/e2e_bench_load.rs.

    python -m unittest test_load_client      (from examples/python)
"""
import contextlib
import io
import os
import secrets
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import load_client
import wallet_client

pb, rpc = wallet_client.load_stubs()
from ringi.approval.v1 import approval_pb2  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "softhsm-setup"))
import verify_frost_signature as frost  # noqa: E402


def compress(point):
    x, y = point
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


class GroupKey:
    """A FROST(secp256k1, SHA-256) key held whole: its signatures are what a
    t-of-n signing under it produces (RFC 9591 section 6.5)."""

    def __init__(self):
        self.secret = secrets.randbelow(frost.N - 1) + 1
        self.public = compress(frost.mul(self.secret, frost.G))

    def sign(self, message):
        k = secrets.randbelow(frost.N - 1) + 1
        r = compress(frost.mul(k, frost.G))
        c = frost.h2(r + self.public + message)
        return r + ((k + c * self.secret) % frost.N).to_bytes(32, "big")


class Keys(rpc.KeyServiceServicer):
    def __init__(self, group):
        self.group = group

    def GetPublicKey(self, request, context):
        return pb.GetPublicKeyResponse(key=pb.PublicKey(
            key_id=request.key_id, kind="frost-secp256k1", threshold=2,
            signers=[pb.KeySigner(name=f"signer-{i}", identifier=i) for i in (1, 2, 3)],
            group_public_key=self.group.public))


class Requests(rpc.RequestServiceServicer):
    """Needs one approval from each department in `departments` (SEC1 key ->
    department); request number `bad_signature` gets a signature over
    another message, number `fail` ends FAILED."""

    def __init__(self, group, departments, bad_signature=None, fail=None):
        self.group, self.departments = group, departments
        self.bad_signature, self.fail = bad_signature, fail
        self.lock = threading.Lock()
        self.requests = {}       # id hex -> dict
        self.valid_approvals = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def SubmitSigningRequest(self, request, context):
        now = int(time.time())
        r = approval_pb2.SigningRequest(
            key_id=request.key_id, message=request.message, asset=request.asset,
            amount=request.amount, destination=request.destination, memo=request.memo,
            requester=request.requester, created_at=now, expires_at=now + 3600,
            policy_hash=bytes(range(32)), nonce=secrets.token_bytes(16))
        rid = load_client.request_id(r).hex()
        with self.lock:
            number = len(self.requests)
            self.requests[rid] = {"request": r, "number": number, "approved": set(),
                                  "done": threading.Event(), "state": "", "signature": b""}
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return pb.SigningRequestView(
            request_id=rid, request=r, state="PENDING_APPROVAL", approval_ttl_secs=600,
            content_digest=load_client.content_digest(r).hex())

    def Decide(self, request, context):
        a = request.approval
        entry = self.requests.get(a.request_id.hex())
        if entry is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such request")
        department = self.departments.get(a.approver_public_key)
        if department is None or department != a.department:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "approver not in the policy")
        signed = load_client.statement_bytes(
            a.request_id, a.content_digest, a.key_id, a.department, a.decision, a.reason,
            a.issued_at, a.expires_at, a.approver_public_key)
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), a.approver_public_key)
        r, s = int.from_bytes(a.signature[:32], "big"), int.from_bytes(a.signature[32:], "big")
        try:
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "approval signature invalid")
        if a.content_digest != load_client.content_digest(entry["request"]):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "another content approved")
        with self.lock:
            self.valid_approvals += 1
            entry["approved"].add(department)
            complete = entry["approved"] == set(self.departments.values())
        if complete:
            message = entry["request"].message
            if entry["number"] == self.fail:
                entry["state"] = "FAILED"
            else:
                entry["state"] = "SIGNED"
                entry["signature"] = self.group.sign(
                    b"not " + message if entry["number"] == self.bad_signature else message)
            entry["done"].set()
        return pb.SigningRequestView(request_id=a.request_id.hex(), state="PENDING_APPROVAL")

    def WatchSigningRequest(self, request, context):
        entry = self.requests[request.request_id]
        try:
            if not entry["done"].wait(20):
                return
            view = pb.SigningRequestView(request_id=request.request_id, state=entry["state"],
                                         signature=entry["signature"])
            yield pb.SigningRequestEvent(seq=3, request=view, transition=pb.Transition(
                from_state="SIGNING", to_state=entry["state"],
                reason="signer-2 refused" if entry["state"] == "FAILED" else ""))
        finally:
            with self.lock:
                self.in_flight -= 1


class StandIn:
    """A stand-in coordinator on a loopback port, and two approvers' key
    files (treasury, compliance) in a temporary directory."""

    def __init__(self, **faults):
        self.dir = tempfile.TemporaryDirectory()
        self.group = GroupKey()
        departments = {}
        self.approver_args = []
        for name, department in (("alice", "treasury"), ("carol", "compliance")):
            path = self.key_file(name)
            departments[load_client.Approver.from_spec(f"{department}={path}").public] = department
            self.approver_args += ["--approver", f"{department}={path}"]
        self.requests = Requests(self.group, departments, **faults)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=24))
        rpc.add_KeyServiceServicer_to_server(Keys(self.group), self.server)
        rpc.add_RequestServiceServicer_to_server(self.requests, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def key_file(self, name):
        path = os.path.join(self.dir.name, f"{name}.pem")
        with open(path, "wb") as f:
            f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        return path

    def run(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = load_client.main(["--coordinator", f"127.0.0.1:{self.port}", "--key-id", "busy",
                                     "--timeout", "30", *argv])
        return code, out.getvalue(), err.getvalue()

    def close(self):
        self.server.stop(None)
        self.dir.cleanup()


class RequestIds(unittest.TestCase):
    """The ids ringi's own tests pin (policy/src/request.rs sample()):
    the v1 encoding, and v2 with a nonce of sixteen 1s."""

    def sample(self, nonce=b""):
        return approval_pb2.SigningRequest(
            key_id="hot-1", message=b"\xab" * 32, asset="BTC", amount="150000000",
            destination="bc1qexample", memo="exchange rebalance", requester="wallet-service",
            created_at=1_800_000_000, expires_at=1_800_003_600, policy_hash=b"\x07" * 32,
            nonce=nonce)

    def test_ids_match_ringi(self):
        self.assertEqual(load_client.request_id(self.sample()).hex(),
                         "37d514fff867d8f2a95f062811d99149ad9aefd19b90e2e10d134b5b25b1ac0c")
        self.assertEqual(load_client.request_id(self.sample(b"\x01" * 16)).hex(),
                         "28979093833bce80cd86b9d53de06bf841b1ab2b826c08e0522e59b260a5066b")

    def test_psbt_requests_and_bad_amounts_are_refused(self):
        with self.assertRaises(load_client.LoadError):
            load_client.request_id(approval_pb2.SigningRequest(key_id="k", psbt=b"psbt"))
        r = self.sample()
        r.amount = "-1"
        with self.assertRaises(load_client.LoadError):
            load_client.content_digest(r)
        r.amount = "1.5"
        with self.assertRaises(load_client.LoadError):
            load_client.request_id(r)

    def test_approval_signatures_are_low_s(self):
        approver = load_client.Approver(
            "treasury", ec.generate_private_key(ec.SECP256R1()))
        for i in range(16):
            sig = approver.sign(bytes([i]))
            self.assertEqual(len(sig), 64)
            self.assertLessEqual(int.from_bytes(sig[32:], "big"), load_client.P256_N // 2)

    def test_percentiles_are_nearest_rank(self):
        samples = list(range(1, 101))
        self.assertEqual([load_client.percentile(samples, q) for q in (0.5, 0.9, 0.99)],
                         [50, 90, 99])
        self.assertEqual(load_client.percentile([7], 0.99), 7)


class Flow(unittest.TestCase):
    def test_every_request_is_signed_and_verified_with_c_in_flight(self):
        stand_in = StandIn()
        try:
            code, out, err = stand_in.run("-n", "16", "-c", "4", *stand_in.approver_args)
        finally:
            stand_in.close()
        self.assertEqual(code, 0, out + err)
        self.assertIn("signed 16 of 16, signature verified 16; failed 0, rejected 0, expired 0, "
                      "errors 0, timed out 0", out)
        self.assertIn("16 requests, 4 in flight, 2 approvals each (treasury, compliance)", out)
        self.assertRegex(out, r"throughput [0-9.]+ requests/s \(16 in ")
        self.assertRegex(out, r"approved -> signed\s+16 ")
        self.assertEqual(stand_in.requests.valid_approvals, 32)
        self.assertLessEqual(stand_in.requests.peak_in_flight, 4)
        self.assertGreaterEqual(stand_in.requests.peak_in_flight, 2)

    def test_a_bad_signature_and_a_failure_are_counted_and_fail_the_run(self):
        stand_in = StandIn(bad_signature=0, fail=1)
        try:
            code, out, err = stand_in.run("-n", "6", "-c", "3", *stand_in.approver_args)
        finally:
            stand_in.close()
        self.assertEqual(code, 1, out + err)
        self.assertIn("signed 5 of 6, signature verified 4; failed 1, rejected 0, expired 0, "
                      "errors 0, timed out 0", out)
        self.assertIn("1 FAILED, e.g.: 'signer-2 refused'", out)
        self.assertIn("1 signatures did not verify", out)
        self.assertIn("2 of 6 requests did not end SIGNED", err)

    def test_refused_approvals_are_errors(self):
        stand_in = StandIn()
        stranger = stand_in.key_file("stranger")
        try:
            code, out, err = stand_in.run("-n", "4", "-c", "2", "--approver", f"treasury={stranger}",
                                          *stand_in.approver_args[2:])
        finally:
            stand_in.close()
        self.assertEqual(code, 1, out + err)
        self.assertIn("signed 0 of 4", out)
        self.assertIn("4 x PERMISSION_DENIED: approver not in the policy", out)


if __name__ == "__main__":
    unittest.main()
