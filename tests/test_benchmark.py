"""`avmon bench` machinery on a tiny clip: structure and work done, never timings."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from typing import Any

import pytest

from service.benchmark import VARIANTS, print_table, run_bench

FPS, SECONDS = 30, 2.0


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    # Module-scoped: one bench run (three variants + two child processes) serves every test.
    args = argparse.Namespace(source=None, duration=SECONDS, size="320x176", repeat=1, json=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_bench(args) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def test_report_structure(report: dict[str, Any]) -> None:
    assert set(report["variants"]) == set(VARIANTS)
    for name in VARIANTS:
        v = report["variants"][name]
        assert len(v["cpu_s_rounds"]) == 1
        assert v["cpu_s"] > 0 and v["wall_s"] > 0
    assert report["synthesized"] is True
    assert set(report["ratios"]) >= {"avmon_over_decode", "ffmpeg_over_avmon"}
    assert report["machine"]["cpus"] >= 1
    assert "320x176" in report["clip"]["video"]


def test_every_variant_processed_every_frame(report: dict[str, Any]) -> None:
    expected = int(FPS * SECONDS)
    for name in VARIANTS:
        assert report["variants"][name]["video_frames"] == expected, name


def test_ffmpeg_filters_really_ran(report: dict[str, Any]) -> None:
    ffmpeg, decode = report["variants"]["ffmpeg"], report["variants"]["decode"]
    keys = ffmpeg["metadata_keys"]
    assert "lavfi.block" in keys  # blockdetect tags every frame it measured
    assert any(k.startswith("lavfi.r128.") for k in keys)  # ebur128 with metadata=1
    # Every decoded audio sample came out of the audio chain's sink.
    assert decode["audio_samples"] > 0
    assert ffmpeg["audio_samples"] == decode["audio_samples"]


def test_avmon_variant_reports_detector_costs(report: dict[str, Any]) -> None:
    per_frame = report["variants"]["avmon"]["detector_ms_per_video_frame"]
    assert {"black", "freeze", "blockiness", "silence", "loudness"} <= set(per_frame)


def test_memory_children_ran_on_half_and_whole(report: dict[str, Any]) -> None:
    mem = report["memory"]
    short, long = mem["short"], mem["long"]
    assert long["video_frames"] == int(FPS * SECONDS)
    assert 0 < short["video_frames"] < long["video_frames"]
    assert long["media_s"] > 1.5 * short["media_s"]
    for run in (short, long):
        assert run["peak_rss_mb"] >= run["baseline_rss_mb"] > 0


def test_table_renders(report: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    print_table(report)
    text = capsys.readouterr().out
    assert "b/a =" in text and "c/b =" in text and "peak RSS" in text
