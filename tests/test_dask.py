"""Analysis on a real Dask cluster: a `dask scheduler` and `dask worker` processes on 127.0.0.1,
the real daemon as a subprocess, real files. Checks that jobs really run on the workers (the
scheduler's event log says where), that a worker dying mid-job costs one attempt and the job
finishes on another worker, that losing the scheduler falls back to the local pool and that a
scheduler coming back is used again, and that a worker which cannot see the media gets no jobs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client  # noqa: E402

from montaged.config import settings_from_dict  # noqa: E402
from montaged.dask_executor import DaskExecutor  # noqa: E402
from tests.helpers import DaemonProcess, wait_until, write_config  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and named workers, each in its own process group (killed as a whole)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self._client: Client | None = None

    def _spawn(self, name: str, args: list[str], env: dict | None = None, prefix: list[str] | None = None) -> None:
        log = open(self.tmp / f"{name}.log", "ab")
        # One failed attempt is one death: the configuration the README recommends for montaged.
        full_env = {k: v for k, v in os.environ.items() if k != "MONTAGED_TEST_HOOKS"}
        full_env.update({"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", **(env or {})})
        self.procs[name] = subprocess.Popen([*(prefix or []), sys.executable, "-m", *args], cwd=REPO, env=full_env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start_scheduler(self) -> None:
        self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"])

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 30, what="the Dask scheduler listening")

    def start_worker(self, name: str, env: dict | None = None, prefix: list[str] | None = None) -> None:
        # With a nanny, as in production: the nanny restarts a crashed worker process. The tests
        # kill a worker's whole process group (nanny and worker), as when its machine is lost.
        self._spawn(name, ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--nworkers", "1",
                           "--no-dashboard", "--name", name], env=env, prefix=prefix)

    def client(self) -> Client:
        if self._client is None or self._client.status != "running":
            self._client = Client(self.address, timeout=10, set_as_default=False)
        return self._client

    def worker_address(self, name: str, timeout: float = 30) -> str:
        def find():
            workers = self.client().scheduler_info(n_workers=-1)["workers"]
            return next((addr for addr, w in workers.items() if w.get("name") == name), None)

        return wait_until(find, timeout, what=f"Dask worker {name} registered")

    def starts(self) -> list[dict]:
        """The montaged wrapper's 'start' events: which job ran on which worker."""
        return [msg for _, msg in self.client().get_events("montaged") if msg.get("event") == "start"]

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close(timeout=2)
            self._client = None

    def stop(self) -> None:
        self.close_client()
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    c.start_scheduler()
    yield c
    c.stop()


def dask_config(tmp_path: Path, root: Path, address: str, fallback: str = "local") -> Path:
    cfg = write_config(tmp_path / "montaged.toml", watch=[root], output=tmp_path / "previews", state=tmp_path / "state")
    # write_config ends with the [daemon] table: keys for [workers] go in a table of their own.
    text = cfg.read_text().replace("[workers]\n", f'[workers]\nexecutor = "dask"\ndask_scheduler = "{address}"\ndask_fallback = "{fallback}"\n', 1)
    cfg.write_text(text)
    return cfg


def executor_info(daemon: DaemonProcess) -> dict:
    return daemon.status()["daemon"].get("executor") or {}


def analysed(daemon: DaemonProcess) -> dict[str, dict]:
    return {j["path"]: j for j in daemon.jobs("done") if j["kind"] == "analyze"}


def wait_analysed(daemon: DaemonProcess, paths, timeout: float = 60) -> dict[str, dict]:
    want = {str(p) for p in paths}
    return wait_until(lambda: (lambda done: done if want <= set(done) else None)(analysed(daemon)), timeout,
                      what=f"{sorted(Path(p).name for p in want)} analysed")


def drop(track: Path, dest: Path) -> Path:
    """Copy under a temporary name and rename, so the watcher sees one complete file."""
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copy(track, tmp)
    os.replace(tmp, dest)
    return dest


