"""Write an edit list for people and editing software, every file atomically.

- ``preview.edl.json``: the contract's edit decision list (``EditList.to_dict()``).
- ``preview.otio``: OpenTimelineIO, one video track of the cuts and one audio track of the music.
- ``preview.edl``: CMX 3600, the video events written by the ``otio-cmx3600-adapter`` from the
  same timeline (it writes only the first track), then the music as an ``AA`` event of our own.
- ``preview.fcpxml``: Final Cut Pro X XML, written by the ``otio-fcpx-xml-adapter``.
- ``preview.storyboard.jpg``: a contact sheet, one thumbnail per cut with its time and source.

OTIO, EDL and FCPXML count in frames of the preview's rate: record times are exact (they lie on
the frame grid), source times are rounded to the nearest preview frame (the exact seconds are
kept in each OTIO clip's ``metadata["montaged"]``). Source times start at the clip's timecode
(a camera's ``tmcd`` track or a ``timecode`` tag) when it has one, else at 00:00:00:00; every
media reference carries its ``available_range`` (start timecode and the clip's length).
"""

from __future__ import annotations

import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import opentimelineio as otio
from PIL import Image, ImageDraw, ImageFont

from montaged.errors import MediaError, RenderError
from montaged.lock import process_exists
from montaged.media.probe import SourceTiming, source_timing
from montaged.montage.plan import EditList

log = logging.getLogger("montaged.montage.export")

EDL_JSON = "preview.edl.json"
OTIO = "preview.otio"
CMX_EDL = "preview.edl"
FCPXML = "preview.fcpxml"
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


def source_timings(edit: EditList, folder: str | os.PathLike | None = None) -> dict[str, SourceTiming | None]:
    """Length and start timecode of every source of the edit (None for a file that cannot be
    opened any more: its edit lists then count from 00:00:00:00)."""
    folder = Path(folder if folder is not None else edit.folder)
    timings: dict[str, SourceTiming | None] = {}
    for rel in [*dict.fromkeys(c.source for c in edit.cuts), edit.music_path]:
        try:
            timings[rel] = source_timing(str(folder / rel))
        except MediaError as exc:
            log.warning("edit lists of %s count %s from 00:00:00:00: %s", folder, rel, exc)
            timings[rel] = None
    return timings


def timecode_frames(timing: SourceTiming | None, fps: int, name: str = "") -> int:
    """The source's start timecode in frames of ``fps`` (0 without a timecode)."""
    if timing is None or not timing.timecode:
        return 0
    rate = otio.opentime.RationalTime.nearest_smpte_timecode_rate(timing.rate or fps)
    try:
        start = otio.opentime.from_timecode(timing.timecode, rate)
    except ValueError:
        log.warning("%s: timecode %r not understood: counting from 00:00:00:00", name, timing.timecode)
        return 0
    return round(start.to_seconds() * fps)


def _reference(folder: Path, rel: str, start: int, frames: int, fps: int,
               timing: SourceTiming | None) -> otio.schema.ExternalReference:
    ref = otio.schema.ExternalReference(target_url=_url(folder, rel),
                                        available_range=otio.opentime.TimeRange(_rt(start, fps), _rt(frames, fps)))
    if timing is not None and timing.timecode and start:
        ref.metadata["montaged"] = {"timecode": timing.timecode, "timecode_rate": timing.rate}
    return ref


