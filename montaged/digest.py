"""Content digests: features are keyed by what a file contains, not by its name.

BLAKE2b over the full content (no sampling: a modified file must always be re-analysed). hashlib
releases the GIL while hashing large buffers, so the daemon hashes in threads without stalling its
main loop.
"""

from __future__ import annotations

import hashlib

CHUNK = 4 * 1024 * 1024


def file_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
