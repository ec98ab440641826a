"""A corpus of broken media and fuzzed manifests, generated (never downloaded), dropped into a live
daemon. The daemon never dies; every input ends in a defined state (analysed, failed or
quarantined) with a message for people; nothing is written outside the output root."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from montaged.store import Store
from tests.helpers import DaemonProcess, wait_until
from tests.reliability.conftest import SOAK, leftovers, record, rel_config

pytestmark = pytest.mark.slow

FINAL = ("analyzed", "failed", "quarantined")


# ------------------------------------------------------------------------------------------------
# The media corpus


def iso_boxes(data: bytes) -> dict[bytes, int]:
    """Offsets of the top-level boxes of an ISO media file (mp4/m4a), by type."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.setdefault(kind, pos)
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        if size < 8:
            break
        pos += size
    return out


def huge_variants(name: str, data: bytes) -> dict[str, bytes]:
    """The same file with a size field in its header claiming far more than is there."""
    out = {}
    if name.endswith((".mp4", ".m4a")):
        for box, pos in iso_boxes(data).items():
            if box in (b"moov", b"mdat"):
                out[f"huge-{box.decode()}"] = data[:pos] + struct.pack(">I", 0xFFFFFFF0) + data[pos + 4:]
        avc = data.find(b"avc1")
        if avc > 4:  # the sample entry's width and height (2 bytes each, 28 bytes after the type)
            dims = avc - 4 + 32
            out["huge-dims"] = data[:dims] + struct.pack(">HH", 0xFFFF, 0xFFFF) + data[dims + 4:]
    elif name.endswith(".wav"):
        patched = bytearray(data)
        patched[4:8] = struct.pack("<I", 0xFFFFFFF0)
        chunk = data.find(b"data")
        if chunk > 0:
            patched[chunk + 4:chunk + 8] = struct.pack("<I", 0xFFFFFFF0)
        out["huge-riff"] = bytes(patched)
        fmt = data.find(b"fmt ")
        if fmt > 0:  # absurd channel count and sample rate
            patched = bytearray(data)
            patched[fmt + 10:fmt + 12] = struct.pack("<H", 0xFFFF)
            patched[fmt + 12:fmt + 16] = struct.pack("<I", 0xFFFFFFF0)
            out["huge-format"] = bytes(patched)
    return out


def corpus(bases: list[Path], rng: random.Random) -> dict[str, bytes]:
    """{file name: bytes} of broken variants of ``bases``."""
    out: dict[str, bytes] = {}
    other_ext = {".mp4": ".wav", ".mkv": ".mp3", ".wav": ".mp4", ".m4a": ".mkv"}
    for base in bases:
        data = base.read_bytes()
        stem, ext = base.stem, base.suffix
        for k, offset in enumerate(sorted(rng.sample(range(1, len(data)), 10))):
            out[f"{stem}-trunc{k}-{offset}{ext}"] = data[:offset]
        for k, flips in enumerate((1, 16, 256)):
            b = bytearray(data)
            for _ in range(flips):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            out[f"{stem}-flip{flips}{ext}"] = bytes(b)
        # Bit flips in the header only (where parsers trust what they read).
        b = bytearray(data)
        for _ in range(8):
            i = rng.randrange(min(256, len(b)))
            b[i] ^= 1 << rng.randrange(8)
        out[f"{stem}-headflip{ext}"] = bytes(b)
        out[f"{stem}-swapped{other_ext[ext]}"] = data
        for label, patched in huge_variants(base.name, data).items():
            out[f"{stem}-{label}{ext}"] = patched
    out["zero.mp4"] = b""
    out["zero.wav"] = b""
    out["random.mp4"] = rng.randbytes(40_000)
    out["random.m4a"] = rng.randbytes(10_000)
    out["text.mkv"] = b"this is not a video\n" * 100
    return out


