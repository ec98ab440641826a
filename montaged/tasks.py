"""The functions that run inside worker processes (local pool or Dask workers).

They are pure with respect to the state store: a path or a plan in, results out. The daemon's
main process stores what they return.
"""

from __future__ import annotations

import os
from pathlib import Path

from montaged.analysis import Analysis, analyze_path
from montaged.executors import report_progress

# Fault injection for the test suite, active only when MONTAGED_TEST_HOOKS=1 is in the worker's
# environment: a file whose name starts with one of these makes the worker misbehave on purpose.
TEST_HOOKS = {"__exit__": "os._exit", "__hang__": "hang", "__segv__": "SIGSEGV", "__kill__": "SIGKILL", "__oom__": "MemoryError",
              "__noproxy__": "the proxy job alone fails"}
OOM_HOOK_CAP = 4 << 30  # the __oom__ hook never takes more than this, limit or not


def _test_hook(path: str) -> None:
    if os.environ.get("MONTAGED_TEST_HOOKS") != "1":
        return
    name = os.path.basename(path)
    if name.startswith("__exit__"):
        os._exit(1)
    if name.startswith("__hang__"):
        import time

        time.sleep(3600)
    if name.startswith("__segv__"):
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("__kill__"):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("__oom__"):
        # Allocate until the worker's address-space limit (workers.memory_limit_mb) refuses, as
        # a decoder fed a huge frame size would (numpy's MemoryError). Pages are not touched:
        # RLIMIT_AS refuses the mapping itself, and without a limit nothing real is used.
        import numpy as np

        hog = []
        while len(hog) * (64 << 20) < OOM_HOOK_CAP:
            hog.append(np.empty(64 << 20, dtype=np.uint8))
        raise RuntimeError("the __oom__ test hook took 4 GiB without hitting a memory limit")


def analyze_task(path: str) -> Analysis:
    _test_hook(path)
    return analyze_path(path, report_progress)


def proxy_task(path: str, dest: str, height: int) -> str:
    """Make the low-resolution render proxy of a video (written atomically to ``dest``)."""
    from montaged.montage.render import make_proxy

    _test_hook(path)
    if os.environ.get("MONTAGED_TEST_HOOKS") == "1" and os.path.basename(path).startswith("__noproxy__"):
        from montaged.errors import MediaError

        raise MediaError("cannot decode the video for its proxy (test hook)")
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    return str(make_proxy(path, dest, height=height))


def render_task(payload: dict) -> dict:
    """Render a planned preview and write its edit lists. Returns {output name: path}."""
    from montaged.config import PreviewConfig
    from montaged.montage.plan import EditList
    from montaged.montage.preview import write_outputs
    from montaged.montage.render import start_render_processes

    edit = EditList.from_dict(payload["edit"])
    settings = PreviewConfig(**payload["preview"])
    # Even before a short preview that renders in this process: the next long one finds them up.
    start_render_processes(settings.render_processes)
    outputs = write_outputs(edit, Path(payload["folder"]), Path(payload["out_dir"]), settings, progress=report_progress,
                            proxies=payload.get("proxies") or None)
    return {name: str(p) for name, p in outputs.items()}
