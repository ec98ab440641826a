"""``make demo``: the whole product in one command, on media generated here (no downloads).

1. generates six short clips and a music track (cached in ``.montaged-state/demo-media``);
2. writes ``./montaged.toml`` if there is none (state in ``./.montaged-state``; everything else is
   the built-in defaults: watch ``./ingest``, output ``./previews``);
3. starts ``montaged run`` and copies the media into ``ingest/demo-trip/`` as a card reader would;
4. once everything is analysed, drops ``montage.toml`` and times how long the preview takes;
5. prints the preview's path and ``montaged status``, then stops the daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from montaged.config import load_settings
from montaged.status import status_document

FOLDER = "demo-trip"
CLIPS = [  # (name, seconds, fps, size, frames where a new shot starts)
    ("beach.mp4", 8.0, 30, (640, 360), [80, 170]),
    ("hike.mp4", 7.0, 25, (640, 360), [60, 120]),
    ("market.mp4", 8.0, 30, (640, 360), [50, 130, 190]),
    ("sunset.mp4", 6.0, 30, (640, 360), [90]),
    ("river.mp4", 7.0, 25, (640, 360), [70, 140]),
    ("portrait-street.mp4", 6.0, 30, (360, 640), [60, 120]),
]
MUSIC = ("track.m4a", 116.0, 45.0)  # name, BPM, seconds


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def generate(cache: Path) -> list[Path]:
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, seconds, fps, size, cuts) in enumerate(CLIPS):
        path = cache / name
        if not path.exists():
            make_clip(str(path), duration=seconds, fps=fps, size=size, cuts=cuts, gop=fps, seed=i + 1, noise=0.02)
        paths.append(path)
    name, bpm, seconds = MUSIC
    music = cache / name
    if not music.exists():
        make_track(str(music), bpm=bpm, duration=seconds, seed=7)
    paths.append(music)
    return paths


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the daemon exited ({proc.returncode}) while waiting for {what}; see `montaged logs`")
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out after {timeout:.0f}s waiting for {what}; see `montaged status` and `montaged logs`")


def main() -> int:
    here = Path.cwd()
    config = here / "montaged.toml"
    if not config.exists():
        lines = ['[paths]', 'state = ".montaged-state"']
        if os.geteuid() == 0:
            lines += ["", "[daemon]", "# the demo runs as root here; a real install runs as the montaged user", "allow_root = true"]
        config.write_text("\n".join(lines) + "\n")
        say(f"wrote {config.name} (state in ./.montaged-state; everything else is the built-in defaults)")
    settings = load_settings(config)
    state, ingest, output = settings.paths.state, settings.paths.watch[0], settings.paths.output

    say("generating demo media (six clips, one music track; cached after the first run)")
    media = generate(state / "demo-media")
    folder = ingest / FOLDER
    if folder.exists():
        shutil.rmtree(folder)  # start the story afresh; known content is recognised by its digest
    ingest.mkdir(parents=True, exist_ok=True)

    log = open(state / "demo-daemon.out", "ab")
    daemon = subprocess.Popen([sys.executable, "-m", "montaged", "run", "--config", str(config)], stdout=log, stderr=log)
    try:
        wait_for(lambda: status_document(state)["daemon"]["roots"], 60, "the daemon to start", daemon)
        say(f"daemon running (pid {daemon.pid}); copying {len(media)} files into {folder}")
        folder.mkdir()
        for src in media:
            shutil.copy(src, folder / src.name)
        wanted = {str(folder / p.name) for p in media}

        def all_analysed():
            from montaged.store import Store

            with Store(state, readonly=True) as store:
                if not store.current:
                    return False
                rows = store.query("SELECT path, state, error FROM files WHERE state != 'gone'")
            done = {r["path"]: r for r in rows if r["path"] in wanted and r["state"] in ("analyzed", "failed", "quarantined")}
            return len(done) == len(wanted) and done

        started = time.monotonic()
        done = wait_for(all_analysed, 600, "the analysis", daemon)
        bad = [f"{Path(p).name}: {r['error']}" for p, r in done.items() if r["state"] != "analyzed"]
        if bad:
            say("some files could not be analysed: " + "; ".join(bad))
        say(f"all files analysed {time.monotonic() - started:.1f}s after the copy")

        manifest = folder / settings.preview.manifest
        manifest.write_text('title = "Demo trip"\nmusic = "track.m4a"\nduration = 30\nstyle = "dynamic"\n')
        dropped = time.monotonic()
        say(f"dropped {manifest.relative_to(here)}; waiting for the preview")

        def folder_done():
            for f in status_document(state)["folders"]:
                if f["path"] == str(folder) and f["state"] in ("ready", "failed"):
                    return f
            return None

        result = wait_for(folder_done, 300, "the preview", daemon)
        if result["state"] != "ready":
            say(f"the preview failed: {result['error']}")
            return 1
        say(f"preview ready {time.monotonic() - dropped:.1f}s after the manifest landed:")
        print(result["preview"], flush=True)
        out = output / FOLDER
        for name in ("preview.edl.json", "preview.otio", "preview.edl", "preview.fcpxml", "preview.storyboard.jpg"):
            if (out / name).exists():
                print(f"  {out / name}")
        print(flush=True)
        subprocess.run([sys.executable, "-m", "montaged", "status", "--config", str(config)], check=False)
        return 0
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        say("daemon stopped. Try: montaged status, montaged logs, montaged inspect ingest/demo-trip")


if __name__ == "__main__":
    sys.exit(main())