def test_jobs_run_on_dask_survive_a_dead_worker_and_a_lost_scheduler(cluster, tmp_path, tracks):
    root = tmp_path / "ingest"
    root.mkdir()
    cluster.start_worker("a", env={"MONTAGED_TEST_HOOKS": "1"})  # __hang__ files hang here only
    addr_a = cluster.worker_address("a")
    daemon = DaemonProcess(dask_config(tmp_path, root, cluster.address), tmp_path / "state")
    daemon.start()
    try:
        info = wait_until(lambda: (lambda i: i if i.get("analysis_on") == "dask" and i.get("workers") == 1 else None)(executor_info(daemon)),
                          30, what="the daemon using the Dask cluster")
        assert info["kind"] == "dask" and info["scheduler"] == cluster.address and info["error"] is None
        assert info["allowed_failures"] == 0

        # A job hangs on worker a; worker b joins and takes the next jobs.
        hang = drop(tracks[0], root / "__hang__song.wav")
        wait_until(lambda: any(s["worker"] == addr_a for s in cluster.starts()), 30, what="the hanging job started on worker a")
        cluster.start_worker("b")
        addr_b = cluster.worker_address("b")
        wait_until(lambda: executor_info(daemon).get("workers") == 2, 20, what="the daemon seeing worker b")
        normal = [drop(tracks[i], root / f"song{i}.wav") for i in (1, 2)]
        done = wait_analysed(daemon, normal)
        assert all(done[str(p)]["attempts"] == 0 for p in normal)

        # Worker a's machine is lost mid-job: one attempt charged, the job finishes on b.
        cluster.kill("a")
        done = wait_analysed(daemon, [hang])
        assert done[str(hang)]["attempts"] == 1, done[str(hang)]

        starts = cluster.starts()
        by_job = {}
        for s in starts:
            by_job.setdefault(s["job"], []).append(s["worker"])
        assert by_job[done[str(hang)]["id"]] == [addr_a, addr_b], by_job
        for p in normal:
            assert by_job[done[str(p)]["id"]] == [addr_b], f"{p.name} did not run on the Dask worker b: {by_job}"
        wait_until(lambda: executor_info(daemon).get("workers") == 1, 20, what="status showing one worker left")

        # The scheduler goes away: status says so, and jobs run on the local pool meanwhile.
        cluster.close_client()
        cluster.kill("scheduler")
        cluster.kill("b")
        info = wait_until(lambda: (lambda i: i if i.get("analysis_on") == "local" else None)(executor_info(daemon)),
                          30, what="the fallback to the local pool")
        assert "Dask scheduler" in info["error"] and "local process pool" in info["error"], info
        assert daemon.status()["daemon"]["executor"]["scheduler"] == cluster.address
        local = [drop(tracks[i], root / f"local{i}.wav") for i in (3, 4)]
        wait_analysed(daemon, local)

        # The scheduler comes back (same address, a new worker): the daemon uses it again.
        cluster.start_scheduler()
        cluster.start_worker("c")
        addr_c = cluster.worker_address("c")
        wait_until(lambda: executor_info(daemon).get("analysis_on") == "dask", 30, what="the daemon back on Dask")
        assert executor_info(daemon)["error"] is None
        back = drop(tracks[5], root / "back.wav")
        done = wait_analysed(daemon, [back])
        assert [s["worker"] for s in cluster.starts() if s["job"] == done[str(back)]["id"]] == [addr_c]
        assert not daemon.jobs("failed") and not daemon.jobs("quarantined")
        log = daemon.output()
        assert "lost the connection to the Dask scheduler" in log or "cannot reach the Dask scheduler" in log
    finally:
        daemon.stop()


def _can_hide_folders() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_hide_folders(), reason="needs unshare with mount namespaces to hide a folder from one worker")
def test_a_worker_that_cannot_see_the_media_gets_no_jobs(cluster, tmp_path, tracks):
    root = tmp_path / "ingest"
    root.mkdir()
    drop(tracks[0], root / "first.wav")  # what the check compares: the blind worker sees an empty folder
    cluster.start_worker("good")
    # The NFS-not-mounted mistake: an empty folder at the watch root's path on that machine.
    blind = ["unshare", "--mount", "--map-root-user", "sh", "-c", f'mount -t tmpfs none "{root}" && exec "$0" "$@"']
    cluster.start_worker("blind", prefix=blind)
    good, blind_addr = cluster.worker_address("good"), cluster.worker_address("blind")
    daemon = DaemonProcess(dask_config(tmp_path, root, cluster.address), tmp_path / "state")
    daemon.start()
    try:
        info = wait_until(lambda: (lambda i: i if i.get("refused_workers") else None)(executor_info(daemon)), 30,
                          what="the blind worker refused")
        assert info["refused_workers"] == [blind_addr]
        assert blind_addr in info["error"] and "first.wav" in info["error"], info["error"]
        assert info["analysis_on"] == "dask" and info["threads"] == 1
        assert f"Dask worker {blind_addr} gets no jobs" in daemon.output()
        more = [drop(tracks[i], root / f"song{i}.wav") for i in (1, 2, 3)]
        done = wait_analysed(daemon, [root / "first.wav", *more])
        ids = {j["id"] for j in done.values()}
        workers = {s["worker"] for s in cluster.starts() if s["job"] in ids}
        assert workers == {good}
    finally:
        daemon.stop()


def test_unreachable_scheduler_falls_back_or_waits(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    for fallback, slots in (("wait", 0), ("local", 2)):
        settings = settings_from_dict({
            "paths": {"watch": [str(tmp_path / "ingest")], "output": str(tmp_path / "out"), "state": str(tmp_path / "state")},
            "workers": {"executor": "dask", "dask_scheduler": address, "dask_fallback": fallback, "processes": 2},
        })
        ex = DaskExecutor(settings, connect_timeout=0.5)
        try:
            assert ex.free_slots("analysis") == 0  # the first connection attempt is not over yet
            wait_until(lambda: ex.info()["error"] and "cannot reach" in ex.info()["error"], 15, what="the connection failure reported")
            info = ex.info()
            assert info["connected"] is False and info["workers"] == 0 and info["scheduler"] == address
            assert info["analysis_on"] == ("waiting" if fallback == "wait" else "local")
            assert ex.free_slots("analysis") == slots
            assert ex.free_slots("render") == 1
        finally:
            assert ex.shutdown(wait=False) == []
