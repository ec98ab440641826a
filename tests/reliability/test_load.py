"""Load: thousands of files dropped within a second (symlinks to a few real tracks, with
watch.follow_symlinks on), into folders created at the same moment. No event may be lost: every
file reaches a final state. The daemon's peak memory (VmHWM) and how long `status --json` takes
meanwhile are reported, not asserted tightly (timings on a shared 2-core box are noise).

The default run drops 2,000 files; `make soak` drops 10,000."""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time

import pytest

from montaged.store import Store
from tests.helpers import DaemonProcess, cli, wait_until
from tests.reliability.conftest import SOAK, record, rel_config

pytestmark = pytest.mark.slow

FILES = int(os.environ.get("MONTAGED_LOAD_FILES", 10_000 if SOAK else 2_000))
FOLDERS = 10


def vm_hwm_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_thousands_of_files_at_once_none_lost(rlayout, tracks):
    root = rlayout["root"]
    cfg = rel_config(rlayout["config"], watch=[root], output=rlayout["out"], state=rlayout["state"],
                     watch__follow_symlinks=True, watch__settle_seconds=0.5)
    # The real files live inside the root (links pointing outside are never followed), in a
    # hidden folder so that only the links are candidates.
    src = root / ".src"
    src.mkdir()
    targets = []
    for i, t in enumerate(tracks[:4]):
        targets.append(src / f"t{i}.wav")
        shutil.copy(t, targets[-1])
    with DaemonProcess(cfg, rlayout["state"]) as d:
        pid = d.proc.pid
        idle_rss = vm_hwm_kib(pid)
        baseline = []
        for _ in range(2):  # the same command on the idle daemon: Python start-up is most of it
            t = time.monotonic()
            assert cli("status", "--json", config=cfg).returncode == 0
            baseline.append(time.monotonic() - t)
        timings: list[float] = []
        stop = threading.Event()

        def poll_status():
            while not stop.is_set():
                t = time.monotonic()
                r = cli("status", "--json", config=cfg, timeout=120)
                if r.returncode == 0:
                    timings.append(time.monotonic() - t)
                stop.wait(1.0)

        poller = threading.Thread(target=poll_status, daemon=True)
        poller.start()
        # Most folders are prepared next to the root and moved in at once (a card copied
        # elsewhere, then moved: one event per folder, then a scan); one folder is filled in
        # place, link by link (one event per file).
        per = FILES // FOLDERS
        staging = rlayout["tmp"] / "staging"
        staging.mkdir()
        for f in range(1, FOLDERS):
            (staging / f"load{f}").mkdir()
            for i in range(per):
                # Relative links: they resolve inside the root once moved there.
                os.symlink(f"../.src/{targets[(f * per + i) % len(targets)].name}", staging / f"load{f}" / f"f{i:05d}.wav")
        started = time.monotonic()
        for f in range(1, FOLDERS):
            os.rename(staging / f"load{f}", root / f"load{f}")
        (root / "load0").mkdir()
        for i in range(per):
            os.symlink(targets[i % len(targets)], root / "load0" / f"f{i:05d}.wav")
        dropped = time.monotonic() - started

        def counts():
            with Store(rlayout["state"], readonly=True) as s:
                return dict(s.query("SELECT state, COUNT(*) FROM files GROUP BY state"))

        def done():
            c = counts()
            return c if sum(c.get(s, 0) for s in ("analyzed", "failed", "quarantined")) >= FILES else None

        final = wait_until(done, 600 if SOAK else 300, interval=1.0, what=f"{FILES} files in a final state")
        elapsed = time.monotonic() - started
        stop.set()
        poller.join(130)
        peak = vm_hwm_kib(pid)
        assert d.proc.poll() is None, d.output()
        assert final == {"analyzed": FILES}, final
        jobs = d.jobs()
        assert len([j for j in jobs if j["kind"] == "analyze"]) == len(targets), "the same content was analysed twice"
        doc = d.status()
        assert doc["files"]["analyzed"] == FILES
    record(f"load: {FILES} files (symlinks; {FOLDERS - 1} folders moved in, 1 filled in place) dropped in {dropped:.2f} s",
           f"all {FILES} analysed in {elapsed:.1f} s, 0 lost; daemon peak RSS {peak / 1024:.0f} MiB (idle {idle_rss / 1024:.0f} MiB)")
    if timings:
        record("load: status --json during the load",
               f"{len(timings)} calls, median {statistics.median(timings):.2f} s, max {max(timings):.2f} s "
               f"(idle daemon: {min(baseline):.2f} s)")
