"""Configuration: defaults, lookup order, every error path, the example file, the CLI."""

from pathlib import Path

import pytest

from montaged.config import ConfigError, Settings, describe, find_config_file, load_settings, settings_from_dict
from tests.helpers import cli

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text, name="montaged.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    s = load_settings(None) if not Path("/etc/montaged/config.toml").exists() else pytest.skip("a system config exists")
    assert s.source is None
    assert s.paths.watch == (tmp_path / "ingest",)
    assert s.paths.output == tmp_path / "previews"
    assert s.paths.state == tmp_path / "xdg" / "montaged"
    assert s.watch.settle_seconds == 3.0 and s.preview.width == 640 and s.preview.height == 360
    assert s.workers.max_attempts == 3 and s.preview.manifest == "montage.toml"


def test_state_directory_from_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    s = settings_from_dict({}, base=tmp_path)
    assert s.paths.state == tmp_path / "sd"
    assert s.origins["paths.state"] == "$STATE_DIRECTORY"


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = write(tmp_path, "[watch]\nsettle_seconds = 1.5\n")
    env = write(tmp_path, "[watch]\nsettle_seconds = 2.5\n", "env.toml")
    explicit = write(tmp_path, "[watch]\nsettle_seconds = 3.5\n", "explicit.toml")
    if not Path("/etc/montaged/config.toml").exists():
        assert find_config_file(None) == Path("montaged.toml")
    monkeypatch.setenv("MONTAGED_CONFIG", str(env))
    assert load_settings(None).watch.settle_seconds == 2.5
    assert load_settings(explicit).watch.settle_seconds == 3.5
    monkeypatch.delenv("MONTAGED_CONFIG")
    assert local.exists()


def test_relative_paths_are_relative_to_the_file(tmp_path):
    cfg = write(tmp_path, '[paths]\nwatch = ["in"]\noutput = "out"\nstate = "st"\n')
    s = load_settings(cfg)
    assert s.paths.watch == (tmp_path / "in",) and s.paths.output == tmp_path / "out" and s.paths.state == tmp_path / "st"
    assert s.origins["paths.output"] == str(cfg) and s.origins["watch.settle_seconds"] == "default"


def test_every_error_is_collected_with_file_and_key(tmp_path):
    cfg = write(tmp_path, """
[paths]
watch = ["in"]
output = "in/previews"
[watch]
setle_seconds = 2
observer = "fanotify"
poll_interval = -1
follow_symlinks = "yes"
[workers]
processes = 2.5
executor = "dask"
[preview]
style = "wild"
width = true
[nonsense]
x = 1
""")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    for needle in ("unknown key watch.setle_seconds", "did you mean watch.settle_seconds", "watch.observer: must be one of",
                   "watch.poll_interval: must be at least", "watch.follow_symlinks: must be true or false",
                   "workers.processes: must be a whole number", "workers.dask_scheduler: required",
                   "preview.style: must be one of", "preview.width: must be a whole number", "unknown section [nonsense]",
                   "paths.output", "inside the watch root"):
        assert needle in text, needle
    assert all(line.startswith(str(cfg)) for line in err.value.problems)


def test_not_toml_and_not_utf8(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[paths\nwatch="))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[paths]\noutput = "\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_missing_watch_root_is_an_error_only_for_check(tmp_path):
    cfg = write(tmp_path, '[paths]\nwatch = ["nope"]\n')
    assert load_settings(cfg).paths.watch == (tmp_path / "nope",)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(cfg, check_paths=True)


def test_nested_watch_roots_refused(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside another watch root"):
        load_settings(write(tmp_path, '[paths]\nwatch = ["a", "a/b"]\n'))


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(Exception):
        s.watch.settle_seconds = 1  # type: ignore[misc]


def test_describe_covers_every_option_with_help():
    rows = describe(settings_from_dict({}))
    assert len(rows) > 25
    assert all(help_text for *_, help_text in rows)


def test_example_config_is_valid_and_documents_every_key():
    example = ROOT / "config.example.toml"
    text = example.read_text()
    s = load_settings(example, check_paths=True)
    # Every value in the example is the built-in default, except the repo-relative paths.
    defaults = settings_from_dict({})
    for name in ("watch", "workers", "preview", "daemon"):
        assert getattr(s, name) == getattr(defaults, name), name
    for label, *_ in describe(s):
        section, key = label.split(".")
        assert f"[{section}]" in text, section
        assert f"\n{key} = " in text, f"{label} not in config.example.toml"


def test_cli_config_check(tmp_path):
    good = write(tmp_path, f'[paths]\nwatch = ["{tmp_path}"]\noutput = "/tmp/montaged-out"\nstate = "{tmp_path / "st"}"\n', "good.toml")
    (tmp_path / "x").mkdir()
    good.write_text(f'[paths]\nwatch = ["{tmp_path / "x"}"]\noutput = "{tmp_path / "out"}"\n')
    r = cli("config", "check", str(good))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    bad = write(tmp_path, "[watch]\nsettle_secs = 1\n", "bad.toml")
    r = cli("config", "check", str(bad))
    assert r.returncode == 2
    assert "watch.settle_secs" in r.stderr and str(bad) in r.stderr


def test_cli_config_show_names_sources(tmp_path):
    cfg = write(tmp_path, "[preview]\nduration = 30\n")
    r = cli("config", "show", config=cfg)
    assert r.returncode == 0, r.stderr
    assert f"duration = 30.0  # {cfg}" in r.stdout
    assert "settle_seconds = 3.0  # default" in r.stdout


def test_example_passes_config_check():
    r = cli("config", "check", str(ROOT / "config.example.toml"))
    assert r.returncode == 0, r.stderr
    assert "ok: " in r.stdout
