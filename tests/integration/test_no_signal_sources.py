"""no_signal per source type (issue 11): a live source that stalls -- the sending process
frozen with SIGSTOP, its socket, pipe or playlist left open -- raises ``no_signal`` d
(5 s) after its last packet; when it resumes (SIGCONT) the alarm clears as soon as media
flows again. Real `avmon serve`, real sender processes muxing with FFmpeg:

- RTP (``rtp_mpegts`` to rtp://);
- HLS (FFmpeg's live ``hls`` muxer writing 2 s segments, served over HTTP): media flows
  again only when the next segment is complete and the playlist lists it;
- a file stuck mid-read (a named pipe whose writer stops writing without closing it, as a
  hung network mount does);
- RTSP (GStreamer's gst-rtsp-server, ``rtsp_server.py``: H.264 over RTP, interleaved in
  the RTSP connection as avmon asks), the server process frozen: a camera that hangs.

UDP and a refusing HTTP source are in test_live_service.py.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClipFactory
from tests.integration.service_proc import EventFeed, Service, free_port, wait_for

D = 5.0  # no_signal's d (default)
SENDER = (
    "import sys, json, threading, time; from service.demo import send_udp; "
    "print(time.time(), flush=True); "
    "send_udp(sys.argv[1], sys.argv[2], threading.Event(), fmt=sys.argv[3], "
    "options=json.loads(sys.argv[4]))"
)
HLS_OPTIONS = '{"hls_time": "1", "hls_list_size": "6", "hls_flags": "delete_segments+omit_endlist"}'


class Sender:
    """A child process muxing a clip live (real time, looping) to a URL, path or pipe."""

    def __init__(self, clip: Path, target: str, fmt: str, options: str = "{}") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(clip), target, fmt, options],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.started = float(self.proc.stdout.readline())

    def stall(self) -> float:
        self.proc.send_signal(signal.SIGSTOP)
        return time.time()

    def resume(self) -> float:
        self.proc.send_signal(signal.SIGCONT)
        return time.time()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


class RtspServer(Sender):
    """The RTSP server process (system Python: it has gi), a live test picture."""

    def __init__(self, port: int) -> None:
        script = Path(__file__).with_name("rtsp_server.py")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(script), str(port)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", "the RTSP server did not start"
        self.started = time.time()


class Folder:
    """Serves a directory over HTTP (the HLS playlist and its segments)."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def translate_path(self, path: str) -> str:
        # /channel: the playlist under a name without .m3u8, as some origins serve it
        # (the content type, from the file's name, still says HLS).
        return super().translate_path("/live.m3u8" if path == "/channel" else path)


def _start(kind: str, clip: Path, tmp: Path) -> tuple[str, Sender, list[Any]]:
    """(URL avmon opens, the sender, things to close)."""
    if kind == "rtp":
        port = free_port()
        return (
            f"rtp://127.0.0.1:{port}",
            Sender(clip, f"rtp://127.0.0.1:{port}?pkt_size=1316", "rtp_mpegts"),
            [],
        )
    if kind == "rtsp":
        port = free_port()
        return f"rtsp://127.0.0.1:{port}/live", RtspServer(port), []
    if kind == "hls":
        root = tmp / "hls"
        root.mkdir()
        sender = Sender(clip, str(root / "live.m3u8"), "hls", HLS_OPTIONS)
        assert wait_for((root / "live.m3u8").exists, 15), "no playlist"
        folder = Folder(root)
        return f"http://127.0.0.1:{folder.port}/live.m3u8", sender, [folder]
    pipe = tmp / "feed.ts"
    os.mkfifo(pipe)
    return str(pipe), Sender(clip, str(pipe), "mpegts"), []


