"""A folder's ``montage.toml``: parse, validate and resolve it to the files it names.

The manifest is written by whoever drops footage into an ingest folder, so everything in it is
untrusted: every key is checked for type and range, every path must stay inside the folder
(lexically *and* after following symlinks), and every problem is reported in one
:class:`~montaged.errors.ManifestError` whose message names the key, e.g.
``montage.toml: music: "x.m4a" does not exist in the folder``.

Two steps, because they need different things:

* :func:`load_manifest` reads and validates the file itself (no other file is looked at);
* :func:`resolve_inputs` turns it into concrete clip and music paths in the folder, and reports
  the ``expect`` entries that have not arrived yet so the daemon can keep the folder ``waiting``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from montaged.errors import ManifestError
from montaged.mediatypes import is_audio, is_video

log = logging.getLogger("montaged.montage.manifest")

STYLES = ("calm", "dynamic", "energetic")
ASPECTS = ("auto", "16:9", "9:16", "1:1")
KEYS = ("title", "music", "duration", "style", "aspect", "clips", "exclude", "seed", "expect")
EXPECT_KEYS = ("path", "size")

# A manifest is a few lines; anything bigger is a mistake (or an attack) and is not parsed.
MAX_MANIFEST_BYTES = 64 * 1024
MAX_TITLE_CHARS = 200
MAX_PATH_CHARS = 1024
MAX_LIST_ITEMS = 1000
MIN_DURATION = 1.0
MAX_DURATION = 3600.0
MAX_SEED = 2**63 - 1
# Problems shown per error: a manifest with 1000 bad globs should not produce a 100 kB message.
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Expect:
    """A file the folder should contain before the preview is rendered."""

    path: str
    size: int | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``None`` means "not given: use the configured default"."""

    title: str | None = None
    music: str | None = None
    duration: float | None = None
    style: str | None = None
    aspect: str = "auto"
    clips: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    seed: int = 0
    expect: tuple[Expect, ...] = ()
    name: str = "montage.toml"  # the manifest's file name, used in messages


@dataclass(frozen=True)
class Inputs:
    """The concrete files a manifest asks for.

    ``missing`` lists, in plain words, the ``expect`` entries that are not there yet (or not at
    their announced size). While it is non-empty the folder is still filling up: ``music`` may be
    ``None`` and ``clips`` incomplete, and nothing should be rendered.
    """

    clips: list[Path]
    music: Path | None
    expect: tuple[Expect, ...] = ()
    missing: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return not self.missing


