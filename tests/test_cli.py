"""The command line as scripts use it: with --json every command that reports prints one JSON
document on stdout (logs: JSON lines), errors included, with the contract's exit codes; the
exit codes are in --help; shell completion works through the installed entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from montaged import jobs
from montaged.config import describe, settings_from_dict
from montaged.store import Store
from tests.helpers import cli, write_config
from tests.test_logs import write_log


@pytest.fixture
def setup(tmp_path):
    """A config whose state directory holds a store with one failed job, and a bad config."""
    root, state = tmp_path / "ingest", tmp_path / "state"
    root.mkdir()
    config = write_config(tmp_path / "montaged.toml", watch=[root], output=tmp_path / "out", state=state)
    bad = tmp_path / "bad.toml"
    bad.write_text("[paths]\ncolour = 1\n[workers]\nprocesses = -4\n")
    return {"root": root, "state": state, "config": config, "bad": bad, "tmp": tmp_path}


def failed_job(state: Path, root: Path) -> int:
    clip = root / "broken.mp4"
    clip.write_bytes(b"\x00" * 100)
    with Store(state) as store:
        file_id, _ = jobs.record_file(store, str(clip), str(root), os.stat(clip))
        jobs.set_digest(store, file_id, "d1")
        [job] = jobs.claim_jobs(store, 1, 60)
        jobs.fail_job(store, job, "not a media file: broken.mp4", retryable=False, max_attempts=1, backoff=0)
    return job.id


def one_document(r: subprocess.CompletedProcess):
    """stdout is exactly one JSON document (json.loads refuses trailing text)."""
    assert r.stdout.strip(), f"nothing on stdout (exit {r.returncode}); stderr: {r.stderr}"
    return json.loads(r.stdout)


def assert_json_error(r: subprocess.CompletedProcess, code: int, says: str) -> dict:
    doc = one_document(r)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert set(doc) >= {"error", "exit"} and doc["exit"] == code, doc
    assert says in doc["error"], doc
    assert says in r.stderr, r.stderr  # the message is still on stderr for people
    return doc


ERRORS = [
    # (argv after "montaged", which config: none/good/bad, exit code, part of the message)
    (["inspect", "{root}/x.mp4", "--json"], "good", 1, "no montaged database"),
    (["retry", "--failed", "--json"], "good", 1, "no montaged database"),
    (["retry", "--json"], "good", 2, "give job IDs"),
    (["logs", "--json"], "good", 1, "no log at"),
    (["logs", "--json", "--since", "soon"], "good", 2, "cannot understand --since"),
    (["logs", "--json", "-n", "many"], "good", 2, "must be a number or 'all'"),
    (["status", "--json"], "bad", 2, "unknown key paths.colour"),
    (["jobs", "--json"], "bad", 2, "unknown key paths.colour"),
    (["inspect", "{root}", "--json"], "bad", 2, "unknown key paths.colour"),
    (["config", "show", "--json"], "bad", 2, "workers.processes"),
    (["preview", "{root}", "--json"], "good", 1, "music"),
]


@pytest.mark.parametrize("argv,which,code,says", ERRORS, ids=[" ".join(e[0]) + f" ({e[1]})" for e in ERRORS])
def test_an_error_with_json_is_one_object_on_stdout(setup, argv, which, code, says):
    argv = [a.format(root=setup["root"]) for a in argv]
    r = cli(*argv, config=setup[{"good": "config", "bad": "bad"}[which]])
    assert_json_error(r, code, says)


def test_config_check_json(setup):
    doc = assert_json_error(cli("config", "check", str(setup["bad"]), "--json"), 2, "unknown key paths.colour")
    assert any("workers.processes" in p for p in doc["problems"]) and len(doc["problems"]) >= 2
    r = cli("config", "check", str(setup["config"]), "--json")
    assert r.returncode == 0, r.stderr
    assert one_document(r) == {"ok": True, "source": str(setup["config"])}
    # Without --json nothing changes: text on stderr, nothing on stdout.
    r = cli("config", "check", str(setup["bad"]))
    assert r.returncode == 2 and r.stdout == "" and "unknown key paths.colour" in r.stderr


def test_config_show_json_has_every_key_and_where_it_came_from(setup):
    r = cli("config", "show", "--json", config=setup["config"])
    assert r.returncode == 0, r.stderr
    doc = one_document(r)
    assert doc["source"] == str(setup["config"])
    for label, *_ in describe(settings_from_dict({})):
        section, key = label.split(".", 1)
        entry = doc["settings"][section][key]
        assert set(entry) == {"value", "origin", "help"} and entry["help"], label
    assert doc["settings"]["paths"]["watch"] == {"value": [str(setup["root"])], "origin": str(setup["config"]),
                                                 "help": doc["settings"]["paths"]["watch"]["help"]}
    assert doc["settings"]["preview"]["width"]["origin"] == "default"


def test_retry_json(setup):
    job = failed_job(setup["state"], setup["root"])
    r = cli("retry", "999", "--json", config=setup["config"])
    assert r.returncode == 1 and one_document(r) == {"requeued": [], "asked": [999], "failed": False}
    r = cli("retry", "--failed", "--json", config=setup["config"])
    assert r.returncode == 0, r.stderr
    assert one_document(r) == {"requeued": [job], "asked": [], "failed": True}
    r = cli("jobs", "--json", config=setup["config"])
    assert [j["state"] for j in one_document(r)] == ["queued"]
    r = cli("retry", "--failed", "--json", config=setup["config"])
    assert r.returncode == 0 and one_document(r)["requeued"] == []


def test_reports_keep_their_exit_codes_with_json(setup):
    failed_job(setup["state"], setup["root"])
    r = cli("status", "--json", config=setup["config"])
    assert r.returncode == 3 and one_document(r)["daemon"]["running"] is False
    r = cli("inspect", str(setup["root"] / "nothing.mp4"), "--json", config=setup["config"])
    assert r.returncode == 1 and one_document(r)["type"] == "unknown"
    r = cli("inspect", str(setup["root"] / "broken.mp4"), "--json", config=setup["config"])
    assert r.returncode == 0 and one_document(r)["state"] == "failed"
    r = cli("analyze", str(setup["root"] / "broken.mp4"), "--json")
    assert r.returncode == 1 and one_document(r)[0]["error"].startswith("not a media file")


def test_logs_json_is_one_object_per_record(setup):
    state = setup["state"]
    state.mkdir()
    write_log(state, [
        [30, "INFO", "settled /srv/in/a.mp4", {"path": "/srv/in/a.mp4", "job": 7}],
        [20, "ERROR", "EXC analysis failed", {"path": "/srv/in/b.mov", "job": 8}],
        [10, "WARNING", "preview late", {"folder": "/srv/in"}],
    ])
    r = cli("logs", "--json", "-n", "all", config=setup["config"])
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(d["level"], d["message"]) for d in records] == [
        ("INFO", "settled /srv/in/a.mp4"), ("ERROR", "EXC analysis failed"), ("WARNING", "preview late")]
    first, failed, late = records
    assert first["logger"] == "montaged.test" and first["time"].endswith("Z")
    assert (first["path"], first["job"], first["folder"], first["detail"]) == ("/srv/in/a.mp4", 7, None, None)
    assert failed["detail"].startswith("Traceback (most recent call last):")
    assert failed["detail"].endswith("ValueError: broken moov atom")
    assert (late["path"], late["job"], late["folder"]) == (None, None, "/srv/in")
    # Filters and -n work on records as they do on lines.
    r = cli("logs", "--json", "-n", "1", "--level", "error", config=setup["config"])
    assert [json.loads(line)["message"] for line in r.stdout.splitlines()] == ["EXC analysis failed"]


def test_help_lists_the_exit_codes():
    r = cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for line in ("0 success", "1 the work failed", "2 bad usage or bad configuration", "3 status: the daemon is not running"):
        assert line in text, line
    assert "_MONTAGED_COMPLETE=bash_source montaged" in text


def entry_point() -> str:
    path = Path(sys.executable).with_name("montaged")
    assert path.exists(), f"no montaged entry point next to {sys.executable}: install the package (make test does)"
    return str(path)


def test_bash_completion_through_the_entry_point(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = """
        eval "$(_MONTAGED_COMPLETE=bash_source montaged)"
        complete -p montaged
        COMPREPLY=(); COMP_WORDS=(montaged sta); COMP_CWORD=1; _montaged_completion montaged; echo "${COMPREPLY[@]}"
        COMPREPLY=(); COMP_WORDS=(montaged config ""); COMP_CWORD=2; _montaged_completion montaged; echo "${COMPREPLY[@]}"
        COMPREPLY=(); COMP_WORDS=(montaged jobs --state q); COMP_CWORD=3; _montaged_completion montaged; echo "${COMPREPLY[@]}"
    """
    env = {**os.environ, "PATH": f"{Path(entry_point()).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["complete -o nosort -F _montaged_completion montaged", "status", "check show",
                                     "queued quarantined"]