def build_timeline(edit: EditList, folder: str | os.PathLike | None = None,
                   timings: dict[str, SourceTiming | None] | None = None) -> otio.schema.Timeline:
    """The edit as an OpenTimelineIO timeline (a video track and the music's audio track).

    ``timings`` (from :func:`source_timings`, probed when not given) place source ranges on
    each clip's timecode and give every media reference its ``available_range``."""
    fps = edit.fps
    folder = Path(folder if folder is not None else edit.folder)
    timings = source_timings(edit, folder) if timings is None else timings
    name = edit.title or folder.name or "montaged preview"
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = _rt(0, fps)
    starts = {c.source: timecode_frames(timings.get(c.source), fps, c.source) for c in edit.cuts}
    # The available range covers the whole clip, and at least every frame the edit uses.
    lengths: dict[str, int] = {}
    for cut in edit.cuts:
        timing = timings.get(cut.source)
        used = round(cut.source_in * fps) + round((cut.record_out - cut.record_in) * fps)
        lengths[cut.source] = max(lengths.get(cut.source, 0), used, round(timing.duration * fps) if timing else 0)
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for cut in edit.cuts:
        rec_in, rec_out = edit.frame_range(cut)
        start = starts[cut.source]
        clip = otio.schema.Clip(
            name=cut.source,
            media_reference=_reference(folder, cut.source, start, lengths[cut.source], fps, timings.get(cut.source)),
            source_range=otio.opentime.TimeRange(_rt(start + round(cut.source_in * fps), fps), _rt(rec_out - rec_in, fps)),
        )
        clip.metadata["montaged"] = {"index": cut.index, "scene": cut.scene, "beat": cut.beat, "score": cut.score,
                                     "source_in": cut.source_in, "source_out": cut.source_out,
                                     "record_in": cut.record_in, "record_out": cut.record_out}
        video.append(clip)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    total = round(edit.duration * fps)
    music_in = round(edit.music_offset * fps)
    music_timing = timings.get(edit.music_path)
    music_length = max(music_in + total, round(music_timing.duration * fps) if music_timing else 0)
    music = otio.schema.Clip(
        name=os.path.basename(edit.music_path),
        # Music counts from 0: audio files rarely carry a timecode tag (BWF's is a sample count).
        media_reference=_reference(folder, edit.music_path, 0, music_length, fps, None),
        source_range=otio.opentime.TimeRange(_rt(music_in, fps), _rt(total, fps)),
    )
    music.metadata["montaged"] = {"offset": edit.music_offset, "tempo": edit.tempo,
                                  "fade_out": {"start": edit.fade_start, "duration": edit.fade_duration}}
    audio.append(music)
    timeline.tracks.append(video)
    timeline.tracks.append(audio)
    timeline.metadata["montaged"] = {"version": edit.version, "fps": fps, "width": edit.width,
                                     "height": edit.height, "seed": edit.seed, "style": edit.style}
    return timeline


def write_otio(edit: EditList, path: Path, folder=None, timings=None) -> Path:
    timeline = build_timeline(edit, folder, timings)
    return atomic_write(path, lambda tmp: otio.adapters.write_to_file(timeline, str(tmp), adapter_name="otio_json"))


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def _label(text: str) -> str:
    """A name as an EDL line or an XML attribute can hold it: control characters (a title's
    newline or BEL) become spaces, and what XML has no character for becomes U+FFFD."""
    return _NOT_XML.sub("\ufffd", _CONTROL.sub(" ", text))


