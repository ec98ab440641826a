"""Settings: frozen dataclasses loaded from TOML, with every default, type, range and help text
in one place (the dataclass fields), so validation, ``config show`` and the documentation cannot
drift apart.

Lookup order: ``--config PATH``, else ``$MONTAGED_CONFIG``, else ``/etc/montaged/config.toml``,
else ``./montaged.toml``, else built-in defaults. Relative paths in a config file are relative to
the file's directory; built-in defaults are relative to the working directory.

Every problem in a file is collected and raised together as one :class:`ConfigError` whose lines
name the file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montaged.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/montaged/config.toml")
LOCAL_CONFIG = Path("montaged.toml")

DEFAULT_IGNORE = (
    ".*",  # dotfiles: editors, macOS ._ files, rsync's .name.XXXXXX, .syncthing.*
    "*.part",
    "*.tmp",
    "*.crdownload",
    "*.download",
    "*~",
)


def opt(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None, max: float | None = None):
    """A config option: its default, help text and allowed values, kept together."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the XDG state directory."""
    if os.environ.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "montaged"


@dataclass(frozen=True)
class PathsConfig:
    watch: tuple[Path, ...] = opt(("ingest",), "watch roots; every folder under a root can hold a manifest")
    output: Path = opt("previews", "previews land in output/<folder path relative to its root>/")
    state: Path = opt("", "SQLite database, feature arrays, log file, lock file (default: $STATE_DIRECTORY or the XDG state directory)")


@dataclass(frozen=True)
class WatchConfig:
    observer: str = opt("auto", "auto | inotify | polling (auto polls network file systems)", choices=("auto", "inotify", "polling"))
    settle_seconds: float = opt(3.0, "a file closed and unchanged this long is complete", min=0.0, max=3600.0)
    poll_interval: float = opt(5.0, "seconds between scans when polling", min=0.1, max=3600.0)
    follow_symlinks: bool = opt(False, "analyse files reached through symlinks (links pointing outside the root stay ignored)")
    ignore: tuple[str, ...] = opt(DEFAULT_IGNORE, "file name patterns never analysed (fnmatch, matched against the file name)")


@dataclass(frozen=True)
class WorkersConfig:
    executor: str = opt("process", "process | dask", choices=("process", "dask"))
    processes: int = opt(0, "analysis processes; 0 = number of CPUs", min=0, max=256)
    dask_scheduler: str = opt("", 'Dask scheduler address, e.g. "tcp://10.0.0.5:8786", when executor = "dask"')
    dask_fallback: str = opt("local", "when the Dask scheduler is unreachable: local (use the process pool) | wait", choices=("local", "wait"))
    max_attempts: int = opt(3, "attempts before a job is quarantined", min=1, max=100)
    job_timeout: float = opt(600.0, "seconds a single analysis or render may run before it is killed and retried", min=1.0, max=86400.0)
    retry_backoff: float = opt(5.0, "seconds before the first retry; doubles with every attempt", min=0.0, max=3600.0)
    memory_limit_mb: int = opt(0, "address-space limit of each worker process in MiB (RLIMIT_AS); 0 = no limit", min=0, max=1048576)


