"""Write an edit list for people and editing software, every file atomically.

- ``preview.edl.json``: the contract's edit decision list (``EditList.to_dict()``).
- ``preview.otio``: OpenTimelineIO, one video track of the cuts and one audio track of the music.
- ``preview.edl``: CMX 3600, written by the ``otio-cmx3600-adapter`` from the same timeline.
- ``preview.storyboard.jpg``: a contact sheet, one thumbnail per cut with its time and source.

OTIO and EDL count in frames of the preview's rate: record times are exact (they lie on the
frame grid), source times are rounded to the nearest preview frame (the exact seconds are kept
in each OTIO clip's ``metadata["montaged"]``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import opentimelineio as otio
from PIL import Image, ImageDraw, ImageFont

from montaged.errors import RenderError
from montaged.lock import process_exists
from montaged.montage.plan import EditList

log = logging.getLogger("montaged.montage.export")

EDL_JSON = "preview.edl.json"
OTIO = "preview.otio"
CMX_EDL = "preview.edl"
STORYBOARD = "preview.storyboard.jpg"

THUMB_HEIGHT = 108
COLUMNS = 6
PAD = 6
CAPTION = 30  # pixels under each thumbnail for its two caption lines


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` and move the result to ``path``: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise RenderError(f"cannot write {path.name} to {path.parent}: {exc.strerror or exc}") from None
    finally:
        _remove_quietly(tmp)
    return path


def remove_stale_temps(out_dir: Path, names) -> None:
    """Remove the ``.<name>.<pid>.tmp`` files of writers that were killed (kill -9, power
    loss) before their ``os.replace``: hidden, so nobody takes them for output, but they would
    pile up, one per crash. A file whose pid still runs is left alone."""
    for name in names:
        for tmp in out_dir.glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2:-len(".tmp")]
            if not pid.isdigit() or int(pid) == os.getpid() or process_exists(int(pid)):
                continue  # not ours to judge, or still being written
            log.info("removing %s, left behind by an interrupted write", tmp)
            _remove_quietly(tmp)


def _remove_quietly(path: Path) -> None:
    """Clean up a temporary file; on a read-only or vanished folder there is nothing to clean."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("could not remove %s: %s", path, exc)


