"""Job, file and folder state transitions against a real SQLite store."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from montaged import jobs
from montaged.analysis import Analysis
from montaged.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "state") as s:
        yield s


def add_file(store, tmp_path, name, content=b"x" * 100):
    p = tmp_path / name
    p.write_bytes(content)
    file_id, needs = jobs.record_file(store, str(p), str(tmp_path), os.stat(p))
    return p, file_id, needs


def test_new_file_gets_one_job_and_copies_share_it(store, tmp_path):
    a, a_id, needs = add_file(store, tmp_path, "a.mp4")
    assert needs
    assert jobs.set_digest(store, a_id, "d1") == "queued"
    b, b_id, _ = add_file(store, tmp_path, "b.mp4")
    assert jobs.set_digest(store, b_id, "d1") == "queued"
    assert store.query_one("SELECT COUNT(*) FROM jobs")[0] == 1
    [job] = jobs.claim_jobs(store, 5, 60)
    assert store.query_one("SELECT COUNT(*) FROM files WHERE state = 'running'")[0] == 2
    jobs.finish_analysis(store, job, Analysis("video", {"kind": "video"}, {"m": np.zeros(3)}))
    assert {r["state"] for r in store.query("SELECT state FROM files")} == {"analyzed"}
    # A third copy arriving later is analysed by lookup, without a job.
    c, c_id, _ = add_file(store, tmp_path, "c.mp4")
    assert jobs.set_digest(store, c_id, "d1") == "analyzed"
    assert store.query_one("SELECT COUNT(*) FROM jobs")[0] == 1


def test_unchanged_file_needs_nothing_and_changed_file_is_redone(store, tmp_path):
    p, file_id, _ = add_file(store, tmp_path, "a.mp4")
    jobs.set_digest(store, file_id, "d1")
    assert jobs.record_file(store, str(p), str(tmp_path), os.stat(p)) == (file_id, False)
    p.write_bytes(b"y" * 200)
    assert jobs.record_file(store, str(p), str(tmp_path), os.stat(p)) == (file_id, True)


def test_digest_of_a_file_that_changed_while_hashing_is_dropped(store, tmp_path):
    p, file_id, _ = add_file(store, tmp_path, "a.mp4")
    before = os.stat(p)
    p.write_bytes(b"z" * 300)
    jobs.record_file(store, str(p), str(tmp_path), os.stat(p))
    assert jobs.set_digest(store, file_id, "stale", before) == "pending"
    assert store.query_one("SELECT digest FROM files")[0] is None


def test_claim_is_atomic_across_processes(tmp_path):
    state = tmp_path / "state"
    with Store(state) as s:
        with s.atomic() as conn:
            conn.executemany("INSERT INTO jobs (kind, state, path, digest, created) VALUES ('analyze', 'queued', ?, ?, 'now')",
                             [(f"/f{i}", f"d{i}") for i in range(200)])
    code = (
        "import sys; from montaged.store import Store; from montaged import jobs\n"
        "s = Store(sys.argv[1]); got = []\n"
        "while True:\n"
        "    batch = jobs.claim_jobs(s, 3, 60)\n"
        "    if not batch: break\n"
        "    got += [j.id for j in batch]\n"
        "print(' '.join(map(str, got)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    claimed = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        claimed += [int(x) for x in out.split()]
    assert sorted(claimed) == list(range(1, 201))  # every job exactly once


def test_backoff_holds_a_job_back(store):
    with store.atomic() as conn:
        conn.execute("INSERT INTO jobs (kind, state, path, created) VALUES ('analyze', 'queued', '/low', 'now')")
        conn.execute("INSERT INTO jobs (kind, state, path, created, priority) VALUES ('analyze', 'queued', '/high', 'now', 10)")
        conn.execute("INSERT INTO jobs (kind, state, path, created, priority, not_before) VALUES ('analyze', 'queued', '/later', 'now', 99, ?)", (time.time() + 3600,))
    assert {j.path for j in jobs.claim_jobs(store, 5, 60)} == {"/low", "/high"}
    assert store.query_one("SELECT state FROM jobs WHERE path = '/later'")[0] == "queued"


def test_priority_order(store):
    with store.atomic() as conn:
        conn.execute("INSERT INTO jobs (kind, state, path, created) VALUES ('analyze', 'queued', '/low', 'now')")
        conn.execute("INSERT INTO jobs (kind, state, path, created, priority) VALUES ('analyze', 'queued', '/high', 'now', 10)")
    assert [j.path for j in jobs.claim_jobs(store, 1, 60)] == ["/high"]


def test_retryable_failure_backs_off_then_quarantines(store, tmp_path):
    p, file_id, _ = add_file(store, tmp_path, "a.mp4")
    jobs.set_digest(store, file_id, "d1")
    states = []
    for attempt in range(3):
        store.conn.execute("UPDATE jobs SET not_before = 0")
        [job] = jobs.claim_jobs(store, 1, 60)
        states.append(jobs.fail_job(store, job, "worker crashed", retryable=True, max_attempts=3, backoff=10))
        if states[-1] == "queued":
            assert store.query_one("SELECT not_before FROM jobs")[0] > time.time() + 5 * (attempt + 1)
    assert states == ["queued", "queued", "quarantined"]
    row = store.query_one("SELECT state, error FROM files")
    assert tuple(row) == ("quarantined", "worker crashed")
    assert jobs.retry_jobs(store, all_failed=True) == [1]
    assert tuple(store.query_one("SELECT state, attempts FROM jobs")) == ("queued", 0)
    assert store.query_one("SELECT state FROM files")[0] == "queued"


def test_bad_input_fails_at_once(store, tmp_path):
    p, file_id, _ = add_file(store, tmp_path, "a.mp4")
    jobs.set_digest(store, file_id, "d1")
    [job] = jobs.claim_jobs(store, 1, 60)
    assert jobs.fail_job(store, job, "not a media file: a.mp4", retryable=False, max_attempts=3, backoff=1) == "failed"
    assert tuple(store.query_one("SELECT state, error FROM files")) == ("failed", "not a media file: a.mp4")


def test_interrupted_jobs_resume_uncharged(store, tmp_path):
    p, file_id, _ = add_file(store, tmp_path, "a.mp4")
    jobs.set_digest(store, file_id, "d1")
    jobs.claim_jobs(store, 1, 60)
    assert jobs.requeue_interrupted(store) == 1
    assert tuple(store.query_one("SELECT state, attempts FROM jobs")) == ("queued", 0)


def test_move_follows_the_file_and_gone_releases_features(store, tmp_path):
    (tmp_path / "sub").mkdir()
    p, file_id, _ = add_file(store, tmp_path, "sub/a.mp4")
    jobs.set_digest(store, file_id, "d1")
    [job] = jobs.claim_jobs(store, 1, 60)
    jobs.finish_analysis(store, job, Analysis("video", {"kind": "video"}, {"m": np.zeros(2)}))
    os.rename(tmp_path / "sub", tmp_path / "moved")
    assert jobs.file_moved(store, str(tmp_path / "sub"), str(tmp_path / "moved"), str(tmp_path))
    row = store.query_one("SELECT path, folder, state FROM files")
    assert tuple(row) == (str(tmp_path / "moved" / "a.mp4"), str(tmp_path / "moved"), "analyzed")
    assert jobs.file_gone(store, str(tmp_path / "moved")) == [str(tmp_path / "moved" / "a.mp4")]
    assert store.has_features("d1")  # kept a while: the deletion may be half of a move
    assert jobs.forget_gone(store, older_than=3600) == 0
    assert jobs.forget_gone(store, older_than=-1) == 1
    assert not store.has_features("d1")
    assert store.query_one("SELECT COUNT(*) FROM files")[0] == 0


def test_non_utf8_file_names_round_trip(store, tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9 clip.mp4"
    with open(raw, "wb") as fh:
        fh.write(b"data")
    name = os.fsdecode(raw)
    file_id, _ = jobs.record_file(store, name, str(tmp_path), os.stat(raw))
    assert store.query_one("SELECT path FROM files")[0].endswith("caf\\xe9 clip.mp4")
    assert jobs.known_files(store, str(tmp_path)).keys() == {name}
    assert jobs.file_gone(store, name)


def test_manifest_debounce_and_supersede(store, tmp_path):
    folder_id = jobs.manifest_seen(store, str(tmp_path), str(tmp_path), 1, debounce=60)
    assert [r["id"] for r in jobs.waiting_folders(store)] == [folder_id]  # first render: no debounce
    jobs.start_render(store, folder_id, str(tmp_path), {"edit": {}}, [])
    jobs.manifest_seen(store, str(tmp_path), str(tmp_path), 2, debounce=60)
    assert store.query_one("SELECT state, error FROM jobs")[0] == "failed"  # superseded
    assert jobs.waiting_folders(store) == []  # debounced
