"""The benchmark harness on tiny media, so that it cannot rot silently: the end-to-end measurement
through the real daemon (2 tiny clips: warm and cold time-to-preview, the scale figures), then
the summary table that ``make bench`` prints, built from those results. No timing assertions:
what is checked is that every figure was measured on real outputs and lands in the table."""

import json

import pytest

from benchmarks import bench_e2e, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    out = base / "results" / "e2e.json"
    rc = bench_e2e.main(["--smoke", "--out", str(out), "--work", str(base / "work"), "--cache", str(base / "cache")])
    assert rc == 0
    return out, json.loads(out.read_text())


def test_e2e_smoke_measures_every_figure(e2e):
    _, doc = e2e
    spec = bench_e2e.SMOKE
    warm = doc["warm"]
    assert len(warm["runs"]) == spec.warm_runs
    seeds = [r["seed"] for r in warm["runs"]]
    assert seeds == sorted(set(seeds)), "every warm run must be a new edit"
    for r in warm["runs"]:
        assert r["seconds"] > 0
        assert r["preview"]["codec"] == "h264" and r["preview"]["audio"] == "aac"
        assert abs(r["preview"]["duration"] - spec.preview_seconds) <= 1.0
    assert warm["seconds"]["min"] <= warm["seconds"]["median"] <= warm["seconds"]["max"]

    cold = doc["cold"]
    assert len(cold["runs"]) == spec.cold_runs
    run0 = cold["runs"][0]
    # The copy is rate limited: it cannot be faster than 40x the media's real time.
    real_time = spec.clips * spec.clip_seconds + spec.track_seconds
    assert run0["copy_seconds"] >= 0.9 * real_time / bench_e2e.COPY_SPEED
    assert run0["since_copy_started"] >= run0["seconds"]
    assert run0["preview"]["codec"] == "h264"

    scale = doc["scale"]
    assert scale["files"] == spec.scale_files
    assert scale["status_cli_ms"]["runs"] == spec.status_runs
    assert scale["status_library_ms"]["median"] > 0
    assert scale["daemon_memory_mib"]["VmRSS"] > 0
    assert scale["processes"] >= 2  # the daemon and at least its analysis workers
    assert scale["idle_cpu_percent"] >= 0
    assert any(scale["observer"])


def test_summary_table_from_the_results(e2e, capsys):
    path, doc = e2e
    assert run.main(["--report-only", "--out", str(path.parent)]) == 0
    summary = json.loads((path.parent / "summary.json").read_text())
    by_figure = {r["figure"].strip(): r for r in summary["rows"]}
    measured = [r for f, r in by_figure.items() if f.startswith(("time-to-preview", "`status --json`", "idle daemon CPU"))]
    assert len(measured) == 4
    assert all(r["met"] in (True, False) for r in measured), measured
    # Peers that did not run are reported as such, never as met.
    video = by_figure["analysis vs PySceneDetect ContentDetector, 1080p30 1-s GOP"]
    assert video["met"] is None and video["measured"] == "not measured"
    assert set(summary["faster_than_seed_system"]) == {"warm", "cold"}
    table = (path.parent / "summary.md").read_text()
    assert table.count("\n| ") >= 6 and ("| met |" in table or "| MISSED |" in table)
    printed = capsys.readouterr().out
    assert "targets met:" in printed