@dataclass(frozen=True)
class PreviewConfig:
    manifest: str = opt("montage.toml", "file name whose appearance in a folder asks for a preview")
    width: int = opt(640, "preview width (landscape; swapped for portrait previews)", min=64, max=7680)
    height: int = opt(360, "preview height (landscape; swapped for portrait previews)", min=64, max=4320)
    fps: int = opt(30, "preview frame rate", min=1, max=120)
    duration: float = opt(60.0, "seconds of preview, capped by the music", min=1.0, max=3600.0)
    style: str = opt("dynamic", "calm | dynamic | energetic", choices=("calm", "dynamic", "energetic"))
    clip_audio: float = opt(0.0, "level of the clips' own sound under the music (0 = music only)", min=0.0, max=1.0)
    render_processes: int = opt(0, "processes rendering segments in parallel; 0 = number of CPUs", min=0, max=64)
    crf: int = opt(23, "x264 quality (lower = better, larger)", min=0, max=51)
    preset: str = opt("superfast", "x264 preset", choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"))
    proxies: bool = opt(True, "after analysis, in idle time, make a small proxy of every video and render previews from it (far faster from HD footage)")
    proxy_height: int = opt(360, "height of those proxies in lines", min=144, max=1080)
    debounce_seconds: float = opt(2.0, "wait this long after the last change before re-rendering a ready folder", min=0.0, max=3600.0)


@dataclass(frozen=True)
class DaemonConfig:
    stop_timeout: float = opt(20.0, "seconds running jobs get to finish on SIGTERM before they are left to resume", min=0.0, max=3600.0)
    log_level: str = opt("INFO", "DEBUG | INFO | WARNING | ERROR", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    allow_root: bool = opt(False, "allow running as root (refused by default)")
    forget_after: float = opt(600.0, "seconds the features of a deleted file are kept, so a file moved out and back (or a folder being reorganised) is not analysed again", min=0.0, max=30 * 86400.0)


@dataclass(frozen=True)
class Settings:
    paths: PathsConfig = field(default_factory=PathsConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    # Where the settings came from: the file (None = built-in defaults) and, per "section.key",
    # the source of each value. Not configuration itself, so excluded from comparisons.
    source: Path | None = field(default=None, compare=False)
    origins: dict = field(default_factory=dict, compare=False, repr=False)


SECTIONS: dict[str, type] = {"paths": PathsConfig, "watch": WatchConfig, "workers": WorkersConfig, "preview": PreviewConfig, "daemon": DaemonConfig}


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The config file to use, by the documented lookup order; None means built-in defaults."""
    if explicit:
        return Path(explicit)
    if os.environ.get("MONTAGED_CONFIG"):
        return Path(os.environ["MONTAGED_CONFIG"])
    for candidate in (SYSTEM_CONFIG, LOCAL_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_settings(explicit: str | os.PathLike | None = None, *, check_paths: bool = False) -> Settings:
    """Find and load the settings. ``check_paths`` also reports missing watch roots as errors
    (``config check``); the daemon starts anyway and shows such roots offline."""
    path = find_config_file(explicit)
    if path is None:
        return _build({}, base=Path.cwd(), source=None, check_paths=check_paths)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return _build(data, base=path.resolve().parent, source=path, check_paths=check_paths)


def settings_from_dict(data: dict, *, base: Path | None = None, check_paths: bool = False) -> Settings:
    """Settings from an already-parsed TOML document (tests, programmatic use)."""
    return _build(data, base=base or Path.cwd(), source=None, check_paths=check_paths)


def _build(data: dict, *, base: Path, source: Path | None, check_paths: bool) -> Settings:
    where = str(source) if source else "config"
    problems: list[str] = []
    origins: dict[str, str] = {}
    sections: dict[str, Any] = {}
    for name in data:
        if name not in SECTIONS:
            problems.append(f"{where}: unknown section [{name}] (known: {', '.join(SECTIONS)})")
        elif not isinstance(data[name], dict):
            problems.append(f"{where}: [{name}] must be a table")
    for name, cls in SECTIONS.items():
        given = data.get(name) if isinstance(data.get(name), dict) else {}
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in known:
                hint = _closest(key, known)
                problems.append(f"{where}: unknown key {name}.{key}" + (f" (did you mean {name}.{hint}?)" if hint else ""))
        values = {}
        for key, f in known.items():
            label = f"{name}.{key}"
            if key in given:
                value, problem = _coerce(f, given[key], base)
                if problem:
                    problems.append(f"{where}: {label}: {problem}")
                    continue
                values[key] = value
                origins[label] = str(source) if source else "config"
            else:
                origins[label] = "default"
        try:
            sections[name] = cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by _coerce
            problems.append(f"{where}: [{name}]: {exc}")
            sections[name] = cls()
    paths: PathsConfig = sections["paths"]
    paths = _resolve_paths(paths, base, origins)
    sections["paths"] = paths
    problems += _check_paths(paths, where, check_paths)
    if sections["workers"].executor == "dask" and not sections["workers"].dask_scheduler:
        problems.append(f'{where}: workers.dask_scheduler: required when workers.executor = "dask"')
    if problems:
        raise ConfigError(problems)
    return Settings(**sections, source=source, origins=origins)


def _closest(key: str, known) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return match[0] if match else None


def _coerce(f: dataclasses.Field, value: Any, base: Path) -> tuple[Any, str | None]:
    """Check one value against its field; return (value, None) or (None, problem)."""
    meta = f.metadata
    kind = f.type
    if kind in ("tuple[Path, ...]", "tuple[str, ...]"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"must be a list of strings, got {value!r}"
        if any("\x00" in v for v in value):
            return None, "must not contain NUL bytes"
        if kind == "tuple[Path, ...]":
            if not value:
                return None, "needs at least one folder"
            return tuple(Path(v) for v in value), None
        return tuple(value), None
    if kind == "Path":
        if not isinstance(value, str):
            return None, f"must be a string path, got {value!r}"
        if "\x00" in value:
            return None, "must not contain NUL bytes"
        return Path(value), None
    if kind == "bool":
        if not isinstance(value, bool):
            return None, f"must be true or false, got {value!r}"
        return value, None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be a whole number, got {value!r}"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"must be a number, got {value!r}"
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            return None, f"must be a string, got {value!r}"
        if meta.get("choices") and value not in meta["choices"]:
            # log levels are case-insensitive, everything else is exact
            if value.upper() in meta["choices"]:
                value = value.upper()
            else:
                return None, f"must be one of {' | '.join(meta['choices'])}, got {value!r}"
        return value, None
    if meta.get("min") is not None and value < meta["min"]:
        return None, f"must be at least {meta['min']}, got {value}"
    if meta.get("max") is not None and value > meta["max"]:
        return None, f"must be at most {meta['max']}, got {value}"
    return value, None


def _resolve_paths(paths: PathsConfig, base: Path, origins: dict) -> PathsConfig:
    def absolute(p, key: str) -> Path:
        p = Path(p).expanduser()
        # Values from a file are relative to the file; built-in defaults to the working directory.
        anchor = base if origins.get(key, "default") != "default" else Path.cwd()
        return p if p.is_absolute() else anchor / p

    state = absolute(paths.state, "paths.state") if str(paths.state) else default_state_dir()
    if not str(paths.state):
        origins["paths.state"] = "$STATE_DIRECTORY" if os.environ.get("STATE_DIRECTORY") else "default (XDG state directory)"
    watch = tuple(_normalise(absolute(w, "paths.watch")) for w in paths.watch)
    return PathsConfig(watch=watch, output=_normalise(absolute(paths.output, "paths.output")), state=_normalise(state))


def _normalise(p: Path) -> Path:
    # Resolve symlinks in the part that exists, so "output inside a watch root" is judged on real
    # locations; keep the rest as written (a NAS root may not be mounted yet).
    return Path(os.path.realpath(p))


def _check_paths(paths: PathsConfig, where: str, check_missing: bool) -> list[str]:
    problems = []
    for root in paths.watch:
        if check_missing and not root.is_dir():
            problems.append(f"{where}: paths.watch: {root} does not exist or is not a folder (the daemon starts anyway and shows it offline)")
        for other in paths.watch:
            if other != root and other.is_relative_to(root):
                problems.append(f"{where}: paths.watch: {other} is inside another watch root {root}")
        if paths.output == root or paths.output.is_relative_to(root):
            problems.append(f"{where}: paths.output: {paths.output} is inside the watch root {root}: previews would be analysed as new clips")
        if paths.state == root or paths.state.is_relative_to(root):
            problems.append(f"{where}: paths.state: {paths.state} is inside the watch root {root}")
    return problems


def describe(settings: Settings) -> list[tuple[str, Any, str, str]]:
    """(``section.key``, value, source, help) for every option: what ``config show`` prints."""
    rows = []
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for f in dataclasses.fields(cls):
            label = f"{name}.{f.name}"
            rows.append((label, getattr(section, f.name), settings.origins.get(label, "default"), f.metadata["help"]))
    return rows


def to_toml_value(value: Any) -> str:
    """A value as TOML text (for ``config show``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    import json

    return json.dumps(str(value))