def test_broken_media_corpus_every_input_ends_in_a_defined_state(rlayout, small_media, tmp_path):
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    rng = random.Random(int(os.environ.get("MONTAGED_FUZZ_SEED", 1234)))
    src = tmp_path / "bases"
    src.mkdir()
    bases = [small_media["clips"][0], small_media["music"]]
    bases.append(Path(make_clip(str(src / "mk.mkv"), duration=1.0, fps=15, size=(160, 90), cuts=[7], gop=15, seed=5).path))
    bases.append(Path(make_track(str(src / "tr.m4a"), bpm=100, duration=3.0, seed=2, channels=1, sample_rate=22050).path))
    files = corpus(bases, rng)
    root, out = rlayout["root"], rlayout["out"]
    cfg = rel_config(rlayout["config"], watch=[root], output=out, state=rlayout["state"],
                     workers__max_attempts=2, workers__job_timeout=30, workers__memory_limit_mb=2048)
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    with DaemonProcess(cfg, rlayout["state"]) as d:
        drop = root / "corpus"
        drop.mkdir()
        for name, data in files.items():
            (drop / name).write_bytes(data)

        def settled():
            with Store(rlayout["state"], readonly=True) as s:
                rows = s.query("SELECT path, state, error FROM files WHERE state != 'gone'")
            return rows if len(rows) == len(files) and all(r["state"] in FINAL for r in rows) else None

        rows = wait_until(settled, 240, interval=0.5, what=f"{len(files)} broken inputs in a final state")
        assert d.proc.poll() is None, d.output()
        jobs = {Path(j["path"]).name: j for j in d.jobs() if j["kind"] == "analyze"}
    states = {}
    for r in rows:
        name = Path(r["path"]).name
        states[r["state"]] = states.get(r["state"], 0) + 1
        if r["state"] != "analyzed":
            message = r["error"] or ""
            assert message.strip(), f"{name}: {r['state']} without a message"
            assert "Traceback" not in message and len(message) < 400, f"{name}: not a message for people: {message!r}"
    internal = sorted(f"{n}: {j['error']}" for n, j in jobs.items() if j["error"] and j["error"].startswith("internal error"))
    # Nothing written anywhere but the state directory (no output: no manifest was dropped).
    assert sorted(p.name for p in drop.iterdir()) == sorted(files)
    assert not out.exists() or not any(out.iterdir())
    assert {p.name for p in tmp_path.iterdir()} - {"daemon-state.stderr", "state"} == set(outside_before)
    record("bad inputs: media files tried", f"{len(files)} ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}), daemon crashes 0")
    record("bad inputs: internal errors (analysis bugs, retried then quarantined)", len(internal))
    assert not internal, "analysis raised unexpected errors on broken input:\n" + "\n".join(internal)


# ------------------------------------------------------------------------------------------------
# Fuzzed manifests


@pytest.fixture(scope="module")
def live(tmp_path_factory, small_media):
    """One daemon for every manifest example, with an analysed clip pair and music to copy."""
    base = tmp_path_factory.mktemp("manifests")
    root, out, state = base / "ingest", base / "previews", base / "state"
    root.mkdir()
    outside = base / "outside"
    outside.mkdir()
    shutil.copy(small_media["music"], outside / "secret.wav")
    shutil.copy(small_media["clips"][2], outside / "secret.mp4")
    cfg = rel_config(base / "montaged.toml", watch=[root], output=out, state=state, workers__max_attempts=2)
    d = DaemonProcess(cfg, state).start()
    seed = root / "seed"
    seed.mkdir()
    for c in small_media["clips"][:2]:
        shutil.copy(c, seed / c.name)
    shutil.copy(small_media["music"], seed / "music.wav")
    wait_until(lambda: d.status()["files"]["analyzed"] == 3, 90, what="seed files analysed")
    counter = {"n": 0, "tried": 0, "states": {}}
    yield {"d": d, "root": root, "out": out, "base": base, "outside": outside, "seed": seed, "counter": counter}
    d.stop()
    record("bad inputs: manifests tried", f"{counter['tried']} ({', '.join(f'{n} {s}' for s, n in sorted(counter['states'].items()))}), daemon crashes 0")


