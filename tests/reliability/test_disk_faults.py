"""Disk and permission faults on real file systems: the output root read-only, the output root
full, the state directory on a slow disk. The folder goes `failed` with the reason, nothing
partial is left, and the preview is made once the fault is gone (`montaged retry --failed`).

As root (CI), chmod does not stop anything, so the faults are real mounts: a read-only tmpfs, a
2 MB tmpfs filled up, and an ext4 image on a loop device throttled with the blkio cgroup."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, cli, wait_until
from tests.reliability.conftest import (
    can_mount,
    check_folder_outputs,
    leftovers,
    record,
    rel_config,
    remount,
    tmpfs,
)

pytestmark = pytest.mark.slow


def fill(folder: Path, media) -> None:
    folder.mkdir(parents=True)
    for c in media["clips"][:2]:
        shutil.copy(c, folder / c.name)
    shutil.copy(media["music"], folder / "music.wav")
    (folder / "montage.toml").write_text("duration = 4\nseed = 1\n")


def folder_doc(d, folder: Path):
    return next((f for f in d.status()["folders"] if f["path"] == str(folder)), None)


def wait_folder(d, folder: Path, states, timeout=90):
    def check():
        f = folder_doc(d, folder)
        return f if f and f["state"] in states else None
    return wait_until(check, timeout, interval=0.2, what=f"{folder.name} {states}")


def retry_until_ready(d, cfg, folder: Path, out_dir: Path) -> dict:
    r = cli("retry", "--failed", config=cfg)
    assert r.returncode == 0 and "requeued" in r.stdout, r.stdout + r.stderr
    ready = wait_folder(d, folder, ("ready",))
    assert not check_folder_outputs(out_dir), check_folder_outputs(out_dir)
    assert (out_dir / "preview.mp4").exists() and (out_dir / "preview.edl.json").exists()
    return ready


@contextlib.contextmanager
def readonly_output(out: Path):
    """The output root made read-only for the daemon: a read-only tmpfs as root, chmod otherwise.
    Yields a function that lifts the fault."""
    if os.geteuid() == 0:
        why = can_mount()
        if why:
            pytest.skip(why)
        with tmpfs(out, "4m", readonly=True):
            yield lambda: remount(out, "rw")
    else:
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o555)
        try:
            yield lambda: out.chmod(0o755)
        finally:
            out.chmod(0o755)


def test_read_only_output_fails_the_folder_then_retry_renders(rlayout, small_media):
    root, out = rlayout["root"], rlayout["out"]
    cfg = rel_config(rlayout["config"], watch=[root], output=out, state=rlayout["state"], workers__max_attempts=2)
    with readonly_output(out) as lift, DaemonProcess(cfg, rlayout["state"]) as d:
        folder = root / "trip"
        fill(folder, small_media)
        failed = wait_folder(d, folder, ("failed",))
        assert "read-only file system" in failed["error"].lower() or "permission denied" in failed["error"].lower(), failed
        assert str(out) in failed["error"], failed  # says where
        assert not list(out.iterdir()), "something was written to a read-only output root?"
        assert d.proc.poll() is None
        lift()
        retry_until_ready(d, cfg, folder, out / "trip")
        assert not leftovers(out), leftovers(out)
    record("disk: read-only output", f"folder failed with: {failed['error']!r}; ready after retry")


def test_full_output_fails_the_folder_leaves_nothing_then_retry_renders(rlayout, small_media):
    why = can_mount()
    if why:
        pytest.skip(f"{why}; filling a real file system needs a small tmpfs")
    root, out = rlayout["root"], rlayout["out"]
    cfg = rel_config(rlayout["config"], watch=[root], output=out, state=rlayout["state"], workers__max_attempts=2)
    with tmpfs(out, "2m"), DaemonProcess(cfg, rlayout["state"]) as d:
        # Fill the file system, then free a few KiB: the render starts and runs out of space.
        filler = out / "filler.bin"
        with open(filler, "wb") as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
        os.truncate(filler, max(0, filler.stat().st_size - 8192))
        folder = root / "big"
        fill(folder, small_media)
        failed = wait_folder(d, folder, ("failed",))
        assert "no space left on device" in failed["error"].lower(), failed
        assert [p.name for p in out.rglob("*") if p != filler and p.is_file()] == [], "partial output left behind"
        assert not leftovers(out), leftovers(out)
        assert d.proc.poll() is None
        filler.unlink()
        retry_until_ready(d, cfg, folder, out / "big")
        assert not leftovers(out), leftovers(out)
    record("disk: full output (2 MB tmpfs)", f"folder failed with: {failed['error']!r}; nothing partial; ready after retry")


# ------------------------------------------------------------------------------------------------
# A slow disk under the state directory: an ext4 image on a loop device whose writes the blkio
# cgroup throttles (cgroup v1, root group: it throttles the loop device's own I/O).

BLKIO = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device")


@contextlib.contextmanager
def slow_disk(mountpoint: Path, image: Path, write_iops: int):
    if os.geteuid() != 0 or not BLKIO.exists() or not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
        pytest.skip("a throttled loop device needs root, losetup, mkfs.ext4 and the cgroup-v1 blkio controller")
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    r = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    loop = r.stdout.strip()
    majmin = Path(f"/sys/block/{Path(loop).name}/dev").read_text().strip()
    mounted = False
    try:
        mountpoint.mkdir(parents=True, exist_ok=True)
        for cmd in (["mkfs.ext4", "-q", loop], ["mount", loop, str(mountpoint)]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"{cmd[0]} failed: {r.stderr.strip()}")
        mounted = True
        try:
            BLKIO.write_text(f"{majmin} {write_iops}\n")
        except OSError as exc:
            pytest.skip(f"cannot throttle {loop} with the blkio cgroup: {exc}")
        yield mountpoint
    finally:
        with contextlib.suppress(OSError):
            BLKIO.write_text(f"{majmin} 0\n")
        if mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


def preview_latency(cfg: Path, state: Path, root: Path, name: str, media) -> tuple[float, float]:
    """Seconds from dropping a folder to its preview, and the slowest `status --json` meanwhile."""
    with DaemonProcess(cfg, state) as d:
        folder = root / name
        started = time.monotonic()
        fill(folder, media)
        slowest = 0.0
        while True:
            t = time.monotonic()
            r = cli("status", "--json", config=cfg)
            slowest = max(slowest, time.monotonic() - t)
            assert r.returncode == 0, r.stderr
            f = folder_doc(d, folder)
            if f and f["state"] in ("ready", "failed"):
                break
            assert time.monotonic() - started < 180, "no preview within 180 s"
        assert f["state"] == "ready", f
        assert d.proc.poll() is None
        return time.monotonic() - started, slowest


def test_state_directory_on_a_slow_disk(rlayout, small_media, tmp_path):
    root, out = rlayout["root"], rlayout["out"]
    fast_cfg = rel_config(tmp_path / "fast.toml", watch=[root], output=out, state=tmp_path / "fast-state")
    fast, fast_status = preview_latency(fast_cfg, tmp_path / "fast-state", root, "fast", small_media)
    with slow_disk(tmp_path / "slow", tmp_path / "slow.img", write_iops=20) as mnt:
        state = mnt / "state"
        cfg = rel_config(tmp_path / "slow.toml", watch=[root], output=out, state=state)
        slow, slow_status = preview_latency(cfg, state, root, "slow", small_media)
        assert (state / "montaged.db").exists()
    record("disk: state on a slow disk (loop ext4, 20 write IOPS)",
           f"preview in {slow:.1f} s (fast disk: {fast:.1f} s); slowest status --json {slow_status:.2f} s (fast: {fast_status:.2f} s)")


def fill_up(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with contextlib.suppress(OSError):
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    with contextlib.suppress(OSError):  # the last few blocks too
        with open(filler, "ab") as fh:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
    return filler


def test_full_state_directory_pauses_the_daemon_instead_of_crashing_it(rlayout, tracks):
    why = can_mount()
    if why:
        pytest.skip(f"{why}; filling the state directory needs a small tmpfs")
    root, state = rlayout["root"], rlayout["state"]
    with tmpfs(state, "4m"), DaemonProcess(rlayout["config"], state) as d:
        shutil.copy(tracks[0], root / "before.wav")
        wait_until(lambda: d.status()["files"]["analyzed"] == 1, 60, what="first file analysed")
        filler = fill_up(state)
        for i in (1, 2, 3):
            shutil.copy(tracks[i], root / f"during{i}.wav")
        wait_until(lambda: "waiting for free space" in d.output(), 60, what="the daemon noticing the full disk")
        time.sleep(2.0)
        assert d.proc.poll() is None, f"the daemon died on a full state directory:\n{d.output()}"
        filler.unlink()
        wait_until(lambda: d.status()["files"]["analyzed"] == 4, 90, what="files analysed once space is back")
        assert d.proc.poll() is None
        assert not d.status()["problems"]
    record("disk: full state directory (4 MB tmpfs)", "daemon waits for space instead of crashing; every file analysed after")
