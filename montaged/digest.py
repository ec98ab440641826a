"""Content digests: features are keyed by what a file contains, not by its name.

BLAKE3 over the full content (no sampling: a modified file must always be re-analysed), written
``b3:<64 hex digits>``. Both hashers release the GIL while hashing a buffer, so the daemon hashes
in threads without stalling its main loop.

Stores written before BLAKE3 key features by a bare 40-digit BLAKE2b-160 digest (a *legacy*
digest). They are re-keyed lazily (see ``jobs.set_digest``): while the store still holds legacy
digests, a file is hashed both ways in the same read, and features found under its legacy digest
are moved to its BLAKE3 digest without analysing the file again.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import blake3

CHUNK = 4 * 1024 * 1024
PREFIX = "b3:"


class Digests(NamedTuple):
    current: str             # "b3:…", what the store keys features by from now on
    legacy: str | None       # the BLAKE2b digest the file had before BLAKE3, when asked for


def is_legacy(digest: str | None) -> bool:
    """A digest from before BLAKE3 (bare BLAKE2b hex, no algorithm prefix)."""
    return digest is not None and not digest.startswith(PREFIX)


def hash_file(path: str, *, legacy: bool = False) -> Digests:
    """The file's BLAKE3 digest and, with ``legacy=True``, its BLAKE2b one, from one read."""
    b3 = blake3.blake3()
    b2 = hashlib.blake2b(digest_size=20) if legacy else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            chunk = view[:n]
            b3.update(chunk)
            if b2 is not None:
                b2.update(chunk)
    return Digests(PREFIX + b3.hexdigest(), b2.hexdigest() if b2 is not None else None)


def file_digest(path: str) -> str:
    """The digest features are keyed by (``b3:…``)."""
    return hash_file(path).current