def tree(folder: Path) -> set[str]:
    """Every name under ``folder``, not following symlinked folders."""
    out = set()
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.add(str((Path(top) / name).relative_to(folder)))
    return out


def drop_manifests(live, manifests: list[bytes], links: bool = False) -> None:
    """Drop each manifest into a new folder holding the analysed clips and music (and, with
    ``links``, symlinks to files outside the watch root), wait until every folder is ready or
    failed, and check what the daemon did."""
    d, root, out, base = live["d"], live["root"], live["out"], live["base"]
    outside_before = tree(live["outside"])
    others_before = {p.name for p in base.iterdir()}
    folders = []
    for text in manifests:
        live["counter"]["n"] += 1
        folder = root / f"m{live['counter']['n']:04d}"
        folder.mkdir()
        for p in live["seed"].iterdir():
            shutil.copy(p, folder / p.name)
        if links:
            os.symlink(live["outside"] / "secret.wav", folder / "escape.wav")
            os.symlink(live["outside"] / "secret.mp4", folder / "escape.mp4")
            os.symlink(live["outside"], folder / "escape-dir")
        (folder / "montage.toml").write_bytes(text)
        folders.append(folder)
    want = {str(f) for f in folders}

    def settled():
        docs = {f["path"]: f for f in d.status()["folders"] if f["path"] in want}
        # Settled: every file of the folder hashed (a late hash re-opens a failed folder) and the
        # folder ready or failed.
        if len(docs) == len(want) and all(f["state"] in ("ready", "failed") and f["analyzed"] == 3 for f in docs.values()):
            return docs
        return None

    docs = wait_until(settled, 180, interval=0.3, what=f"{len(want)} manifests handled")
    assert d.proc.poll() is None, d.output()
    for folder, text in zip(folders, manifests):
        doc = docs[str(folder)]
        live["counter"]["tried"] += 1
        live["counter"]["states"][doc["state"]] = live["counter"]["states"].get(doc["state"], 0) + 1
        if doc["state"] == "failed":
            assert doc["error"] and doc["error"].strip(), (text, doc)
            assert "Traceback" not in doc["error"], doc["error"]
        else:
            preview = out / folder.name / "preview.mp4"
            assert doc["preview"] == str(preview) and preview.exists(), doc
            edl = json.loads((out / folder.name / "preview.edl.json").read_text())
            # The sources are the folder's own files, never what a symlink points at outside.
            assert all(not c["source"].startswith(("/", "..")) and "escape" not in c["source"] for c in edl["cuts"]), edl["cuts"]
            assert "escape" not in edl["music"]["path"] and not edl["music"]["path"].startswith(("/", "..")), edl["music"]
        # Only the files we put there; nothing beside them, nothing outside.
        assert tree(folder) == {"clip0.mp4", "clip1.mp4", "music.wav", "montage.toml"} | ({"escape.wav", "escape.mp4", "escape-dir"} if links else set()), tree(folder)
    assert tree(live["outside"]) == outside_before
    assert {p.name for p in base.iterdir()} - {"previews"} == others_before - {"previews"}
    for p in out.iterdir() if out.exists() else []:
        assert p.is_dir() and p.name.startswith("m"), p
    assert not leftovers(out), leftovers(out)


