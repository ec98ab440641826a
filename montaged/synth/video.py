"""Synthetic video clips with known cuts, for tests, the demo and the benchmarks.

Every clip is a sequence of *shots*. Each shot shows its own "look": a periodic colour texture
(its own hue, saturation and brightness, smooth blobs plus fine detail) that pans inside the frame
with a speed that rises and falls, so motion features are non-trivial and every shot has a most
active moment. Consecutive looks differ strongly in hue, saturation and brightness, so
PySceneDetect's ``ContentDetector`` (threshold 27) sees exactly the true cuts, while a pan inside a
shot stays far below the threshold.

``make_clip`` returns a :class:`ClipTruth` with the frame index of every cut and the presentation
time of every frame as it is stored in the file (rounded to the container's time base), so tests
can compare analysis output to the truth exactly.

Conventions:

- ``rotation`` is the clockwise angle a player turns the picture for display (what the legacy
  ``rotate`` tag and phone footage say: a portrait phone clip is coded landscape with
  ``rotation=90``). It is stored as display-matrix side data.
- ``noise`` is the standard deviation of the added sensor noise as a fraction of full scale
  (0.02 = about 5 of 255 levels).
- ``vfr=True`` gives every frame a random duration between 0.5x and 2x the nominal one.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger("montaged.synth.video")

# Codec aliases accepted by make_clip, and the container that goes with them when the caller's
# extension does not say (an .mp4 cannot hold VP9 from every muxer, .webm holds only VP8/9/AV1).
_CODECS = {
    "libx264": "libx264", "h264": "libx264", "x264": "libx264",
    "libx265": "libx265", "hevc": "libx265", "h265": "libx265", "x265": "libx265",
    "vp9": "libvpx-vp9", "libvpx-vp9": "libvpx-vp9",
    "mpeg4": "mpeg4",
}

# Containers that store timestamps in milliseconds whatever the codec time base is: the truth
# must be rounded the same way or VFR tests would compare against times that are not in the file.
_MS_CONTAINERS = {".mkv", ".webm"}


@dataclass
class ClipTruth:
    path: str
    fps: float
    n_frames: int
    width: int
    height: int
    cut_frames: list[int]  # first frame index of every shot after the first
    frame_times: list[float]  # pts in seconds of every frame (VFR-aware)
    # Extensions (not in the shared API sketch, added compatibly):
    rotation: int = 0
    codec: str = "libx264"
    gop: int = 30
    has_audio: bool = False
    start_time: float = 0.0
    shot_looks: list[int] = field(default_factory=list)  # look index of every shot
    flashes: list[int] = field(default_factory=list)  # frames lit by a flash (not cuts)

    @property
    def duration(self) -> float:
        """Seconds from the first frame's pts to the end of the last frame."""
        if self.n_frames < 2:
            return self.n_frames / self.fps
        return self.frame_times[-1] - self.frame_times[0] + (self.frame_times[-1] - self.frame_times[-2])

    @property
    def cut_times(self) -> list[float]:
        """Seconds (relative to the first frame) at which each cut's first frame is shown."""
        return [self.frame_times[c] - self.frame_times[0] for c in self.cut_frames]


# --------------------------------------------------------------------------------------------
# Looks: periodic colour textures


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale`` pixels wide.

    Filtering white noise in the Fourier domain makes the field periodic, so a pan can wrap
    around the texture forever without a seam.
    """
    h, w = shape
    white = rng.standard_normal((h, w)).astype(np.float32)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    sigma_f = 1.0 / max(scale, 1.0)
    gain = np.exp(-(fx**2 + fy**2) / (2 * sigma_f**2))
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(h, w)).astype(np.float32)
    out -= out.mean()
    std = float(out.std())
    return out / std if std > 0 else out


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all 0..1) to RGB uint8."""
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int8) % 6
    f = h6 - np.floor(h6)
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def look_params(look: int, seed: int) -> tuple[float, float, float]:
    """(hue, saturation, value) of a look, all 0..1.

    Hues step by the golden ratio (consecutive looks are far apart on the colour wheel) and brightness alternates between dark and bright, so any two consecutive looks differ
    by far more than ContentDetector's threshold.
    """
    phase = (seed * 0.137) % 1.0
    # Hues stay clear of red, where OpenCV's 0..179 hue wraps: a texture wobbling across the wrap
    # would make |dH| jump by ~180 inside one shot and look like a cut to ContentDetector.
    hue = 0.12 + 0.76 * ((phase + look * 0.618034) % 1.0)
    sat = 0.55 + 0.35 * ((look * 0.381966 + phase) % 1.0)
    val = 0.32 if look % 2 else 0.78
    return hue, sat, val


