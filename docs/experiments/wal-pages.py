#!/usr/bin/env python3
"""A model of the coordinator's SQLite writes (not the store itself): how
many WAL pages one request costs with the schema's hash-keyed child tables
(`hash`, as schema v8) against child tables keyed by the request's rowid
(`seq`, schema v9 since dd343ab: 43-48 % fewer bytes to disk measured).
See docs/bench.md, eighth and ninth sessions.

64 requests in flight each go through the store's five writes (submit,
two approvals, claim with plan, finish), the writes grouped into commits
of BATCH as the group commit does; N_PRE requests first fill the tables,
then N are counted. WAL frames = (WAL size - header) / (page + frame
header), with checkpoints off. Rows and sizes approximate ringi's.

Usage: python3 docs/experiments/wal-pages.py hash|seq N_PRE N BATCH
       (e.g. hash 20000 5000 8; writes /tmp/walsim/VARIANT.db)
"""
import sqlite3, os, random, sys, hashlib
os.makedirs("/tmp/walsim", exist_ok=True)
variant = sys.argv[1]; N_PRE = int(sys.argv[2]); N = int(sys.argv[3]); BATCH = int(sys.argv[4])
path = f"/tmp/walsim/{variant}.db"
for ext in ("", "-wal", "-shm"):
    try: os.remove(path + ext)
    except FileNotFoundError: pass
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=OFF"); db.execute("PRAGMA wal_autocheckpoint=0")
db.executescript("""
CREATE TABLE requests (request_id BLOB PRIMARY KEY, key_id TEXT NOT NULL, message BLOB NOT NULL, asset TEXT, amount TEXT, destination TEXT, memo TEXT, requester TEXT, created_at INTEGER, expires_at INTEGER, policy_hash BLOB, signers TEXT, state TEXT, state_reason TEXT, signature BLOB, psbt BLOB, counted_amount TEXT, signed_psbt BLOB, signed_tx BLOB, nonce BLOB);
CREATE INDEX requests_by_state ON requests(state);
CREATE INDEX requests_by_time ON requests(created_at DESC, request_id DESC);
CREATE TABLE idempotency_keys (requester TEXT NOT NULL, idempotency_key TEXT NOT NULL, content_hash BLOB NOT NULL, request_id BLOB NOT NULL, PRIMARY KEY (requester, idempotency_key));
""")
if variant == "hash":
    db.executescript("""
CREATE TABLE approvals (request_id BLOB NOT NULL, approver_key BLOB NOT NULL, department TEXT, decision TEXT, reason TEXT, issued_at INTEGER, expires_at INTEGER, content_digest BLOB, signature BLOB, received_at INTEGER, PRIMARY KEY (request_id, approver_key));
CREATE TABLE transitions (request_id BLOB NOT NULL, seq INTEGER NOT NULL, from_state TEXT, to_state TEXT, reason TEXT, at INTEGER, PRIMARY KEY (request_id, seq));
CREATE TABLE signing_claims (request_id BLOB PRIMARY KEY, fence INTEGER, owner TEXT, lease_until INTEGER);
CREATE TABLE signing_plans (request_id BLOB NOT NULL, input INTEGER, seq INTEGER, package BLOB, signers TEXT, PRIMARY KEY (request_id, input, seq));
CREATE INDEX transitions_by_time ON transitions(at);
CREATE INDEX approvals_by_time ON approvals(received_at);
""")
else:
    db.executescript("""
CREATE TABLE approvals (req INTEGER NOT NULL, approver_key BLOB NOT NULL, department TEXT, decision TEXT, reason TEXT, issued_at INTEGER, expires_at INTEGER, content_digest BLOB, signature BLOB, received_at INTEGER, PRIMARY KEY (req, approver_key)) WITHOUT ROWID;
CREATE TABLE transitions (req INTEGER NOT NULL, seq INTEGER NOT NULL, from_state TEXT, to_state TEXT, reason TEXT, at INTEGER, PRIMARY KEY (req, seq)) WITHOUT ROWID;
CREATE TABLE signing_claims (req INTEGER PRIMARY KEY, fence INTEGER, owner TEXT, lease_until INTEGER);
CREATE TABLE signing_plans (req INTEGER NOT NULL, input INTEGER, seq INTEGER, package BLOB, signers TEXT, PRIMARY KEY (req, input, seq)) WITHOUT ROWID;
CREATE INDEX transitions_by_time ON transitions(at);
CREATE INDEX approvals_by_time ON approvals(received_at);
""")
T = [0]
def rid(i): return hashlib.sha256(str(i).encode()).digest()
def key(i):  # how the child tables name request i
    if variant == "hash": return rid(i)
    return db.execute("SELECT rowid FROM requests WHERE request_id=?", (rid(i),)).fetchone()[0]