# (manifest, expected state). Paths that leave the folder in any way fail the folder.
NASTY = [
    (b"", "ready"),
    (b'title = "' + "\u00e9\u4e2d\U0001f3ac".encode() * 50 + b'"\n', "ready"),
    (b'title = "\\u202e\\u0007tab\\there"\nduration = 3\nstyle = "calm"\naspect = "9:16"\n', "ready"),
    (b'clips = ["clip*.mp4", "clip*.mp4"]\nexclude = ["clip1.mp4"]\nseed = 9223372036854775807\n', "ready"),
    (b'music = "../seed/music.wav"\n', "failed"),
    b'music = "/etc/passwd"\n',
    b'music = "escape.wav"\n',
    b'clips = ["escape.mp4"]\n',
    b'clips = ["../**/*.mp4"]\nmusic = "music.wav"\n',
    b'clips = ["/**/*.mp4"]\n',
    b'clips = ["**/../../outside/*.mp4"]\n',
    b'expect = [{ path = "../../outside/secret.mp4", size = 1 }]\n',
    b'exclude = ["../../*"]\ntitle = "x"\n',
    b'title = "' + "\u00e9\u4e2d\U0001f3ac".encode() * 50 + b'"\n',
    b'title = "a\\u0000b"\nduration = 3\n',
    b'title = "' + b"x" * 70_000 + b'"\n',
    b"title = \"nul\x00byte\"\n",
    b'duration = 1e308\n',
    b'duration = -3\nseed = -1\n',
    b'seed = 99999999999999999999999\n',
    b'[music]\npath = "music.wav"\n',
    b'clips = "not a list"\n',
    b'"\\u202e" = 1\n',
    b"\xff\xfe\x00t\x00i\x00",
    b'title = """\n' + b"line\n" * 2000 + b'"""\n',
]


LINKED = [
    b'clips = ["escape-dir/*.mp4"]\nmusic = "music.wav"\n',
    b'clips = ["clip0.mp4"]\nmusic = "escape-dir/secret.wav"\n',
    b'clips = ["**/*.mp4"]\nmusic = "music.wav"\n',
    b'music = "escape.wav"\n',
    b'clips = ["escape.mp4"]\nmusic = "music.wav"\n',
    b'clips = ["*.mp4"]\nmusic = "music.wav"\n',
    b"",
]


def test_nasty_manifests(live):
    texts = [t if isinstance(t, bytes) else t[0] for t in NASTY]
    drop_manifests(live, texts)
    expected = {f"m{live['counter']['n'] - len(texts) + 1 + i:04d}": t[1] for i, t in enumerate(NASTY) if isinstance(t, tuple)}
    states = {Path(f["path"]).name: f["state"] for f in live["d"].status()["folders"]}
    assert {k: states[k] for k in expected} == expected


def test_manifests_cannot_follow_symlinks_out_of_the_folder(live):
    drop_manifests(live, LINKED, links=True)
    docs = {Path(f["path"]).name: f for f in live["d"].status()["folders"]}
    for i in range(len(LINKED)):
        doc = docs[f"m{live['counter']['n'] - len(LINKED) + 1 + i:04d}"]
        # Refused as leaving the folder, or the link not followed at all (nothing matches).
        assert doc["state"] == "failed" and ("outside the folder" in doc["error"] or "no video file matches" in doc["error"]), doc


toml_scalars = st.one_of(
    st.text(max_size=40), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.booleans(), st.sampled_from(["../music.wav", "/etc/passwd", "escape.wav", "music.wav", "clip0.mp4", "**/*.mp4",
                                    "../../outside/secret.mp4", "a/../../b", "\u0000", "\u202e" * 3, "x" * 5000]),
)
toml_values = st.one_of(toml_scalars, st.lists(toml_scalars, max_size=4),
                        st.lists(st.dictionaries(st.sampled_from(["path", "size", "x"]), toml_scalars, max_size=3), max_size=3))
keys = st.one_of(st.sampled_from(["title", "music", "duration", "style", "aspect", "clips", "exclude", "seed", "expect"]), st.text(max_size=12))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


manifest_docs = st.one_of(
    st.dictionaries(keys, toml_values, max_size=6).map(lambda d: "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in d.items()).encode("utf-8", "surrogatepass")),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


@settings(max_examples=60 if SOAK else 5, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(batch=st.lists(manifest_docs, min_size=8, max_size=8))
def test_fuzzed_manifests(live, batch):
    drop_manifests(live, batch)