@pytest.mark.parametrize("kind", ["rtp", "hls", "pipe", "rtsp"])
def test_no_signal_when_a_source_stalls_and_cleared_when_it_resumes(
    make_clip: ClipFactory, tmp_path: Path, kind: str
) -> None:
    clip, _ = make_clip(duration=10.0, size="320x180")
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_SOURCE_TIMEOUT_S="8")
    feed = EventFeed(service.base)
    url, sender, extras = _start(kind, clip, tmp_path)
    try:
        body = {"name": kind, "url": url, "pace": "asap"}
        status, stream = service.request("POST", "/api/v1/streams", body)
        assert status == 201, stream
        sid = stream["id"]

        def frames() -> int:
            return int(service.request("GET", f"/api/v1/streams/{sid}")[1]["frames"])

        assert wait_for(lambda: frames() > 60, 30), "media never flowed"

        def no_signal(kind: str) -> list[Any]:
            return [e for e in feed.events if e[1] == kind and e[2]["type"] == "no_signal"]

        time.sleep(3.0)  # well into the stream, past any start-up burst
        assert not no_signal("open")
        stalled = sender.stall()
        raised = wait_for(lambda: no_signal("open"), D + 10)
        assert raised, "no_signal not raised"
        after = raised[0][0] - stalled
        print(f"{kind}: no_signal raised {after:.2f} s after the source stalled (d = {D:g} s)")
        # d + 0.5 s from the last packet (the target) plus a shared-CI margin; an
        # HLS client's last packet is the end of the last whole segment, up to 2 s earlier,
        # and that segment's media covers its duration (1 s) from its arrival.
        hls = kind == "hls"
        assert D - (2.5 if hls else 0.5) <= after <= D + 0.5 + 1.0 + (1.0 if hls else 0.0)
        time.sleep(2.0)
        resumed = sender.resume()
        cleared = wait_for(lambda: no_signal("close"), 20)
        assert cleared, "no_signal not closed"
        took = cleared[0][0] - resumed
        print(f"{kind}: no_signal closed {took:.2f} s after the source resumed")
        # Media flows again at once, except HLS: the next 2 s segment must be completed
        # and listed, then the client's playlist reload sees it.
        assert took <= (1.0 if kind != "hls" else 2.0 + 2.0) + 1.0
        assert wait_for(lambda: frames() > 0, 5)
    finally:
        feed.close()
        sender.close()
        for extra in extras:
            extra.close()
        service.stop()


@pytest.mark.parametrize("path", ["live.m3u8", "channel"])
def test_hls_with_6_s_segments_raises_nothing_and_reads_each_segment_once(
    make_clip: ClipFactory, tmp_path: Path, path: str
) -> None:
    """Apple's recommended target duration is 6 s: media comes a segment at a time, 6 s
    apart. With the default 3 s source timeout the reader used to time out while FFmpeg's
    HLS client waited for the next segment: a reconnect per segment, the playlist's last
    segments read again each time (2.4x the frames), and no_signal opened and closed
    every ~6.5 s; and the analyser's queue (1 s of video) dropped most of each segment.
    Now a segment's media covers its duration from its arrival, and the reader waits for
    the analyser. ``channel``: the playlist under a name without ``.m3u8`` is known as
    HLS by its first bytes (one request, asked once) and opened as one."""
    clip, _ = make_clip(duration=30.0, size="320x180")
    root = tmp_path / "hls"
    root.mkdir()
    options = '{"hls_time": "6", "hls_list_size": "5", "hls_flags": "delete_segments+omit_endlist"}'
    sender = Sender(clip, str(root / "live.m3u8"), "hls", options)
    folder = None
    service = Service(tmp_path)  # the default source timeout
    feed = EventFeed(service.base)
    try:
        assert wait_for((root / "live.m3u8").exists, 20), "no playlist"
        folder = Folder(root)
        url = f"http://127.0.0.1:{folder.port}/{path}"
        status, stream = service.request("POST", "/api/v1/streams", {"name": "hls6", "url": url})
        assert status == 201, stream

        def frames() -> int:
            return int(service.request("GET", f"/api/v1/streams/{stream['id']}")[1]["frames"])

        assert wait_for(lambda: frames() > 0, 30), "media never flowed"
        time.sleep(8.0)  # past the join, when the client reads the listed segments at once
        first, start = frames(), time.time()
        time.sleep(36.0)
        read = (frames() - first) / ((time.time() - start) * 30)
        print(f"hls 6 s segments: {read:.2f}x the frames of real time over 36 s")
        assert [e for e in feed.events if e[1] == "open"] == [], feed.events
        assert 0.75 <= read <= 1.35, read  # a segment more or less in the window
        status = service.request("GET", f"/api/v1/streams/{stream['id']}")[1]
        assert status["dropped_frames"] == 0, status
    finally:
        feed.close()
        sender.close()
        if folder is not None:
            folder.close()
        service.stop()