def write_edit_json(edit: EditList, path: Path) -> Path:
    text = json.dumps(edit.to_dict(), indent=2, ensure_ascii=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _rt(frames: int, fps: int) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(frames, fps)


def _url(folder: Path, rel: str) -> str:
    path = folder / rel
    return path.as_uri() if path.is_absolute() else rel


def build_timeline(edit: EditList, folder: str | os.PathLike | None = None) -> otio.schema.Timeline:
    """The edit as an OpenTimelineIO timeline (a video track and the music's audio track)."""
    fps = edit.fps
    folder = Path(folder if folder is not None else edit.folder)
    name = edit.title or folder.name or "montaged preview"
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = _rt(0, fps)
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for cut in edit.cuts:
        rec_in, rec_out = edit.frame_range(cut)
        clip = otio.schema.Clip(
            name=cut.source,
            media_reference=otio.schema.ExternalReference(target_url=_url(folder, cut.source)),
            source_range=otio.opentime.TimeRange(_rt(round(cut.source_in * fps), fps), _rt(rec_out - rec_in, fps)),
        )
        clip.metadata["montaged"] = {"index": cut.index, "scene": cut.scene, "beat": cut.beat, "score": cut.score,
                                     "source_in": cut.source_in, "source_out": cut.source_out,
                                     "record_in": cut.record_in, "record_out": cut.record_out}
        video.append(clip)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    total = round(edit.duration * fps)
    music = otio.schema.Clip(
        name=os.path.basename(edit.music_path),
        media_reference=otio.schema.ExternalReference(target_url=_url(folder, edit.music_path)),
        source_range=otio.opentime.TimeRange(_rt(round(edit.music_offset * fps), fps), _rt(total, fps)),
    )
    music.metadata["montaged"] = {"offset": edit.music_offset, "tempo": edit.tempo,
                                  "fade_out": {"start": edit.fade_start, "duration": edit.fade_duration}}
    audio.append(music)
    timeline.tracks.append(video)
    timeline.tracks.append(audio)
    timeline.metadata["montaged"] = {"version": edit.version, "fps": fps, "width": edit.width,
                                     "height": edit.height, "seed": edit.seed, "style": edit.style}
    return timeline


def write_otio(edit: EditList, path: Path, folder=None) -> Path:
    timeline = build_timeline(edit, folder)
    return atomic_write(path, lambda tmp: otio.adapters.write_to_file(timeline, str(tmp), adapter_name="otio_json"))


def write_cmx_edl(edit: EditList, path: Path, folder=None) -> Path:
    timeline = build_timeline(edit, folder)
    return atomic_write(path, lambda tmp: otio.adapters.write_to_file(timeline, str(tmp), adapter_name="cmx_3600",
                                                                        rate=edit.fps))


def _timecode(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def storyboard_image(edit: EditList, thumbnails: Mapping[int, np.ndarray]) -> Image.Image:
    """A contact sheet: thumbnails in cut order, each captioned with its time and source."""
    portrait = edit.height > edit.width
    th = THUMB_HEIGHT * 2 if portrait else THUMB_HEIGHT
    tw = max(2, round(th * edit.width / edit.height))
    cols = min(COLUMNS + (2 if portrait else 0), max(1, len(edit.cuts)))
    rows = -(-len(edit.cuts) // cols)
    header = 28
    sheet = Image.new("RGB", (PAD + cols * (tw + PAD), header + rows * (th + CAPTION + PAD) + PAD), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    title = edit.title or Path(edit.folder).name or "preview"
    draw.text((PAD, 6), f"{title}  ·  {len(edit.cuts)} cuts  ·  {edit.duration:.1f} s  ·  {edit.tempo:g} BPM",
              fill=(235, 235, 235), font=_font(14))
    small = _font(11)
    for i, cut in enumerate(edit.cuts):
        x = PAD + (i % cols) * (tw + PAD)
        y = header + (i // cols) * (th + CAPTION + PAD)
        thumb = thumbnails.get(cut.index)
        if thumb is not None:
            sheet.paste(Image.fromarray(np.asarray(thumb, np.uint8)).resize((tw, th), Image.BILINEAR), (x, y))
        else:
            draw.rectangle((x, y, x + tw - 1, y + th - 1), outline=(90, 90, 90))
        draw.text((x, y + th + 2), f"{cut.index + 1}  {_timecode(cut.record_in)}", fill=(235, 235, 235), font=small)
        source = cut.source if len(cut.source) <= 28 else "…" + cut.source[-27:]
        draw.text((x, y + th + 15), source, fill=(170, 170, 170), font=small)
    return sheet


def thumbnails_from_sources(edit: EditList, folder=None, proxies: Mapping[str, str] | None = None) -> dict[int, np.ndarray]:
    """Decode the middle frame of every cut (when no render supplied thumbnails)."""
    from montaged.montage.render import Source, thumbnail

    folder = Path(folder if folder is not None else edit.folder)
    proxies = proxies or {}
    out: dict[int, np.ndarray] = {}
    sources: dict[str, Source] = {}
    try:
        for cut in edit.cuts:
            path = str(proxies.get(cut.source) or folder / cut.source)
            if path not in sources:
                sources[path] = Source(path, threads=1)
            src = sources[path]
            a, b = edit.frame_range(cut)
            mid = (b - a) // 2
            frame = next(iter(src.frames(cut.source_in + mid / edit.fps, 1, edit.fps)))
            out[cut.index] = thumbnail(src.fit(edit.width, edit.height)(frame), THUMB_HEIGHT)
    finally:
        for s in sources.values():
            s.close()
    return out


def write_storyboard(edit: EditList, path: Path, thumbnails: Mapping[int, np.ndarray] | None = None,
                     folder=None, proxies=None) -> Path:
    if thumbnails is None or any(c.index not in thumbnails for c in edit.cuts):
        found = dict(thumbnails or {})
        found.update({k: v for k, v in thumbnails_from_sources(edit, folder, proxies).items() if k not in found})
        thumbnails = found
    image = storyboard_image(edit, thumbnails)
    return atomic_write(path, lambda tmp: image.save(tmp, format="JPEG", quality=85))


def export_all(edit: EditList, out_dir: str | os.PathLike, thumbnails: Mapping[int, np.ndarray] | None = None,
               folder=None, proxies=None) -> dict[str, Path]:
    """Write the edit list, OTIO, EDL and storyboard to ``out_dir``; returns them by kind."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    remove_stale_temps(out_dir, (EDL_JSON, OTIO, CMX_EDL, STORYBOARD))
    return {
        "edl_json": write_edit_json(edit, out_dir / EDL_JSON),
        "otio": write_otio(edit, out_dir / OTIO, folder),
        "edl": write_cmx_edl(edit, out_dir / CMX_EDL, folder),
        "storyboard": write_storyboard(edit, out_dir / STORYBOARD, thumbnails, folder, proxies),
    }