def _labelled(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    """A copy of ``timeline`` whose title and clip names are :func:`_label` ed."""
    timeline = timeline.deepcopy()
    timeline.name = _label(timeline.name)
    for clip in timeline.find_clips():
        clip.name = _label(clip.name)
    return timeline


def _reel(name: str, length: int = 8) -> str:
    """The reel name the cmx_3600 adapter gives the same file in a video event: the file name
    without a letters-only extension, letters, digits and spaces only, cut or padded to ``length``."""
    reel = re.sub(r"[^ a-zA-Z0-9]+", "", re.sub(r"[.][a-zA-Z]+$", "", os.path.basename(name))) or "AX"
    return reel[:length].ljust(length)


def _audio_events(timeline: otio.schema.Timeline, fps: int, first_number: int) -> list[str]:
    """CMX 3600 ``AA`` (stereo: channels 1 and 2) events for the clips of the audio tracks."""
    lines = []
    number = first_number
    for track in timeline.tracks:
        if track.kind != otio.schema.TrackKind.Audio:
            continue
        for clip in track.find_clips():
            src, rec = clip.source_range, track.range_of_child(clip)
            tc = [otio.opentime.to_timecode(t, fps) for t in (src.start_time, src.end_time_exclusive(),
                                                                rec.start_time, rec.end_time_exclusive())]
            url = getattr(clip.media_reference, "target_url", None)
            lines.append(f"{number:03d}  {_reel(url or clip.name)} {'AA':5} C        {' '.join(tc)}")
            lines.append(f"* FROM CLIP NAME:  {clip.name}")
            if url:
                lines.append(f"* FROM CLIP: {url}")
            number += 1
    return lines


def cmx_edl_text(timeline: otio.schema.Timeline, fps: int) -> str:
    """The CMX 3600 EDL of ``timeline``: the adapter's video events (it writes only the first
    track), the frame-count mode, and the music as ``AA`` events numbered after the video."""
    timeline = _labelled(timeline)
    text = otio.adapters.write_to_string(timeline, adapter_name="cmx_3600", rate=fps)
    lines = text.rstrip("\n").split("\n")
    at = 1 if lines and lines[0].startswith("TITLE:") else 0
    lines.insert(at, "FCM: NON-DROP FRAME")  # the preview's rate is a whole number of frames
    events = sum(1 for line in lines if re.match(r"\d{3,}  ", line))
    return "\n".join(lines + _audio_events(timeline, fps, events + 1)) + "\n"


def write_cmx_edl(edit: EditList, path: Path, folder=None, timings=None) -> Path:
    text = cmx_edl_text(build_timeline(edit, folder, timings), edit.fps)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def fcpxml_text(timeline: otio.schema.Timeline) -> str:
    """Final Cut Pro X XML from the ``fcpx_xml`` adapter, with two repairs.

    The adapter writes a browser ``<asset-clip>`` per use of a source: one per asset is kept.
    It places a clip's ``<video>`` at offset 0 of the clip's own timeline; Final Cut
    places it at its asset's start (the source timecode), and so do we: without that, a clip
    whose ``start`` is a timecode would point past the end of its video."""
    root = ET.fromstring(otio.adapters.write_to_string(_labelled(timeline), adapter_name="fcpx_xml"))
    assets = {a.get("id"): a for a in root.iter("asset")}
    # One browser clip per asset (the adapter writes one per use).
    seen = set()
    for clip in root.findall("asset-clip"):
        if clip.get("ref") in seen:
            root.remove(clip)
        seen.add(clip.get("ref"))
    for video in root.iter("video"):
        asset = assets.get(video.get("ref"))
        start = asset.get("start", "0s") if asset is not None else "0s"
        if start not in ("0s", "0/1s"):
            video.set("offset", start)
            video.set("start", start)
    ET.indent(root, "    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_fcpxml(edit: EditList, path: Path, folder=None, timings=None) -> Path:
    text = fcpxml_text(build_timeline(edit, folder, timings))
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _timecode(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m):02d}:{s:05.2f}"


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def storyboard_header(edit: EditList) -> str:
    """The contact sheet's title line; the tempo in whole BPM, as people say it."""
    title = edit.title or Path(edit.folder).name or "preview"
    return f"{title}  ·  {len(edit.cuts)} cuts  ·  {edit.duration:.1f} s  ·  {round(edit.tempo)} BPM"


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
    draw.text((PAD, 6), storyboard_header(edit), fill=(235, 235, 235), font=_font(14))
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
    """Write the edit list, OTIO, EDL, FCPXML and storyboard to ``out_dir``; returns them by kind."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    remove_stale_temps(out_dir, (EDL_JSON, OTIO, CMX_EDL, FCPXML, STORYBOARD))
    timings = source_timings(edit, folder)
    return {
        "edl_json": write_edit_json(edit, out_dir / EDL_JSON),
        "otio": write_otio(edit, out_dir / OTIO, folder, timings),
        "edl": write_cmx_edl(edit, out_dir / CMX_EDL, folder, timings),
        "fcpxml": write_fcpxml(edit, out_dir / FCPXML, folder, timings),
        "storyboard": write_storyboard(edit, out_dir / STORYBOARD, thumbnails, folder, proxies),
    }
