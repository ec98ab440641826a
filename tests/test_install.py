"""`make install` / `make uninstall` into temporary folders, as the README's service section runs
them (with NO_SYSTEMCTL=1: no systemctl, sysusers or tmpfiles calls on the machine running the
tests). The install's virtualenv also reads the test venv's site-packages
(MONTAGED_INSTALL_SITE_PACKAGES), so pip finds the dependencies installed instead of fetching
them again; montaged itself is built and copied into it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.helpers import missing_tool, need_tool

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def make(target: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["MONTAGED_INSTALL_SITE_PACKAGES"] = sysconfig.get_paths()["purelib"]
    return subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", target, f"PREFIX={tmp}/opt", f"UNITDIR={tmp}/unit",
         f"SYSCONFDIR={tmp}/etc", "NO_SYSTEMCTL=1", f"PYTHON={sys.executable}", *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )


def installed_files(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() and "opt" not in p.relative_to(tmp).parts}


def test_install_run_verify_uninstall(tmp_path):
    need_tool("make")
    r = make("install", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = tmp_path / "opt"

    # The installed program runs, from its own copy of the package (not this source tree).
    exe = prefix / "bin" / "montaged"
    r2 = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r2.returncode == 0 and r2.stdout.strip() == "montaged 0.1.0", r2.stdout + r2.stderr
    where = subprocess.run([str(prefix / "bin" / "python"), "-c", "import montaged; print(montaged.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(prefix), where.stdout + where.stderr

    # The unit starts that program; apart from ExecStart it is the shipped unit.
    unit = tmp_path / "unit" / "montaged.service"
    text = unit.read_text()
    exec_lines = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert exec_lines == [f"ExecStart={exe} run"]
    shipped = (REPO / "systemd" / "montaged.service").read_text()
    assert text == shipped.replace("ExecStart=/opt/montaged/bin/montaged run", f"ExecStart={exe} run")
    assert oct(unit.stat().st_mode & 0o777) == "0o644"

    # The default config names the system paths and is a valid montaged config.
    config = tmp_path / "etc" / "montaged" / "config.toml"
    doc = tomllib.loads(config.read_text())
    assert doc["paths"] == {"watch": ["/srv/ingest"], "output": "/srv/previews", "state": "/var/lib/montaged"}
    show = subprocess.run([str(exe), "config", "show", "--config", str(config)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert show.returncode == 0 and "/srv/previews" in show.stdout, show.stdout + show.stderr
    assert installed_files(tmp_path) == {"unit/montaged.service", "etc/montaged/config.toml",
                                         "etc/sysusers.d/montaged.conf", "etc/tmpfiles.d/montaged.conf"}

    # systemd accepts the installed unit as it is (verify also checks that ExecStart exists).
    # Without systemd-analyze the rest still runs; the test is then skipped at the end.
    tool = shutil.which("systemd-analyze")
    if tool is not None:
        v = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER=""))
        assert v.returncode == 0 and (v.stdout + v.stderr).strip() == "", v.stdout + v.stderr

    # Uninstall removes what install made, keeps the config (it may have been edited) and says so.
    config.write_text(config.read_text() + "\n# edited by the admin\n")
    r = make("uninstall", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not prefix.exists()
    assert installed_files(tmp_path) == {"etc/montaged/config.toml"}
    assert f"kept {config}" in r.stdout
    assert config.read_text().endswith("# edited by the admin\n")
    if tool is None:
        missing_tool("systemd-analyze is not installed (apt-get install systemd): the installed unit was not verified")


def test_install_refuses_a_prefix_that_is_not_its_virtualenv(tmp_path):
    need_tool("make")
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "precious.txt").write_text("keep me")
    r = make("install", tmp_path)
    assert r.returncode != 0 and "refusing" in r.stderr
    r = make("uninstall", tmp_path)
    assert r.returncode == 0 and "not a virtualenv" in r.stderr
    assert (tmp_path / "opt" / "precious.txt").read_text() == "keep me"


def test_destdir_stages_an_install_that_works_once_moved(tmp_path):
    """Packaging: everything lands under DESTDIR, names PREFIX, and runs once moved there."""
    need_tool("make")
    stage = tmp_path / "stage"
    # A config that is already there (an admin's) is kept as it is.
    config = stage / str(tmp_path / "etc" / "montaged" / "config.toml").lstrip("/")
    config.parent.mkdir(parents=True)
    config.write_text('[paths]\nwatch = ["/data/ingest"]\n')
    r = make("install", tmp_path, f"DESTDIR={stage}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NO_SYSTEMCTL=1" in r.stdout  # DESTDIR never touches the running system
    assert f"kept the existing {config}" in r.stdout
    assert config.read_text() == '[paths]\nwatch = ["/data/ingest"]\n'
    staged = stage / str(tmp_path / "opt").lstrip("/")
    assert (staged / "bin" / "montaged").exists() and not (tmp_path / "opt").exists()
    for rel in ("unit/montaged.service", "etc/montaged/config.toml", "etc/sysusers.d/montaged.conf"):
        assert (stage / str(tmp_path / rel).lstrip("/")).exists(), rel
    # No staged file (scripts, venv notes, compiled modules) remembers the staging folder.
    leaks = subprocess.run(["grep", "-rl", "-F", str(stage), str(stage)], capture_output=True, text=True)
    assert leaks.stdout == "", leaks.stdout
    # Moved into place, as a package manager would, it runs.
    staged.rename(tmp_path / "opt")
    exe = tmp_path / "opt" / "bin" / "montaged"
    r2 = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r2.returncode == 0 and r2.stdout.strip() == "montaged 0.1.0", r2.stdout + r2.stderr
    # A traceback names the installed file (the modules were compiled for PREFIX, not the stage).
    tb = subprocess.run([str(tmp_path / "opt" / "bin" / "python"), "-c",
                         "import montaged.store as s; s.Store(__import__('sys').argv[1], readonly=True)", str(tmp_path / "none")],
                        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert f'File "{tmp_path}/opt/lib/' in tb.stderr and str(stage) not in tb.stderr, tb.stderr
    unit = stage / str(tmp_path / "unit" / "montaged.service").lstrip("/")
    assert [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")] == [f"ExecStart={exe} run"]
