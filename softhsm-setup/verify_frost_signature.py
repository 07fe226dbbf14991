#!/usr/bin/env python3
"""Independent verifier for FROST(secp256k1, SHA-256) signatures (RFC 9591).

Written from the RFC, sharing no code with ringi or the frost crates, so the
demo and the tests can show that a ringi signature is a standard one.

Usage: verify_frost_signature.py GROUP_PUBLIC_KEY_HEX MESSAGE_HEX SIGNATURE_HEX
Exit status 0 if the signature verifies, 1 if not, 2 on malformed input.

RFC 9591 section 6.5 (FROST(secp256k1, SHA-256)): contextString is
"FROST-secp256k1-SHA256-v1"; H2(m) = hash_to_field(m, 1) with
expand_message_xmd(SHA-256), DST = contextString || "chal", L = 48, modulo
the group order. A signature is SerializeElement(R) (33 bytes, SEC1
compressed) || SerializeScalar(z) (32 bytes, big-endian). It verifies when
z*G == R + H2(R || PK || msg)*PK (section 6.3, cofactor 1).
"""
import hashlib
import sys

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)
CONTEXT = b"FROST-secp256k1-SHA256-v1"


def add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def mul(k, point):
    result = None
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    return result


def decompress(data):
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("not a SEC1 compressed point")
    x = int.from_bytes(data[1:], "big")
    if x >= P:
        raise ValueError("x out of range")
    y = pow((x * x * x + 7) % P, (P + 1) // 4, P)
    if (y * y - (x * x * x + 7)) % P:
        raise ValueError("not on the curve")
    if y % 2 != data[0] % 2:
        y = P - y
    return (x, y)


def expand_message_xmd(msg, dst, length):
    ell = (length + 31) // 32
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        prev = bytes(x ^ y for x, y in zip(b0, b[-1]))
        b.append(hashlib.sha256(prev + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:length]


def h2(msg):
    return int.from_bytes(expand_message_xmd(msg, CONTEXT + b"chal", 48), "big") % N


def verify(public_key, message, signature):
    if len(signature) != 65:
        raise ValueError("signature must be 65 bytes")
    r_point = decompress(signature[:33])
    z = int.from_bytes(signature[33:], "big")
    if z >= N:
        raise ValueError("z out of range")
    pk = decompress(public_key)
    c = h2(signature[:33] + public_key + message)
    return mul(z, G) == add(r_point, mul(c, pk))


def main(argv):
    if len(argv) != 4:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    try:
        pk, msg, sig = (bytes.fromhex(a) for a in argv[1:])
        ok = verify(pk, msg, sig)
    except ValueError as e:
        print(f"verify: malformed input: {e}", file=sys.stderr)
        return 2
    print("signature valid" if ok else "signature INVALID")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