def make_look(look: int, seed: int, size: tuple[int, int]) -> np.ndarray:
    """A periodic RGB texture (height, width, 3) for one look, the size of the frame."""
    width, height = size
    rng = np.random.default_rng([seed, look, 7919])
    hue, sat, val = look_params(look, seed)
    diag = math.hypot(width, height)
    blobs = _smooth_field(rng, (height, width), diag / 12.0)
    detail = _smooth_field(rng, (height, width), diag / 100.0)
    fine = _smooth_field(rng, (height, width), 1.5)
    # Hue wobbles a little inside a look; detail and fine grain mostly modulate brightness so
    # the picture has edges (sharpness) without the look's average colour drifting, and a pan
    # changes pixels about as much as a camera pan over a real scene does.
    h = hue + 0.03 * blobs
    s = np.clip(sat + 0.08 * blobs + 0.02 * detail, 0.05, 1.0)
    v = np.clip(val + 0.12 * blobs + 0.05 * detail + 0.02 * fine, 0.02, 1.0)
    return _hsv_to_rgb(h, s, v)


# --------------------------------------------------------------------------------------------
# Timing


def _rate(fps: float | Fraction) -> Fraction:
    """The frame rate as an exact fraction (29.97 -> 30000/1001)."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def _frame_pts(n: int, rate: Fraction, vfr: bool, start_time: float, ext: str,
               rng: np.random.Generator) -> tuple[list[int], Fraction]:
    """Integer pts of every frame and the time base they are in.

    CFR uses 1/rate as the time base so every duration is exactly one tick. VFR uses 1/90000 (the
    MPEG clock) with random durations. Matroska/WebM store milliseconds, so they get 1/1000.
    """
    if ext in _MS_CONTAINERS:
        tb = Fraction(1, 1000)
    elif vfr:
        tb = Fraction(1, 90000)
    else:
        tb = 1 / rate
    nominal = 1 / rate
    if vfr:
        factors = rng.choice(np.array([0.5, 0.75, 1.0, 1.0, 1.5, 2.0]), size=n)
        factors[0] = 0.0
        seconds = np.cumsum(factors) * float(nominal)
    else:
        seconds = np.arange(n) * float(nominal)
    seconds = seconds + start_time
    ticks = np.round(seconds / float(tb)).astype(np.int64)
    if n > 1 and np.any(np.diff(ticks) <= 0):
        raise ValueError(f"frame rate {rate} is too high for the time base {tb} of {ext}")
    return ticks.tolist(), tb


# --------------------------------------------------------------------------------------------
# Encoding


def _open_video_stream(out: av.container.OutputContainer, codec: str, rate: Fraction, tb: Fraction,
                       width: int, height: int, gop: int, crf: int, bframes: bool, preset: str,
                       scenecut: bool, sar: Fraction | None, bitrate: int | None = None,
                       profile: str | None = None, bit_depth: int = 8):
    if bit_depth not in (8, 10) or (bit_depth == 10 and codec != "libx265"):
        raise ValueError(f"bit_depth {bit_depth} is not supported with {codec} (10-bit: HEVC only)")
    stream = out.add_stream(codec, rate=rate)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p10le" if bit_depth == 10 else "yuv420p"
    stream.codec_context.time_base = tb
    stream.codec_context.gop_size = gop
    if sar is not None:
        stream.codec_context.sample_aspect_ratio = sar
    opts: dict[str, str] = {}
    if codec == "libx264":
        opts = {"preset": preset}
        if bitrate:
            stream.codec_context.bit_rate = int(bitrate)
            opts.update(maxrate=str(int(bitrate * 1.25)), bufsize=str(int(bitrate * 2)))
        else:
            opts["crf"] = str(crf)
        params = []
        if not bframes:
            params.append("bframes=0")
        if not scenecut:
            params.append("scenecut=0")
        if params:
            opts["x264-params"] = ":".join(params)
        if profile:
            opts["profile"] = profile
    elif codec == "libx265":
        params = [f"keyint={gop}", "log-level=error"]
        if not bframes:
            params.append("bframes=0")
        if not scenecut:
            params.append("scenecut=0")
        opts = {"preset": preset, "x265-params": ":".join(params)}
        if profile:
            opts["profile"] = profile
        if bitrate:
            stream.codec_context.bit_rate = int(bitrate)
        else:
            opts["crf"] = str(crf)
    elif codec == "libvpx-vp9":
        # realtime + high cpu-used keeps test encodes fast; crf with b=0 is constant quality.
        opts = {"crf": str(min(crf + 10, 63)), "b": "0", "deadline": "realtime", "cpu-used": "8",
                "row-mt": "1"}
    elif codec == "mpeg4":
        stream.codec_context.bit_rate = int(width * height * float(rate) * 0.2)
        stream.codec_context.max_b_frames = 2 if bframes else 0
    stream.codec_context.options = opts
    return stream


def _add_audio_stream(out: av.container.OutputContainer, ext: str):
    codec = "libopus" if ext == ".webm" else "aac"
    stream = out.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    return stream


def _encode_audio(out: av.container.OutputContainer, stream, duration: float) -> None:
    """A quiet two-tone hum, so the clip has a real, decodable audio track."""
    sr = 48000
    n = int(round(duration * sr))
    t = np.arange(n, dtype=np.float32) / sr
    mono = 0.1 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * np.sin(2 * np.pi * 330.0 * t)
    stereo = np.stack([mono, mono]).astype(np.float32)
    block = 1024 * 4
    for i in range(0, n, block):
        chunk = np.ascontiguousarray(stereo[:, i:i + block])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = sr
        frame.pts = i
        frame.time_base = Fraction(1, sr)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def _shot_plan(n: int, cuts: list[int], looks: list[int] | None) -> tuple[np.ndarray, list[int]]:
    """Shot index of every frame, and the look of every shot."""
    bounds = sorted(set(c for c in cuts if 0 < c < n))
    if bounds != sorted(cuts):
        raise ValueError(f"cuts must be distinct frame indices in 1..{n - 1}, got {cuts}")
    shot_of_frame = np.searchsorted(np.array(bounds, dtype=np.int64), np.arange(n), side="right")
    n_shots = len(bounds) + 1
    if looks is None:
        looks = list(range(n_shots))
    if len(looks) != n_shots:
        raise ValueError(f"looks needs one entry per shot ({n_shots}), got {len(looks)}")
    return shot_of_frame, list(looks)


MOTIONS = ("none", "pan", "handheld", "walk", "whip", "zoom")


def _camera_path(shot_of_frame: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                 motion: str) -> tuple[np.ndarray, np.ndarray]:
    """Texture offset (dy, dx) and zoom factor of every frame: how the camera moves.

    ``pan``: a tripod pan whose speed rises and falls, peaking somewhere inside each shot (at a
    random phase) so the most active window of a shot is well defined; direction random per shot.
    ``handheld``: the same pan plus a phone's shake: a slow wander of ~1 % of the diagonal and a
    per-frame tremor of a few pixels (at 1080p), as a stabilised phone in a walking hand gives.
    ``walk``: handheld shake, a step bob (2 Hz, vertical) and a steady push in (zoom 1.0 -> 1.35
    over the shot), which moves every pixel differently: what parallax does to a real walking shot.
    ``whip``: a fast pan, up to ~4 % of the diagonal a frame (a swish between subjects).
    ``zoom``: a slow optical zoom in or out from a tripod.
    """
    width, height = size
    n = len(shot_of_frame)
    offsets = np.zeros((n, 2), dtype=np.float64)
    zoom = np.ones(n, dtype=np.float64)
    if motion == "none":
        return offsets.astype(np.int64), zoom
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    diag = math.hypot(width, height)
    for shot in np.unique(shot_of_frame):
        idx = np.flatnonzero(shot_of_frame == shot)
        m = len(idx)
        angle = rng.uniform(0, 2 * np.pi)
        peak_at = rng.uniform(0.2, 0.8)
        top = diag * (rng.uniform(0.02, 0.04) if motion == "whip" else rng.uniform(0.002, 0.006))
        if motion == "zoom":
            top = 0.0
        pos = np.arange(m) / max(m - 1, 1)
        speed = top * (0.15 + 0.85 * np.exp(-((pos - peak_at) ** 2) / (2 * 0.15**2)))
        dist = np.cumsum(speed) - speed[0]
        dy = dist * math.sin(angle) + rng.uniform(0, height)
        dx = dist * math.cos(angle) + rng.uniform(0, width)
        if motion in ("handheld", "walk"):
            wander = np.cumsum(rng.standard_normal((m, 2)), axis=0)
            wander -= np.linspace(0, 1, m)[:, None] * wander[-1]  # a bridge: it drifts, then returns
            wander *= 0.01 * diag / max(np.abs(wander).max(), 1e-9)
            tremor = rng.standard_normal((m, 2)) * (diag / 700.0)
            dy = dy + wander[:, 0] + tremor[:, 0]
            dx = dx + wander[:, 1] + tremor[:, 1]
        if motion == "walk":
            t = np.arange(m) / 30.0
            dy = dy + np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, 2 * np.pi)) * diag * 0.006
            zoom[idx] = 1.0 + 0.35 * pos
        elif motion == "zoom":
            zoom[idx] = 1.0 + 0.5 * (pos if rng.random() < 0.5 else 1.0 - pos)
        offsets[idx, 0] = dy
        offsets[idx, 1] = dx
    return np.round(offsets).astype(np.int64), zoom


def _view(texture: np.ndarray, dy: int, dx: int, zoom: float, size: tuple[int, int]) -> np.ndarray:
    """The frame a camera at offset (dy, dx) with ``zoom`` sees of a periodic texture.

    ``texture`` is the look tiled 2x2, so an unzoomed view is a plain slice (a view, no copy); a
    zoomed one samples the base tile with wrapped indices (nearest neighbour, ~20 ms at 1080p).
    """
    width, height = size
    dy, dx = dy % height, dx % width
    if zoom == 1.0:
        return texture[dy:dy + height, dx:dx + width]
    rows = ((np.arange(height) - height / 2) / zoom + height / 2 + dy).astype(np.int64) % height
    cols = ((np.arange(width) - width / 2) / zoom + width / 2 + dx).astype(np.int64) % width
    return texture[rows[:, None], cols[None, :]]


def _light(img: np.ndarray, gain: float, flash: bool) -> np.ndarray:
    """A fade (``gain`` < 1 darkens towards black) or a camera flash (most of the way to white)."""
    out = img.astype(np.float32)
    if flash:
        out = out * 0.25 + 255.0 * 0.75
    out *= gain
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _fade_gains(n: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Per-frame brightness gain: ramps from black over ``fade_in`` frames, to black over ``fade_out``."""
    gain = np.ones(n, dtype=np.float64)
    if fade_in > 0:
        k = min(fade_in, n)
        gain[:k] = np.arange(k) / fade_in
    if fade_out > 0:
        k = min(fade_out, n)
        gain[n - k:] = np.minimum(gain[n - k:], np.arange(k, 0, -1) / (fade_out + 1))
    return gain


