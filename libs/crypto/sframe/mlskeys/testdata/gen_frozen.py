#!/usr/bin/env python3
"""Independent computation (Python standard library only) of the MLS-keyed
SFrame values in frozen.json: the base key from MLS-Exporter (RFC 9420,
Section 8.5), and the KID of RFC 9605 Section 5.2. The ct field (the first frame
the member sends, counter 0) is then added from the Go implementation, as AES
is not in Python's standard library; the key derivation and AEAD it rests on
are checked by the RFC 9605 vectors in package sframe."""
import hashlib, hmac, json, sys

def hkdf_expand(h, prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), h).digest()
        out, i = out + t, i + 1
    return out[:length]

def vec(b):
    assert len(b) < 64
    return bytes([len(b)]) + b

def expand_with_label(h, secret, label, context, length):
    info = length.to_bytes(2, "big") + vec(b"MLS 1.0 " + label) + vec(context)
    return hkdf_expand(h, secret, info, length)

def mls_exporter(h, exporter_secret, label, context, length):
    derived = expand_with_label(h, exporter_secret, label, b"", h().digest_size)
    return expand_with_label(h, derived, b"exported", h(context).digest(), length)

# SFrame suite -> Nk, the exported base key length.
SUITES = {1: 48, 4: 16, 5: 32}

cases = []
exporter_secret = bytes(range(32))
for suite, nk in SUITES.items():
    for epoch, leaf, leaf_count, epoch_bits in [(261, 2, 5, 4), (7, 0, 1, 1), (1 << 40, 1000, 1024, 8)]:
        s = leaf_count.bit_length()
        kid = (leaf << epoch_bits) + (epoch % (1 << epoch_bits))
        base_key = mls_exporter(hashlib.sha256, exporter_secret, b"SFrame 1.0 Base Key", b"", nk)
        cases.append(dict(cipher_suite=suite, mls_hash="SHA-256", exporter_secret=exporter_secret.hex(),
                          epoch=epoch, leaf_index=leaf, leaf_count=leaf_count, epoch_bits=epoch_bits,
                          index_bits=s, kid=kid, base_key=base_key.hex(),
                          metadata=b"rtp".hex(), pt=b"guardyn call frame".hex()))
json.dump(cases, sys.stdout, indent=1)
print()