def _fail(name: str, problems: list[str]) -> ManifestError:
    shown = problems[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    text = "; ".join(f"{name}: {p}" for p in shown)
    if more:
        text += f"; and {more} more problem(s)"
    return ManifestError(text)


def _show(value: object, limit: int = 60) -> str:
    """A value quoted for a message, shortened and with control characters made visible."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _type_name(value: object) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check_relpath(key: str, value: object, problems: list[str], *, glob: bool) -> str | None:
    """A relative POSIX path (or glob) that cannot name anything outside the folder."""
    if not isinstance(value, str):
        problems.append(f"{key}: expected a string, got {_type_name(value)}")
        return None
    if not value.strip():
        problems.append(f"{key}: must not be empty")
        return None
    if len(value) > MAX_PATH_CHARS:
        problems.append(f"{key}: path is longer than {MAX_PATH_CHARS} characters")
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        problems.append(f"{key}: {_show(value)} contains a control character")
        return None
    if "\\" in value and not glob:
        problems.append(f"{key}: {_show(value)} contains a backslash; use / between folders")
        return None
    if value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        problems.append(f"{key}: {_show(value)} is an absolute path; paths are relative to the folder")
        return None
    parts = PurePosixPath(value).parts
    if ".." in parts or ".." in value.split("/"):
        problems.append(f"{key}: {_show(value)} leaves the folder (..)")
        return None
    return value


def _check_list(key: str, value: object, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list of globs, got {_type_name(value)}")
        return None
    if len(value) > MAX_LIST_ITEMS:
        problems.append(f"{key}: more than {MAX_LIST_ITEMS} entries")
        return None
    out = []
    for i, item in enumerate(value):
        checked = _check_relpath(f"{key}[{i}]", item, problems, glob=True)
        if checked is not None:
            out.append(checked)
    return tuple(out)


def _check_expect(value: object, problems: list[str]) -> tuple[Expect, ...]:
    if not isinstance(value, list):
        problems.append(f"expect: expected a list of {{ path = ..., size = ... }} tables, got {_type_name(value)}")
        return ()
    if len(value) > MAX_LIST_ITEMS:
        problems.append(f"expect: more than {MAX_LIST_ITEMS} entries")
        return ()
    out = []
    for i, item in enumerate(value):
        key = f"expect[{i}]"
        if isinstance(item, str):  # a bare path is a harmless shorthand for { path = ... }
            item = {"path": item}
        if not isinstance(item, dict):
            problems.append(f"{key}: expected a table {{ path = ..., size = ... }}, got {_type_name(item)}")
            continue
        for unknown in sorted(set(item) - set(EXPECT_KEYS)):
            problems.append(f"{key}.{_show(unknown, 40)[1:-1]}: unknown key (allowed: {', '.join(EXPECT_KEYS)})")
        if "path" not in item:
            problems.append(f"{key}.path: missing")
            continue
        path = _check_relpath(f"{key}.path", item["path"], problems, glob=False)
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            problems.append(f"{key}.size: expected an integer number of bytes, got {_type_name(size)}")
            continue
        if size is not None and not 0 <= size <= 2**62:
            problems.append(f"{key}.size: {size} is out of range (0 or more bytes)")
            continue
        if path is not None:
            out.append(Expect(path=path, size=size))
    return tuple(out)


def parse_manifest(text: str, name: str = "montage.toml") -> Manifest:
    """Validate manifest text. Every problem found is reported at once."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{name}: not valid TOML: {exc}") from None
    problems: list[str] = []
    for unknown in sorted(set(data) - set(KEYS)):
        problems.append(f"{_show(unknown, 40)[1:-1]}: unknown key (allowed: {', '.join(KEYS)})")
    values: dict = {"name": name}

    if "title" in data:
        title = data["title"]
        if not isinstance(title, str):
            problems.append(f"title: expected a string, got {_type_name(title)}")
        elif len(title) > MAX_TITLE_CHARS:
            problems.append(f"title: longer than {MAX_TITLE_CHARS} characters")
        elif "\x00" in title:
            problems.append("title: contains a NUL character")
        else:
            values["title"] = title

    if "music" in data:
        music = _check_relpath("music", data["music"], problems, glob=False)
        if music is not None:
            if not is_audio(music):
                problems.append(f"music: {_show(music)} is not an audio file name (.m4a, .mp3, .wav, .flac, ...)")
            else:
                values["music"] = music

    if "duration" in data:
        duration = data["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            problems.append(f"duration: expected a number of seconds, got {_type_name(duration)}")
        elif not (math.isfinite(duration) and MIN_DURATION <= duration <= MAX_DURATION):
            problems.append(f"duration: {duration} is out of range ({MIN_DURATION:g} to {MAX_DURATION:g} seconds)")
        else:
            values["duration"] = float(duration)

    for key, allowed in (("style", STYLES), ("aspect", ASPECTS)):
        if key in data:
            value = data[key]
            if not isinstance(value, str):
                problems.append(f"{key}: expected a string, got {_type_name(value)}")
            elif value not in allowed:
                problems.append(f"{key}: {_show(value)} is not one of {', '.join(allowed)}")
            else:
                values[key] = value

    if "clips" in data:
        clips = _check_list("clips", data["clips"], problems)
        if clips is not None:
            if not clips and not problems:
                problems.append("clips: the list is empty; leave the key out to use every video in the folder")
            values["clips"] = clips
    if "exclude" in data:
        exclude = _check_list("exclude", data["exclude"], problems)
        if exclude is not None:
            values["exclude"] = exclude

    if "seed" in data:
        seed = data["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            problems.append(f"seed: expected an integer, got {_type_name(seed)}")
        elif not 0 <= seed <= MAX_SEED:
            problems.append(f"seed: {seed} is out of range (0 to 2^63-1)")
        else:
            values["seed"] = seed

    if "expect" in data:
        values["expect"] = _check_expect(data["expect"], problems)

    if problems:
        raise _fail(name, problems)
    return Manifest(**values)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest file. Raises :class:`ManifestError` naming the key."""
    path = Path(path)
    name = path.name
    # The manifest is a file of the folder like the others: a link to a file elsewhere would let
    # anyone who can drop files make the daemon read any TOML file it can read, and echo its
    # values (the title) into the outputs. Open what was checked, not the link again.
    real = Path(os.path.realpath(path))
    if path.is_symlink() and not _inside(Path(os.path.realpath(path.parent)), real):
        raise ManifestError(f"{name}: is a link that points outside the folder")
    try:
        with open(real, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{name}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a few lines of TOML")
    if b"\x00" in raw:
        raise ManifestError(f"{name}: contains NUL bytes; it must be a TOML text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    return parse_manifest(text, name)


# --- resolving paths in the folder -----------------------------------------------------------


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a folder-relative glob: ``*`` and ``?`` stay inside one folder, ``**`` spans
    folders (``**/`` also matches no folder at all), ``[abc]`` is a character class.

    Written here rather than with ``fnmatch`` because fnmatch's ``*`` crosses ``/`` and
    Python 3.11's ``PurePath.match`` has no recursive ``**``.
    """
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error:
        # A malformed character class: match the pattern literally instead.
        return re.compile(re.escape(pattern) + r"\Z")


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _walk(folder: Path) -> list[str]:
    """Every regular file (or symlink to one) under ``folder``, as sorted relative POSIX paths.

    Hidden files and folders are skipped (the watcher ignores them too, so they would never be
    analysed), and symlinked folders are not entered.
    """
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_root = Path(root).relative_to(folder).as_posix()
        for fname in files:
            if fname.startswith("."):
                continue
            rel = fname if rel_root == "." else f"{rel_root}/{fname}"
            found.append(rel)
    return sorted(found)


def _inside(folder_real: Path, candidate: Path) -> bool:
    try:
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError):
        return False
    return real == folder_real or folder_real in real.parents


def _present(path: Path, size: int | None) -> str | None:
    """Why an expected file is not ready yet, or None when it is."""
    try:
        st = path.stat()
    except OSError:
        return "not present yet"
    if size is not None and st.st_size < size:
        return f"{st.st_size} of {size} bytes so far"
    return None


def resolve_inputs(folder: str | os.PathLike, manifest: Manifest) -> Inputs:
    """Turn a manifest into the folder's clip and music paths (sorted, deterministic).

    Raises :class:`ManifestError` for paths that leave the folder, a missing or ambiguous music
    file and no usable clip. ``expect`` entries that are not there yet do not raise: they are
    listed in ``Inputs.missing`` and whatever depends on them is left unresolved.
    """
    folder = Path(folder)
    name = manifest.name
    try:
        folder_real = Path(os.path.realpath(folder))
        if not folder_real.is_dir():
            raise ManifestError(f"{name}: the folder {str(folder)!r} does not exist")
        files = _walk(folder_real)
    except OSError as exc:
        raise ManifestError(f"{name}: cannot list the folder: {exc.strerror or exc}") from None
    problems: list[str] = []

    missing = []
    for i, exp in enumerate(manifest.expect):
        target = folder_real / exp.path
        if not _inside(folder_real, target):
            problems.append(f"expect[{i}].path: {_show(exp.path)} points outside the folder")
            continue
        why = _present(target, exp.size)
        if why is not None:
            missing.append(f"{exp.path}: {why}")
    expected = {PurePosixPath(e.path).as_posix() for e in manifest.expect}
    waiting = bool(missing)

    exclude = [glob_regex(p) for p in manifest.exclude]
    files = [f for f in files if f != name and not any(rx.match(f) for rx in exclude)]

    # The music: named, or the only audio file in the folder.
    music: Path | None = None
    if manifest.music is not None:
        rel = PurePosixPath(manifest.music).as_posix()
        target = folder_real / rel
        if not _inside(folder_real, target):
            problems.append(f"music: {_show(manifest.music)} points outside the folder")
        elif target.is_file():
            music = folder / rel
        elif not (waiting and rel in expected):
            problems.append(f"music: {_show(manifest.music)} does not exist in the folder")
    else:
        audio = [f for f in files if is_audio(f)]
        if len(audio) == 1:
            music = folder / audio[0]
            if not _inside(folder_real, folder_real / audio[0]):
                problems.append(f"music: {_show(audio[0])} is a link that points outside the folder")
                music = None
        elif len(audio) > 1:
            listed = ", ".join(_show(a, 40) for a in audio[:5]) + (", ..." if len(audio) > 5 else "")
            problems.append(f"music: {len(audio)} audio files in the folder ({listed}); name one with music = \"...\"")
        elif not waiting:
            problems.append("music: no audio file in the folder; add one or name it with music = \"...\"")
    music_rel = music.relative_to(folder).as_posix() if music is not None else None

    # The clips: every video, or those matching the globs; never the music or the manifest.
    videos = [f for f in files if is_video(f) and f != music_rel]
    if manifest.clips is None:
        chosen = videos
    else:
        chosen_set: set[str] = set()
        for i, pattern in enumerate(manifest.clips):
            rx = glob_regex(pattern)
            hits = [f for f in videos if rx.match(f)]
            if not hits and not _has_magic(pattern) and not (waiting and pattern in expected):
                if (folder_real / pattern).is_file() and not is_video(pattern):
                    problems.append(f"clips[{i}]: {_show(pattern)} is not a video file name")
                else:
                    problems.append(f"clips[{i}]: {_show(pattern)} does not exist in the folder")
            chosen_set.update(hits)
        chosen = sorted(chosen_set)
    clips = []
    for rel in chosen:
        if not _inside(folder_real, folder_real / rel):
            problems.append(f"clips: {_show(rel)} is a link that points outside the folder")
        elif (folder_real / rel).is_file():
            # Paths are returned under ``folder`` as given (not its realpath) so that they match
            # the paths the watcher and the store know the files by.
            clips.append(folder / rel)
    if not clips and not waiting and not any(p.startswith("clips") for p in problems):
        what = "no video file in the folder" if manifest.clips is None else "no video file matches the globs"
        problems.append(f"clips: {what}")

    if problems:
        raise _fail(name, problems)
    if missing:
        log.info("%s: waiting for %d expected file(s) in %s", name, len(missing), folder)
    return Inputs(clips=clips, music=music, expect=manifest.expect, missing=tuple(missing))
