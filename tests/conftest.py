from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, write_config


@pytest.fixture
def layout(tmp_path):
    """A watch root, an output root and a state directory, as a daemon test needs them."""
    root = tmp_path / "ingest"
    out = tmp_path / "previews"
    state = tmp_path / "state"
    root.mkdir()
    return {"root": root, "out": out, "state": state, "config": write_config(tmp_path / "montaged.toml", watch=[root], output=out, state=state)}


@pytest.fixture
def daemon(layout):
    """A started daemon on ``layout``; stopped (and its process group killed) after the test."""
    proc = DaemonProcess(layout["config"], layout["state"])
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _no_stray_config(monkeypatch):
    # Tests must never pick up a developer's own configuration.
    monkeypatch.delenv("MONTAGED_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.fixture(scope="session")
def tracks(tmp_path_factory):
    """Eight small, distinct WAV tracks (3 s) to drop into watch folders."""
    from montaged.synth.music import make_track

    folder = tmp_path_factory.mktemp("tracks")
    return [Path(make_track(str(folder / f"track{i}.wav"), bpm=90 + 10 * i, duration=3.0, seed=i, channels=1, sample_rate=22050).path)
            for i in range(8)]