def step(i, k):
    T[0] += 1; t = T[0]
    if k == 0:
        db.execute("INSERT INTO requests (request_id,key_id,message,asset,amount,destination,memo,requester,created_at,expires_at,policy_hash,signers,state,state_reason,counted_amount,nonce) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (rid(i), "load", os.urandom(32), "BTC", "1000", "dest-address-xxxxxxxx", "memo", "wallet-service", t, t+3600, os.urandom(32), "signer-1,signer-2,signer-3", "PENDING_APPROVAL", "", "1000", os.urandom(16)))
        db.execute("INSERT INTO transitions VALUES (?,?,?,?,?,?)", (key(i), 1, "", "PENDING_APPROVAL", "submitted", t))
        db.execute("INSERT INTO idempotency_keys VALUES (?,?,?,?)", ("wallet-service", os.urandom(16).hex(), os.urandom(32), rid(i)))
    elif k in (1, 2):
        db.execute("INSERT INTO approvals VALUES (?,?,?,?,?,?,?,?,?,?)", (key(i), os.urandom(33), "treasury", "approve", "", t, t+600, os.urandom(32), os.urandom(72), t))
        if k == 2:
            db.execute("UPDATE requests SET state='APPROVED' WHERE request_id=?", (rid(i),))
            db.execute("INSERT INTO transitions VALUES (?,?,?,?,?,?)", (key(i), 2, "PENDING_APPROVAL", "APPROVED", "quorum", t))
    elif k == 3:
        db.execute("INSERT INTO signing_claims VALUES (?,?,?,?)", (key(i), 1, "coordinator", t+30))
        db.execute("UPDATE requests SET state='SIGNING' WHERE request_id=?", (rid(i),))
        db.execute("INSERT INTO transitions VALUES (?,?,?,?,?,?)", (key(i), 3, "APPROVED", "SIGNING", "", t))
        db.execute("INSERT INTO signing_plans VALUES (?,?,?,?,?)", (key(i), 0, 0, os.urandom(220), "signer-1,signer-2"))
    elif k == 4:
        db.execute("UPDATE requests SET state='SIGNED', signature=? WHERE request_id=?", (os.urandom(65), rid(i)))
        db.execute("INSERT INTO transitions VALUES (?,?,?,?,?,?)", (key(i), 4, "SIGNING", "SIGNED", "", t))
        db.execute("DELETE FROM signing_plans WHERE " + ("request_id" if variant == "hash" else "req") + "=?", (key(i),))
STEPS = 5
def run(n, start):
    # 64 in flight, each advancing one step per round; writes grouped into commits of BATCH
    inflight = list(range(start, start + 64)); nxt = start + 64; stage = {i: 0 for i in inflight}
    pending = []; done = 0
    def commit_some(force=False):
        nonlocal pending
        while len(pending) >= BATCH or (force and pending):
            batch, pending = pending[:BATCH], pending[BATCH:]
            db.execute("BEGIN")
            for (i, k) in batch: step(i, k)
            db.execute("COMMIT")
    while done < n:
        random.shuffle(inflight)
        for i in list(inflight):
            pending.append((i, stage[i])); stage[i] += 1
            if stage[i] == STEPS:
                inflight.remove(i); done += 1
                if nxt < start + n: inflight.append(nxt); stage[nxt] = 0; nxt += 1
        commit_some()
        if not inflight: break
    commit_some(True)
run(N_PRE, 0)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
wal = path + "-wal"
run(N, N_PRE)
frames = (os.path.getsize(wal) - 32) / (4096 + 24)
print(f"{variant}: batch {BATCH}: {frames / N:.1f} WAL frames per request ({frames * 4.1 / N:.0f} KiB), db {os.path.getsize(path)//1024} KiB")