class _Grain:
    """Sensor noise for every frame, spatially correlated over 2x2 pixels as after a camera's
    demosaicing (pure per-pixel noise would be unrealistically hard to compress).

    Drawing fresh normal noise for every 1080p frame cost more than x264 encoding it (~85 ms a
    frame). Instead a few noise fields are drawn once, and frame ``i`` adds field
    ``order[i % FIELDS]`` at a random offset (~4 ms). A field comes back only every ``FIELDS``
    frames, further than x264 looks for references (a few frames): if it could predict the
    noise of a frame from a reference with the same field, that frame would be much smaller
    than its neighbours, and the frame sizes would no longer look like a camera's.
    """

    FIELDS = 12
    PAD = 16  # the largest offset, in pixels

    def __init__(self, size: tuple[int, int], sigma: float, rng: np.random.Generator):
        width, height = size
        self.width, self.height, self.rng = width, height, rng
        half = (self.FIELDS, (height + self.PAD + 1) // 2, (width + self.PAD + 1) // 2, 3)
        small = np.rint(rng.standard_normal(half, dtype=np.float32) * np.float32(sigma))
        small = np.clip(small, -127, 127).astype(np.int8)
        self.fields = small.repeat(2, axis=1).repeat(2, axis=2)
        self.order = rng.permutation(self.FIELDS)
        self.frames = 0

    def __call__(self, img: np.ndarray) -> np.ndarray:
        k = self.order[self.frames % self.FIELDS]
        self.frames += 1
        # Even offsets keep the 2x2 grain on the 4:2:0 chroma grid, as fresh grain always was: at
        # odd ones chroma subsampling averages neighbouring grains away, and frames alternating
        # between the two differ in size like cuts do.
        dy, dx = 2 * self.rng.integers(0, self.PAD // 2 + 1, 2)
        grain = self.fields[k, dy:dy + self.height, dx:dx + self.width]
        out = img.astype(np.int16)
        out += grain
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)


def make_clip(path, *, duration: float = 3.0, fps: float = 30, size: tuple[int, int] = (320, 180),
              cuts: list[int] | None = None, gop: int = 30, codec: str = "libx264", rotation: int = 0,
              vfr: bool = False, audio: bool = False, noise: float = 0.0, motion: str = "pan",
              seed: int = 0, crf: int = 23, bframes: bool = True,
              # extensions
              looks: list[int] | None = None, start_time: float = 0.0, sar: tuple[int, int] | None = None,
              preset: str = "veryfast", scenecut: bool = True, bitrate: int | None = None,
              faststart: bool = False, timecode: str | None = None, profile: str | None = None,
              bit_depth: int = 8, flashes: tuple[int, ...] = (), fade_in: int = 0,
              fade_out: int = 0) -> ClipTruth:
    """Encode a synthetic clip to ``path`` and return the truth about it.

    ``cuts``: frame indices where a new shot starts (default: two cuts at 1/3 and 2/3).
    ``looks``: look index per shot (default 0, 1, 2, ...); repeat a look for a cut-and-back.
    ``sar``: sample aspect ratio (e.g. (4, 3) for anamorphic), written into the stream.
    ``scenecut=False`` stops x264/x265 from inserting keyframes at cuts, like camera encoders
    with a fixed GOP.
    ``faststart`` puts the MP4/MOV index first (as web uploads do), so a truncated copy still
    opens.
    ``bitrate`` (bits/s) switches x264/x265 from constant quality (``crf``) to a bit rate with a
    VBV buffer, as cameras and phones record (e.g. 17_000_000 for 1080p30).
    ``motion``: one of :data:`MOTIONS` (see :func:`_camera_path`).
    ``profile``: x264's ``baseline`` (no B-frames, as many phone hardware encoders), ``main`` or
    ``high``; x265's ``main``/``main10``. ``bit_depth=10`` encodes yuv420p10le (HEVC 10-bit, as
    recent phones record HDR).
    ``flashes``: frames lit by a camera flash (each one frame; not cuts). ``fade_in`` /
    ``fade_out``: frames of fade from / to black at the clip's start / end (not cuts either).
    ``timecode`` (e.g. ``"01:00:00:00"``) tags the video stream with its first frame's timecode,
    as a camera does: FFmpeg writes a ``tmcd`` track for it in MP4/MOV, a tag in Matroska.
    The file is written to a temporary name in the same directory and moved into place.
    """
    path = Path(path)
    ext = path.suffix.lower()
    try:
        codec_name = _CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; use one of {sorted(_CODECS)}") from None
    if ext == ".webm" and codec_name != "libvpx-vp9":
        raise ValueError("a .webm file needs codec='vp9'")
    width, height = int(size[0]), int(size[1])
    if width % 2 or height % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90, got {rotation}")
    rate = _rate(fps)
    n = max(1, int(round(duration * float(rate))))
    if cuts is None:
        cuts = [n // 3, (2 * n) // 3] if n >= 3 else []
    cuts = [int(c) for c in cuts]
    shot_of_frame, shot_looks = _shot_plan(n, cuts, looks)
    rng = np.random.default_rng(seed)
    ticks, tb = _frame_pts(n, rate, vfr, start_time, ext, rng)
    offsets, zoom = _camera_path(shot_of_frame, (width, height), rng, motion)
    gains = _fade_gains(n, fade_in, fade_out)
    flash_set = {int(f) for f in flashes}

    grain = _Grain((width, height), noise * 255.0, rng) if noise > 0 else None

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{ext}")
    texture_cache: dict[int, np.ndarray] = {}
    try:
        opts = {"movflags": "+faststart"} if faststart and ext in (".mp4", ".mov", ".m4v") else {}
        with av.open(str(tmp), "w", format=_muxer_for(ext), options=opts) as out:
            stream = _open_video_stream(out, codec_name, rate, tb, width, height, gop, crf, bframes,
                                        preset, scenecut, Fraction(*sar) if sar else None, bitrate,
                                        profile, bit_depth)
            if rotation:
                stream.set_display_rotation(-rotation)
            if timecode:
                stream.metadata["timecode"] = timecode
            astream = _add_audio_stream(out, ext) if audio else None
            for i in range(n):
                look = shot_looks[shot_of_frame[i]]
                tex = texture_cache.get(look)
                if tex is None:
                    # A 2x2 tiling lets every panned window be a plain slice (a view, no copy).
                    tex = np.tile(make_look(look, seed, (width, height)), (2, 2, 1))
                    texture_cache = {look: tex, **{k: v for k, v in list(texture_cache.items())[-3:]}}
                img = _view(tex, int(offsets[i, 0]), int(offsets[i, 1]), float(zoom[i]), (width, height))
                if gains[i] != 1.0 or i in flash_set:
                    img = _light(img, float(gains[i]), i in flash_set)
                if grain is not None:
                    img = grain(img)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = ticks[i]
                frame.time_base = tb
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
            if astream is not None:
                _encode_audio(out, astream, n / float(rate))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    times = [t * float(tb) for t in ticks]
    log.debug("wrote %s: %d frames, cuts %s", path, n, cuts)
    return ClipTruth(path=str(path), fps=float(rate), n_frames=n, width=width, height=height,
                     cut_frames=sorted(cuts), frame_times=times, rotation=rotation % 360,
                     codec=codec_name, gop=gop, has_audio=audio, start_time=times[0],
                     shot_looks=shot_looks, flashes=sorted(flash_set))


def _muxer_for(ext: str) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4"}.get(ext)


def make_still(path, *, size: tuple[int, int] = (320, 180), seed: int = 0) -> str:
    """Write a still image (.jpg/.png/.webp, by extension): the "not a video" bad input."""
    from PIL import Image

    path = Path(path)
    img = make_look(0, seed, size)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    Image.fromarray(img).save(tmp, format={".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG",
                                           ".webp": "WEBP"}.get(path.suffix.lower(), "PNG"))
    os.replace(tmp, path)
    return str(path)
