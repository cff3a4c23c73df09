"""A runner on a live source dates what it finds by when its media arrived, as the media
that reached it with the least delay says -- not by its first frame, which waited for
the source to be probed or, on HLS, came in a burst of the segments already listed (the
whole timeline was then dated seconds in the future). Two runners on the same feed (an
owner and its successor) then agree, and a defect one opens and the other closes lasts
as long on the wall as in the media. Real sender processes (MPEG-TS over HTTP; FFmpeg's
hls muxer, 1 s segments, six listed), real PyAV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from service.media.decoder import MediaItem
from service.media.frames import VideoFrame
from service.pipeline.lifecycle import DefectEvent
from service.pipeline.runner import StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.integration.live_http import LiveHttpSource
from tests.integration.service_proc import wait_for
from tests.integration.test_no_signal_sources import HLS_OPTIONS, Folder, Sender
from tests.pipeline.runners import run_to_the_end

HEAD_START_S = 0.5  # the senders send this far ahead of their clock (service.demo.send_udp)
BLACK_FROM, BLACK_TO, CLIP_S = 3.0, 6.0, 8.0
# How late a defect may be dated: decoding, 0.35 s. On HLS also how late the client
# fetches a listed segment: FFmpeg's hls demuxer reloads the playlist one segment's
# duration after its last load, so its lag behind each listing keeps the phase it
# joined at, anywhere in [0, target duration) (2 s here: the clip's GOP), and the
# least-delayed media a runner sees is that late. Quiet: +1.2-1.3 s; on one core
# beside two busy loops, 3 of 10 runs +1.63 to +2.12 s (the sender's listings on time).
TARGET_DURATION_S = 2.0
# A frame's analysis when starved: slower than 30 fps, so frames queue. Dated by when
# the analyser got to them, the run came out +0.70 s late; by when read, +0.21 s.
STARVED_FRAME_S = 0.04
LATE_S = {"http": 0.35, "hls": TARGET_DURATION_S + 0.35}


def _source(kind: str, clip: Path, tmp: Path) -> tuple[str, float, list[Any]]:
    """(URL, wall clock of the clip's first media, things to close)."""
    if kind == "http":
        live = LiveHttpSource(clip)
        return live.url, live.started, [live]
    root = tmp / "hls"
    root.mkdir()
    sender = Sender(clip, str(root / "live.m3u8"), "hls", HLS_OPTIONS)
    folder = Folder(root)
    return f"http://127.0.0.1:{folder.port}/live.m3u8", sender.started, [folder, sender]


def _starve(runner: StreamRunner) -> None:
    """Make the analyser slower than the frame rate from the first frame on, as on a
    starved core: every frame it gets has waited in the full queue (~1 s) and the
    newest are dropped. (Starved only later, the prompt early frames set the mapping.)"""
    feed = runner.analyzer.feed

    def hold() -> None:  # the analyser's first task: wait until the reader has media
        wait_for(lambda: runner.last_packet_wall is not None, 10)
        time.sleep(STARVED_FRAME_S * 30)

    def slow_feed(item: MediaItem) -> list[DefectEvent]:
        if isinstance(item, VideoFrame):
            time.sleep(STARVED_FRAME_S)
        return feed(item)

    runner.analyzer.feed = slow_feed  # type: ignore[method-assign]
    runner.call_soon(hold)


@pytest.mark.parametrize(
    ("kind", "starved"),
    [("http", False), ("hls", False), ("http", True)],
    ids=["http", "hls", "http, analyser starved"],
)
def test_a_live_defect_is_dated_when_its_media_arrived(
    make_clip: ClipFactory, tmp_path: Path, kind: str, starved: bool
) -> None:
    clip, _ = make_clip(f"black@{BLACK_FROM:g}-{BLACK_TO:g}", duration=CLIP_S, size="320x180")
    url, started, closing = _source(kind, clip, tmp_path)
    seen: list[tuple[float, float]] = []  # (dated, told at) per black run opened
    runner: StreamRunner | None = None

    def on_event(r: StreamRunner, ev: DefectEvent, _: bytes | None) -> None:
        if ev.kind == "open":
            seen.append((r.wall_of(ev.defect.start), time.time()))

    try:
        # Join mid-GOP; on HLS with six segments listed (a burst of 6 s on joining).
        time.sleep(max(0.0, started + (6.5 if kind == "hls" else 0.6) - time.time()))
        spec = StreamSpec(id="s1", name="cam", url=url, detectors=["black"])
        runner = StreamRunner(spec, on_event)
        if starved:
            _starve(runner)
        runner.start()
        # The run of the clip's second loop: the runner has been live for seconds by then.
        produced = started + CLIP_S + BLACK_FROM - HEAD_START_S
        assert wait_for(lambda: any(abs(d - produced) < 3.0 for d, _ in seen), 25), seen
        if kind == "hls":  # the bound assumes the playlist's target duration
            playlist = (tmp_path / "hls" / "live.m3u8").read_text()
            assert f"#EXT-X-TARGETDURATION:{TARGET_DURATION_S:g}" in playlist, playlist
        dated = next(d for d, _ in seen if abs(d - produced) < 3.0)
        print(f"FIGURE {kind}{' starved' * starved}: dated {dated - produced:+.2f} s after sent")
        assert -0.1 < dated - produced < LATE_S[kind], (dated - produced, seen)
        assert all(d <= t for d, t in seen), seen  # never dated after it was told
    finally:
        if runner is not None:
            # Waited for: a reader still in a network read holds its decoder open (and
            # counted by the decode-threads policy, which a later test reads).
            runner.stop(wait=15.0)
        for c in closing:
            c.close()


def test_a_paced_file_dates_its_media_when_due_never_before(make_clip: ClipFactory) -> None:
    """A paced file releases what is due within PACE_SLACK_S (40 ms) at once, so the
    reader and the analyser wake once a burst, not once a frame; each item is still
    dated when it was due. Dated when released, audio frames and pictures came out up to
    40 ms early: wall-clock times of what they show (defects, lag) with them."""
    clip, _ = make_clip("", duration=3.0, size="320x180")
    seen: list[tuple[float, float, str]] = []  # (media time, arrived, kind)
    spec = StreamSpec(id="s1", name="cam", url=str(clip), detectors=["black", "silence"])
    runner = StreamRunner(spec, lambda *_: None)  # pace "live": the default
    feed = runner.analyzer.feed

    def record(item: MediaItem) -> list[DefectEvent]:
        kind = type(item).__name__
        seen.append((item.t, getattr(item, "arrived", 0.0), kind))
        return feed(item)

    runner.analyzer.feed = record  # type: ignore[method-assign]
    run_to_the_end(runner)
    media = [(t, arrived) for t, arrived, kind in seen if kind in ("VideoFrame", "AudioFrame")]
    assert len(media) > 100, seen[:5]
    (t0, wall0), *rest = media
    # Late is possible (a busy machine); early is not: at most 2 ms of clock rounding.
    early = max((t - t0) - (arrived - wall0) for t, arrived in rest)
    assert early < 0.002, f"an item dated {early * 1000:.0f} ms before it was due"
    kinds = {kind for _, _, kind in seen}
    assert {"VideoFrame", "AudioFrame"} <= kinds, kinds
