"""Spectral front end of the music analysis: one STFT -> onset envelopes and chroma.

Pure numpy/scipy; see :mod:`montaged.analysis.audio` for the whole pipeline.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view


@functools.lru_cache(maxsize=8)
def _mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters, [n_fft//2+1, n_mels], unit peak (flux is summed, not compared)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    # Widen each triangle to at least two FFT bins so that low bands are never empty.
    width = np.maximum(np.diff(freqs[:2])[0] * 1.5, 1e-9)
    up = (f - lo) / np.maximum(mid - lo, width)
    down = (hi - f) / np.maximum(hi - mid, width)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _chroma_filters(sr: int, n_fft: int) -> np.ndarray:
    """FFT bin -> pitch class (C=0) map for 55 Hz..2 kHz, [bins up to 2 kHz, 12]."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    freqs = freqs[: int(np.searchsorted(freqs, 2000.0, side="right"))]
    out = np.zeros((len(freqs), 12), np.float32)
    ok = (freqs >= 55.0) & (freqs <= 2000.0)
    pc = np.round(12 * np.log2(freqs[ok] / 440.0) + 9).astype(int) % 12
    out[np.nonzero(ok)[0], pc] = 1.0
    return out


def frame_params(sr: int) -> tuple[int, int]:
    """(n_fft, hop) giving a ~46 ms window and ~23 ms hop at any sample rate."""
    n_fft = int(2 ** round(math.log2(max(sr, 1000) * 1024 / 22050)))
    return n_fft, n_fft // 2


# Kick, bass, snare body, chords and melody are below this; hi-hats and cymbals are not (even
# folded down by the decode's crude low-pass, they reach these bands 20 dB down). The metrical
# level is judged on this band: the quarter note is where these instruments play.
BODY_HZ = 1200.0

# Samples per block of the STFT (frames x window): the windowed frames and their spectra
# (~0.5 MB each) stay in cache from the window multiply to the mel bands, instead of 15-30 MB
# arrays for a 3-minute track going through memory four times.
_STFT_BLOCK_SAMPLES = 1 << 17


def spectral_features(y: np.ndarray, sr: int) -> dict[str, np.ndarray | float]:
    """Onset envelopes and chroma from one STFT.

    Returns ``onset`` (all bands), ``low_onset`` (below 150 Hz) and ``body_onset`` (below
    :data:`BODY_HZ`) as positive log-mel flux per frame, ``chroma`` [frames, 12], and ``fps``
    (frames per second). Frame ``i`` is centred at
    ``i * hop / sr`` seconds (the signal is zero-padded by half a window at both ends).
    """
    n_fft, hop = frame_params(sr)
    y = np.asarray(y, dtype=np.float32)
    pad = n_fft // 2
    n_frames = len(y) // hop + 1
    n_mels = 40
    fmax = min(sr / 2.0, 11025.0)
    mel_fb = _mel_filters(sr, n_fft, n_mels, 30.0, fmax)
    cf = _chroma_filters(sr, n_fft)
    n_low = cf.shape[0]
    window = _window(n_fft)
    mel = np.empty((n_frames, n_mels), np.float32)
    chroma = np.empty((n_frames, 12), np.float32)
    block = max(1, _STFT_BLOCK_SAMPLES // n_fft)
    windowed = np.empty((block, n_fft), np.float32)
    mag = np.empty((block, n_fft // 2 + 1), np.float32)
    for i0 in range(0, n_frames, block):
        i1 = min(i0 + block, n_frames)
        nb = i1 - i0
        # Samples of frames i0..i1-1 in padded coordinates: [i0 * hop, (i1 - 1) * hop + n_fft).
        seg = _padded_slice(y, i0 * hop - pad, (i1 - 1) * hop + n_fft - pad)
        w = windowed[:nb]
        np.multiply(sliding_window_view(seg, n_fft)[::hop], window, out=w)
        spec = scipy.fft.rfft(w, axis=1, workers=1, overwrite_x=True)
        m = np.abs(spec, out=mag[:nb])
        np.matmul(m, mel_fb, out=mel[i0:i1])
        low = m[:, :n_low]
        np.matmul(low * low, cf, out=chroma[i0:i1])
    # Level-independent log compression: ~60 dB of range below the loudest band. log(1 + x)
    # rather than log1p: numpy's log is vectorised for float32, log1p is not (4x slower), and
    # the difference is far below what a flux can resolve.
    mel *= 1000.0 / (float(mel.max()) or 1.0)
    mel += 1.0
    logmel = np.log(mel, out=mel)
    flux = np.diff(logmel, axis=0, prepend=logmel[:1])
    np.maximum(flux, 0.0, out=flux)
    centers = _mel_centers(sr, n_fft, n_mels, 30.0, fmax)
    return {"onset": flux.sum(axis=1), "low_onset": flux[:, centers < 150.0].sum(axis=1),
            "body_onset": flux[:, centers < BODY_HZ].sum(axis=1), "chroma": chroma, "fps": sr / hop}


@functools.lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1].astype(np.float32)


def _padded_slice(y: np.ndarray, a: int, b: int) -> np.ndarray:
    """``y[a:b]`` where indices outside ``y`` read as zeros (a view when they are all inside)."""
    if a >= 0 and b <= len(y):
        return y[a:b]
    out = np.zeros(b - a, np.float32)
    lo, hi = max(a, 0), min(b, len(y))
    if hi > lo:
        out[lo - a : hi - a] = y[lo:hi]
    return out


@functools.lru_cache(maxsize=8)
def _mel_centers(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    m = np.linspace(2595.0 * np.log10(1 + fmin / 700.0), 2595.0 * np.log10(1 + fmax / 700.0), n_mels + 2)
    return (700.0 * (10.0 ** (m / 2595.0) - 1.0))[1:-1]


def normalize_onset(env: np.ndarray, fps: float) -> np.ndarray:
    """Remove the slowly varying part (section loudness) and scale to unit std.

    A loud drop must not make its beats count more than the quiet intro's; the beat tracker
    compares onsets with their surroundings.
    """
    env = np.asarray(env, dtype=np.float32)
    if len(env) == 0:
        return env
    w = max(3, int(round(fps * 1.0)) | 1)
    local = moving_average(env, w)
    # Divide by the local mean too: sections at different loudness give comparable onsets.
    local_scale = moving_average(env, 4 * w + 1)
    out = np.maximum(0.0, env - local) / (local_scale + 1e-3 * (float(local_scale.max()) or 1.0) + 1e-9)
    sd = float(out.std())
    return (out / sd).astype(np.float32) if sd > 0 else out


def moving_average(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average of width ``w`` (odd), same length as ``x``, shrinking at the ends."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return x.astype(np.float32)
    h = w // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.clip(np.arange(n) - h, 0, n)
    hi = np.clip(np.arange(n) + h + 1, 0, n)
    return ((c[hi] - c[lo]) / (hi - lo)).astype(np.float32)
