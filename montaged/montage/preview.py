"""A folder's preview from start to finish: manifest -> inputs -> plan -> render -> exports.

The daemon and ``montaged preview FOLDER`` share these steps:

* :func:`plan_folder` (main process, milliseconds): read the manifest, resolve the folder's
  files, plan the edit from features that are already stored;
* :func:`write_outputs` (a worker process; arguments pickle): render ``preview.mp4`` and write
  the edit list, OTIO, EDL, FCPXML and storyboard next to it;
* :func:`preview_folder`: both, for the one-shot command, analysing the files first.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Mapping

from montaged.analysis import Analysis, analyze_path
from montaged.errors import ManifestError, RenderError
from montaged.lifeline import end_with_parent
from montaged.montage import export
from montaged.montage.manifest import Inputs, Manifest, load_manifest, resolve_inputs
from montaged.montage.plan import EditList, plan_edit
from montaged.montage.render import render

log = logging.getLogger("montaged.montage.preview")

PREVIEW = "preview.mp4"
Progress = Callable[[float], None]


def folder_inputs(folder: str | os.PathLike, settings) -> tuple[Manifest, Inputs]:
    """The folder's manifest (defaults when there is none) and the files it asks for."""
    folder = Path(folder)
    path = folder / settings.manifest
    manifest = load_manifest(path) if path.is_file() else Manifest(name=settings.manifest)
    return manifest, resolve_inputs(folder, manifest)


def _lookup(analyses: Mapping, path: Path) -> Analysis | None:
    for key in (path, str(path), Path(os.path.realpath(path)), os.path.realpath(path)):
        found = analyses.get(key)
        if found is not None:
            return found
    return None


def plan_folder(folder: str | os.PathLike, settings, analyses: Mapping[Path, Analysis]) -> EditList:
    """Plan the preview of ``folder`` from stored features.

    Clips without a (video) analysis are left out with a warning in the edit list; missing
    music, no analysed clip, or expected files that have not arrived are errors.
    """
    folder = Path(folder)
    manifest, inputs = folder_inputs(folder, settings)
    if not inputs.ready:
        raise ManifestError(f"{manifest.name}: still waiting for " + ", ".join(inputs.missing))
    music = _lookup(analyses, inputs.music)
    music_rel = inputs.music.relative_to(folder).as_posix()
    if music is None or music.kind != "audio":
        raise RenderError(f"the music {music_rel} has not been analysed as audio")
    clips, skipped = [], []
    for path in inputs.clips:
        rel = path.relative_to(folder).as_posix()
        analysis = _lookup(analyses, path)
        if analysis is None or analysis.kind != "video":
            skipped.append(rel)
            continue
        clips.append((rel, analysis.features, analysis.arrays))
    if not clips:
        raise RenderError("no clip of the folder has been analysed: nothing to make a preview from")
    edit = plan_edit(
        clips, (music_rel, music.features, music.arrays),
        duration=manifest.duration or settings.duration, style=manifest.style or settings.style,
        fps=settings.fps, width=settings.width, height=settings.height, seed=manifest.seed,
        aspect=manifest.aspect, folder=str(folder), title=manifest.title,
    )
    for rel in skipped:
        edit.warnings.append(f"clip {rel} skipped: not analysed")
    return edit


def write_outputs(edit: EditList, folder: str | os.PathLike, out_dir: str | os.PathLike, settings,
                  progress: Progress | None = None, proxies: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Render ``preview.mp4`` and write the edit lists and storyboard into ``out_dir``.

    Returns ``{"preview", "edl_json", "otio", "edl", "fcpxml", "storyboard"}`` -> path. The video is
    written first: if it fails, the previous outputs stay as they were.
    """
    progress = progress or (lambda _f: None)
    out_dir = Path(out_dir)
    result = render(edit, out_dir / PREVIEW, folder=folder, crf=settings.crf, preset=settings.preset,
                    processes=settings.render_processes, clip_audio=settings.clip_audio, proxies=proxies,
                    progress=lambda f: progress(0.95 * f))
    outputs = {"preview": result.path}
    outputs.update(export.export_all(edit, out_dir, result.thumbnails, folder=folder, proxies=proxies))
    progress(1.0)
    return outputs


def _picklable(fn) -> bool:
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _analyze_all(paths: list[Path], analyze, processes: int) -> dict[Path, Analysis]:
    if processes <= 1 or len(paths) <= 1 or not _picklable(analyze):
        return {p: analyze(str(p)) for p in paths}
    with ProcessPoolExecutor(max_workers=min(processes, len(paths)), mp_context=get_context("spawn"),
                             initializer=end_with_parent) as pool:
        return dict(zip(paths, pool.map(analyze, [str(p) for p in paths])))


def preview_folder(folder: str | os.PathLike, out_dir: str | os.PathLike, settings,
                   analyze: Callable[[str], Analysis] = analyze_path, analyses: Mapping[Path, Analysis] | None = None,
                   progress: Progress | None = None, processes: int = 0) -> tuple[EditList, dict[str, Path]]:
    """One-shot preview: analyse what has no features yet (in parallel processes when
    ``analyze`` can be pickled), plan, render and export."""
    folder = Path(folder)
    started = time.perf_counter()
    _, inputs = folder_inputs(folder, settings)
    if not inputs.ready:
        raise ManifestError(f"{settings.manifest}: still waiting for " + ", ".join(inputs.missing))
    known = dict(analyses or {})
    todo = [p for p in [*inputs.clips, inputs.music] if _lookup(known, p) is None]
    if todo:
        known.update(_analyze_all(todo, analyze, processes or os.cpu_count() or 1))
    analysed = time.perf_counter()
    edit = plan_folder(folder, settings, known)
    outputs = write_outputs(edit, folder, out_dir, settings, progress=progress)
    log.info("preview of %s: %d files analysed in %.1f s, planned and rendered in %.1f s", folder, len(todo),
             analysed - started, time.perf_counter() - analysed)
    return edit, outputs
