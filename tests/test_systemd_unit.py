"""The shipped systemd files, checked by systemd's own tools.

``systemd-analyze verify`` must print nothing at all for the unit: any line it prints is a
warning (unknown key, deprecated setting, missing binary) that would show up in a user's
journal. CI installs systemd; the tests skip only when the tools are missing.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import need_tool

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "montaged.service"
SHIPPED_EXEC = "ExecStart=/opt/montaged/bin/montaged run"


def _need(tool: str) -> str:
    return need_tool(tool, "systemd")


def _unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an executable that exists here (verify checks it);
    every other line is byte-for-byte the shipped one."""
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXEC) == 1
    copy = tmp_path / "montaged.service"
    copy.write_text(text.replace(SHIPPED_EXEC, f"ExecStart={sys.executable} -m montaged run"))
    return copy


def _directives() -> dict[str, list[str]]:
    """``Key -> [values]`` of the [Service] section (keys may repeat, so no configparser)."""
    section = None
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}{key}", []).append(value)
    return out


def test_systemd_analyze_verify_prints_nothing(tmp_path):
    tool = _need("systemd-analyze")
    copy = _unit_copy(tmp_path)
    proc = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER=""))
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and output == "", output


def test_verify_would_catch_a_mistake(tmp_path):
    """The check above can fail: a misspelt key makes systemd-analyze print a warning."""
    tool = _need("systemd-analyze")
    copy = _unit_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    proc = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=120)
    assert "ProtectHomes" in proc.stdout + proc.stderr


def test_security_exposure_stays_low(tmp_path):
    tool = _need("systemd-analyze")
    copy = _unit_copy(tmp_path)
    proc = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(copy)],
                          capture_output=True, text=True, timeout=120)
    if "--offline" in proc.stderr or "unrecognized option" in proc.stderr:
        pytest.skip("systemd-analyze is older than 250 (no --offline)")
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    # 1.9 with systemd 252; anything above 3 means a hardening line was lost.
    assert float(m.group(1)) <= 3.0


def test_the_contract_settings():
    d = _directives()
    s = "[Service]"
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure",
        "User": "montaged", "Group": "montaged", "StateDirectory": "montaged",
        "ConfigurationDirectory": "montaged", "Nice": "10", "CPUSchedulingPolicy": "batch",
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
        "LockPersonality": "yes", "SystemCallFilter": "@system-service", "UMask": "0027",
        "ExecReload": "/bin/kill -HUP $MAINPID", "ExecStart": "/opt/montaged/bin/montaged run",
        "ReadWritePaths": "-/srv/previews",
    }
    for key, value in expected.items():
        assert d.get(s + key) == [value], key
    assert d[s + "IOSchedulingClass"] in (["idle"], ["best-effort"])
    # The daemon's graceful stop (stop_timeout, 20 s by default) must fit in TimeoutStopSec.
    assert int(d[s + "TimeoutStopSec"][0]) > 20
    assert f"{s}LogsDirectory" not in d
    assert d["[Install]WantedBy"] == ["multi-user.target"]


def test_sysusers_and_tmpfiles_make_the_user_and_the_roots(tmp_path):
    """What the README's install steps do, in a scratch root instead of the real /etc."""
    sysusers, tmpfiles = _need("systemd-sysusers"), _need("systemd-tmpfiles")
    (tmp_path / "etc").mkdir()
    proc = subprocess.run([sysusers, f"--root={tmp_path}", "-"], capture_output=True, text=True,
                          input=(SYSTEMD / "montaged.sysusers.conf").read_text(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if not ln.startswith("Creating ")], proc.stderr
    users = {ln.split(":")[0]: ln.split(":") for ln in (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {ln.split(":")[0]: ln.split(":") for ln in (tmp_path / "etc/group").read_text().splitlines()}
    name, _, uid, gid, _, home, shell = users["montaged"]
    assert home == "/var/lib/montaged" and shell.endswith("nologin")
    assert groups["montaged"][2] == gid

    # tmpfiles resolves the montaged user and group from the root's /etc made above.
    proc = subprocess.run([tmpfiles, f"--root={tmp_path}", "--create", "-"], capture_output=True,
                          text=True, input=(SYSTEMD / "montaged.tmpfiles.conf").read_text(), timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    ingest = (tmp_path / "srv/ingest").stat()
    previews = (tmp_path / "srv/previews").stat()
    assert (stat.S_IMODE(ingest.st_mode), ingest.st_uid, ingest.st_gid) == (0o2775, 0, int(gid))
    assert (stat.S_IMODE(previews.st_mode), previews.st_uid, previews.st_gid) == (0o2750, int(uid), int(gid))


def test_unit_parses_as_ini():
    # A cheap guard that also runs where systemd is not installed.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read_string(re.sub(r"(?m)^(ExecStart|ReadWritePaths)=.*$", "", UNIT.read_text()))
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
