"""Manifest parsing, validation and resolution against real folders in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from montaged.errors import ManifestError
from montaged.montage.manifest import Expect, Manifest, glob_regex, load_manifest, parse_manifest, resolve_inputs


def write(folder: Path, rel: str, data: bytes = b"x") -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "hike"
    f.mkdir()
    write(f, "clip01.mp4")
    write(f, "clip02.MOV")
    write(f, "b-roll/clip03.mkv")
    write(f, "rejects/bad.mp4")
    write(f, ".hidden.mp4")
    write(f, ".cache/x.mp4")
    write(f, "notes.txt")
    write(f, "track.m4a")
    return f


def manifest_error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    return str(info.value)


# --- the file itself ---------------------------------------------------------------------------


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "montage.toml"
    path.write_text("")
    assert load_manifest(path) == Manifest()


def test_every_key(tmp_path):
    path = tmp_path / "montage.toml"
    path.write_text(
        'title = "Saturday hike"\nmusic = "track.m4a"\nduration = 45\nstyle = "calm"\naspect = "9:16"\n'
        'clips = ["**/*.mp4"]\nexclude = ["rejects/**"]\nseed = 7\n'
        'expect = [{ path = "clip07.mp4", size = 52428800 }, "clip08.mp4"]\n'
    )
    m = load_manifest(path)
    assert m == Manifest(title="Saturday hike", music="track.m4a", duration=45.0, style="calm", aspect="9:16",
                         clips=("**/*.mp4",), exclude=("rejects/**",), seed=7,
                         expect=(Expect("clip07.mp4", 52428800), Expect("clip08.mp4", None)))
    assert isinstance(m.duration, float)


@pytest.mark.parametrize(
    "text, key",
    [
        ('colour = "red"', "colour: unknown key"),
        ("duration = \"long\"", "duration: expected a number"),
        ("duration = true", "duration: expected a number"),
        ("duration = 0", "duration: 0 is out of range"),
        ("duration = -5", "duration: -5 is out of range"),
        ("duration = 1e9", "duration: 1000000000.0 is out of range"),
        ("duration = nan", "duration: nan is out of range"),
        ("duration = inf", "duration: inf is out of range"),
        ('style = "wild"', 'style: "wild" is not one of calm, dynamic, energetic'),
        ("style = 3", "style: expected a string"),
        ('aspect = "4:3"', 'aspect: "4:3" is not one of'),
        ('seed = "one"', "seed: expected an integer"),
        ("seed = -1", "seed: -1 is out of range"),
        ("seed = 1.5", "seed: expected an integer"),
        ("title = 5", "title: expected a string"),
        (f'title = "{"t" * 500}"', "title: longer than 200"),
        ('title = "a\\u0000b"', "title: contains a NUL"),
        ('music = "../track.m4a"', "music: \"../track.m4a\" leaves the folder"),
        ('music = "/etc/track.m4a"', "music: \"/etc/track.m4a\" is an absolute path"),
        ('music = "~/track.m4a"', "is an absolute path"),
        ('music = "a\\u0000.m4a"', "music: \"a\\x00.m4a\" contains a control character"),
        ('music = "notes.txt"', "music: \"notes.txt\" is not an audio file name"),
        ('music = ""', "music: must not be empty"),
        ("music = 3", "music: expected a string"),
        (f'music = "{"a" * 5000}.m4a"', "music: path is longer than"),
        ('clips = "*.mp4"', "clips: expected a list of globs"),
        ("clips = []", "clips: the list is empty"),
        ('clips = ["../other/*.mp4"]', "clips[0]: \"../other/*.mp4\" leaves the folder"),
        ('clips = ["ok.mp4", "/abs/*.mp4"]', "clips[1]: \"/abs/*.mp4\" is an absolute path"),
        ('clips = ["a/../../b.mp4"]', "clips[0]"),
        ("clips = [1]", "clips[0]: expected a string"),
        ('exclude = ["../x"]', "exclude[0]"),
        ('expect = "a.mp4"', "expect: expected a list"),
        ('expect = [{ path = "a.mp4", bytes = 3 }]', "expect[0].bytes: unknown key"),
        ("expect = [{ size = 3 }]", "expect[0].path: missing"),
        ('expect = [{ path = "a.mp4", size = "big" }]', "expect[0].size: expected an integer"),
        ('expect = [{ path = "a.mp4", size = -1 }]', "expect[0].size: -1 is out of range"),
        ('expect = [{ path = "../a.mp4" }]', "expect[0].path: \"../a.mp4\" leaves the folder"),
        ("expect = [3]", "expect[0]: expected a table"),
    ],
)
def test_bad_values_name_the_key(text, key):
    message = manifest_error(text)
    assert message.startswith("montage.toml: ")
    assert key in message


def test_all_problems_are_reported_at_once():
    message = manifest_error('style = "wild"\nseed = -2\nfoo = 1')
    assert "style:" in message and "seed:" in message and "foo:" in message


def test_not_toml(tmp_path):
    path = tmp_path / "montage.toml"
    path.write_text("this is not = = toml [")
    with pytest.raises(ManifestError, match="montage.toml: not valid TOML"):
        load_manifest(path)


def test_nul_bytes_binary_and_huge_files(tmp_path):
    path = tmp_path / "montage.toml"
    path.write_bytes(b'title = "a"\x00\n')
    with pytest.raises(ManifestError, match="NUL"):
        load_manifest(path)
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ManifestError):
        load_manifest(path)
    path.write_bytes(b'title = "\xc3\x28"')
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(path)
    path.write_bytes(b'title = "' + b"a" * 200_000 + b'"')
    with pytest.raises(ManifestError, match="larger than"):
        load_manifest(path)


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ManifestError, match="cannot be read"):
        load_manifest(tmp_path / "montage.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ManifestError, match="dir.toml: cannot be read"):
        load_manifest(tmp_path / "dir.toml")


def test_message_uses_the_manifest_file_name(tmp_path):
    path = tmp_path / "edit.toml"
    path.write_text("bogus = 1")
    with pytest.raises(ManifestError, match="^edit.toml: bogus: unknown key"):
        load_manifest(path)


# --- resolving against the folder ---------------------------------------------------------------


def test_defaults_pick_every_video_and_the_only_audio(folder):
    inputs = resolve_inputs(folder, Manifest())
    rel = [p.relative_to(folder).as_posix() for p in inputs.clips]
    assert rel == ["b-roll/clip03.mkv", "clip01.mp4", "clip02.MOV", "rejects/bad.mp4"]
    assert inputs.music == folder / "track.m4a"
    assert inputs.ready and inputs.missing == ()


def test_globs_and_exclude(folder):
    inputs = resolve_inputs(folder, Manifest(clips=("**/*.mp4", "b-roll/*"), exclude=("rejects/**",)))
    rel = [p.relative_to(folder).as_posix() for p in inputs.clips]
    assert rel == ["b-roll/clip03.mkv", "clip01.mp4"]
    only_top = resolve_inputs(folder, Manifest(clips=("*.mp4",)))
    assert [p.name for p in only_top.clips] == ["clip01.mp4"]


def test_music_and_manifest_are_never_clips(folder):
    write(folder, "montage.toml", b"")
    inputs = resolve_inputs(folder, Manifest(clips=("*", "**/*")))
    names = {p.name for p in inputs.clips}
    assert "track.m4a" not in names and "montage.toml" not in names and "notes.txt" not in names
    assert inputs.music == folder / "track.m4a"


def test_named_music_and_its_errors(folder):
    assert resolve_inputs(folder, Manifest(music="track.m4a")).music == folder / "track.m4a"
    with pytest.raises(ManifestError, match='^montage.toml: music: "x.m4a" does not exist in the folder'):
        resolve_inputs(folder, Manifest(music="x.m4a"))
    write(folder, "other.mp3")
    with pytest.raises(ManifestError, match=r"music: 2 audio files in the folder"):
        resolve_inputs(folder, Manifest())
    assert resolve_inputs(folder, Manifest(music="other.mp3")).music == folder / "other.mp3"


def test_no_music_and_no_clips(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    write(folder, "clip.mp4")
    with pytest.raises(ManifestError, match="music: no audio file in the folder"):
        resolve_inputs(folder, Manifest())
    (folder / "clip.mp4").unlink()
    write(folder, "song.wav")
    with pytest.raises(ManifestError, match="clips: no video file in the folder"):
        resolve_inputs(folder, Manifest())
    with pytest.raises(ManifestError, match="clips: no video file matches"):
        resolve_inputs(folder, Manifest(clips=("*.mkv",)))
    with pytest.raises(ManifestError, match='clips\\[0\\]: "gone.mp4" does not exist'):
        resolve_inputs(folder, Manifest(clips=("gone.mp4",)))


def test_symlinks_pointing_out_are_errors(folder, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    write(outside, "stolen.mp4")
    write(outside, "stolen.m4a")
    write(outside, "inner/deep.mp4")
    os.symlink(outside / "stolen.mp4", folder / "link.mp4")
    with pytest.raises(ManifestError, match='clips: "link.mp4" is a link that points outside the folder'):
        resolve_inputs(folder, Manifest())
    (folder / "link.mp4").unlink()
    os.symlink(outside / "stolen.m4a", folder / "song.m4a")
    with pytest.raises(ManifestError, match='music: "song.m4a" points outside the folder'):
        resolve_inputs(folder, Manifest(music="song.m4a"))
    (folder / "song.m4a").unlink()
    # A symlinked folder is not entered, so its files are simply not found.
    os.symlink(outside / "inner", folder / "inner")
    inputs = resolve_inputs(folder, Manifest())
    assert all("deep" not in p.name for p in inputs.clips)
    with pytest.raises(ManifestError, match="does not exist|outside"):
        resolve_inputs(folder, Manifest(clips=("inner/deep.mp4",)))
    # A link that stays inside the folder is fine.
    os.symlink(folder / "clip01.mp4", folder / "again.mp4")
    assert folder / "again.mp4" in resolve_inputs(folder, Manifest()).clips


def test_expect_keeps_the_folder_waiting(folder):
    m = Manifest(expect=(Expect("clip07.mp4", 100), Expect("clip01.mp4", 1), Expect("late.m4a")),
                 music="late.m4a", clips=("clip01.mp4", "clip07.mp4"))
    inputs = resolve_inputs(folder, m)
    assert not inputs.ready
    assert inputs.missing == ("clip07.mp4: not present yet", "late.m4a: not present yet")
    assert inputs.music is None
    write(folder, "clip07.mp4", b"x" * 10)
    write(folder, "late.m4a")
    inputs = resolve_inputs(folder, m)
    assert inputs.missing == ("clip07.mp4: 10 of 100 bytes so far",)
    write(folder, "clip07.mp4", b"x" * 100)
    inputs = resolve_inputs(folder, m)
    assert inputs.ready and inputs.music == folder / "late.m4a"
    assert [p.name for p in inputs.clips] == ["clip01.mp4", "clip07.mp4"]


def test_missing_folder(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        resolve_inputs(tmp_path / "nope", Manifest())


def test_glob_regex():
    assert glob_regex("**/*.mp4").match("a/b/c.mp4")
    assert glob_regex("**/*.mp4").match("c.mp4")
    assert not glob_regex("*.mp4").match("a/c.mp4")
    assert glob_regex("clip0[1-3].mp4").match("clip02.mp4")
    assert not glob_regex("clip0[!1-3].mp4").match("clip02.mp4")
    assert glob_regex("rejects/**").match("rejects/x/y.mp4")
    assert glob_regex("a(b)+.mp4").match("a(b)+.mp4")
    assert glob_regex("x[.mp4").match("x[.mp4")


# --- fuzzing: whatever the manifest says, only ManifestError, never outside the folder ------------

_keys = st.sampled_from(["title", "music", "duration", "style", "aspect", "clips", "exclude", "seed",
                         "expect", "bogus", "müsic", "a\x00b"])
_nasty_paths = st.sampled_from(["../x.mp4", "/etc/passwd", "..", "../../secret/*.mp4", "a/../../b.m4a",
                                "**/../*.mp4", "~/x.m4a", "C:/x.mp4", "link/*", "out.m4a", "out.mp4",
                                "\\..\\x.mp4", "clip01.mp4", "track.m4a", "*", "**", "[", "a\x00b.mp4",
                                "ünïcødé.mp4", ""])
_scalars = st.one_of(st.text(max_size=40), _nasty_paths, st.integers(), st.floats(allow_nan=True),
                     st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.sampled_from(["path", "size", "x"]),
                                                                          inner, max_size=3)),
                       max_leaves=8)


def _toml_value(v) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "in"
    folder.mkdir()
    outside = root / "secret"
    outside.mkdir()
    write(outside, "out.mp4")
    write(outside, "out.m4a")
    write(folder, "clip01.mp4")
    write(folder, "track.m4a")
    os.symlink(outside, folder / "link")
    os.symlink(outside / "out.mp4", folder / "out.mp4")
    os.symlink(outside / "out.m4a", folder / "out.m4a")
    return folder


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(_keys, _values, max_size=6))
def test_fuzz_structured(fuzz_folder, entries):
    text = "\n".join(f'"{k.encode("unicode_escape").decode()}" = {_toml_value(v)}' for k, v in entries.items())
    _check_never_escapes(fuzz_folder, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzz_raw_text(fuzz_folder, text):
    _check_never_escapes(fuzz_folder, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_fuzz_raw_bytes(fuzz_folder, data):
    path = fuzz_folder.parent / "montage.toml"
    path.write_bytes(data)
    try:
        m = load_manifest(path)
    except ManifestError:
        return
    _check_resolved(fuzz_folder, m)


def _check_never_escapes(folder: Path, text: str) -> None:
    try:
        m = parse_manifest(text)
    except ManifestError as exc:
        assert str(exc).startswith("montage.toml: ")
        return
    _check_resolved(folder, m)


def _check_resolved(folder: Path, m: Manifest) -> None:
    try:
        inputs = resolve_inputs(folder, m)
    except ManifestError:
        return
    real = Path(os.path.realpath(folder))
    for p in [*inputs.clips, *([inputs.music] if inputs.music else [])]:
        assert Path(os.path.realpath(p)).is_relative_to(real), p
    assert inputs.music not in inputs.clips
