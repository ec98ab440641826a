"""``montaged preview FOLDER`` without a daemon: reuse what the store already analysed (read-only),
analyse the rest in this process, then plan, render and export exactly as the daemon does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from montaged.analysis import Analysis, analyze_path
from montaged.config import Settings
from montaged.digest import hash_file
from montaged.errors import StoreError

log = logging.getLogger("montaged.oneshot")


def default_out_dir(settings: Settings, folder: Path) -> Path:
    """Where the daemon would put this folder's preview: output/<folder relative to its root>."""
    for root in settings.paths.watch:
        if folder == root or folder.is_relative_to(root):
            return settings.paths.output / folder.relative_to(root)
    return settings.paths.output / folder.name


def cached_analyzer(settings: Settings, say: Callable[[str], None] | None = None,
                    progress: Callable[[str, float], None] | None = None) -> Callable[[str], Analysis]:
    """An ``analyze(path)`` that returns stored features when the daemon's store has them.

    ``say`` is told which file is analysed; ``progress(path, fraction)`` how far along it is."""
    from montaged.store import Store

    store = None
    if (settings.paths.state / "montaged.db").exists():
        try:
            store = Store(settings.paths.state, readonly=True)
        except StoreError as exc:
            log.warning("not using the stored features: %s", exc)

    # A store from before BLAKE3 may still key features by BLAKE2b digests (a read-only store
    # cannot re-key them): look under both.
    legacy = store is not None and store.has_legacy_digests()

    def analyze(path) -> Analysis:
        if store is not None:
            digests = hash_file(str(path), legacy=legacy)
            for digest in digests:
                found = store.get_features(digest) if digest else None
                if found is not None:
                    return found
        if say:
            say(f"analysing {path}")
        return analyze_path(str(path), (lambda f: progress(str(path), f)) if progress else None)

    return analyze


def preview_once(settings: Settings, folder: Path, out_dir: Path, log: Callable[[str], None] | None = None,
                 progress: Callable[[str, float], None] | None = None):
    """``progress(what, fraction)``: each analysis (``what`` is the file), then the render
    (``what`` is ``"rendering"``)."""
    from montaged.montage.preview import preview_folder

    return preview_folder(folder, out_dir, settings.preview, analyze=cached_analyzer(settings, log, progress),
                          progress=(lambda f: progress("rendering", f)) if progress else None)
