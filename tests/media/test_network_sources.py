"""Live network sources, for real: MPEG-TS over UDP from a sender process on loopback,
and HLS served over HTTP by a real HTTP server process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest

from service.media.decoder import MediaReader
from service.media.udp_drops import kernel_drops
from tests.conftest import ClipFactory, run_avmon

SENDER = r"""
import socket, sys, time
path, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
data = open(path, "rb").read()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
chunk = 188 * 7
start = time.monotonic()
for i in range(0, len(data), chunk):
    # Pace at the clip's average bit rate, as a live encoder would send it.
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sock.sendto(data[i : i + chunk], ("127.0.0.1", port))
"""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_udp(port: int, duration: float) -> subprocess.Popen[str]:
    """`avmon check` listening on a UDP port, in a child process; returns once it listens
    (a fixed sleep raced the child's start-up on a loaded machine: the sender's first
    packets, with the first keyframe, went to a closed port)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "check",
            f"udp://127.0.0.1:{port}",
            "--json",
            "--duration",
            str(duration),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while kernel_drops(port) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kernel_drops(port) is not None, "avmon check never bound its UDP port"
    return proc


def test_udp_mpegts_live_source_analysed_for_duration(make_clip: ClipFactory) -> None:
    path, _ = make_clip("black@2-5", duration=12.0)
    port = _free_port(socket.SOCK_DGRAM)
    rate = path.stat().st_size / 12.0
    checker = _check_udp(port, duration=7)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(path), str(port), str(rate)])
    try:
        out, err = checker.communicate(timeout=60)
    finally:
        sender.kill()
        sender.wait()
    assert checker.returncode == 0, err
    doc = json.loads(out)
    assert doc["video"]["width"] == 640
    # Joined live: 7 s of media counted from the first frame received.
    assert 6.5 <= doc["duration"] <= 7.5
    assert 195 <= doc["video"]["frames"] <= 215
    blacks = [d for d in doc["defects"] if d["type"] == "black"]
    assert len(blacks) == 1 and abs(blacks[0]["end"] - blacks[0]["start"] - 3.0) <= 0.1


@pytest.fixture
def hls_server(make_clip: ClipFactory, tmp_path: Path):  # type: ignore[no-untyped-def]
    path, truth = make_clip("black@3-6,silence@7-10", duration=14.0)
    site = tmp_path / "site"
    site.mkdir()
    with (
        av.open(str(path)) as inp,
        av.open(
            str(site / "index.m3u8"),
            "w",
            format="hls",
            options={"hls_time": "2", "hls_list_size": "0"},
        ) as out,
    ):
        streams = {
            s: out.add_stream_from_template(s) for s in (inp.streams.video[0], inp.streams.audio[0])
        }
        for pkt in inp.demux(*streams):
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream]
            out.mux(pkt)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/index.m3u8", truth
    server.kill()
    server.wait()


def test_hls_over_http(hls_server) -> None:  # type: ignore[no-untyped-def]
    url, truth = hls_server
    proc = run_avmon("check", url, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["video"]["frames"] == 14 * 30
    got = [(d["type"], d["start"], d["end"]) for d in doc["defects"]]
    assert [g[0] for g in got] == ["black", "silence"], got
    for (_, start, end), want in zip(got, truth["defects"], strict=True):
        assert abs(start - want["start"]) <= 0.1 and abs(end - want["end"]) <= 0.1


def test_udp_source_that_stops_sending_ends_the_check_with_a_warning(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    path, _ = make_clip("", duration=12.0)
    part = tmp_path / "part.ts"
    part.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # ~4 s, then silence
    port = _free_port(socket.SOCK_DGRAM)
    checker = _check_udp(port, duration=30)
    rate = path.stat().st_size / 12.0
    sender = subprocess.run(
        [sys.executable, "-c", SENDER, str(part), str(port), str(rate)], check=True
    )
    out, err = checker.communicate(timeout=60)
    assert sender.returncode == 0
    assert checker.returncode == 0, err
    assert "input ended early: no data for 5 s" in err
    assert 3.0 <= json.loads(out)["duration"] <= 5.0


def test_udp_source_with_no_data_is_a_clear_error() -> None:
    port = _free_port(socket.SOCK_DGRAM)
    proc = run_avmon("check", f"udp://127.0.0.1:{port}", "--duration", "3", timeout=60)
    assert proc.returncode == 3
    assert (
        proc.stderr.strip() == f"avmon: error: udp://127.0.0.1:{port}: no data received within 5 s"
    )


def test_a_playlist_under_another_name_is_asked_once_per_stream_not_per_open(
    hls_server,  # type: ignore[no-untyped-def]
    make_clip: ClipFactory,
    tmp_path: Path,
) -> None:
    """An http(s) URL named neither ``.m3u8`` nor as a media file is asked for its first
    bytes before FFmpeg opens it. The answer travels in the reader's spec, so a reconnect
    (the runner opens again with that spec) costs FFmpeg's request only."""
    assert hls_server  # its site folder holds index.m3u8 and the segments
    site = tmp_path / "site"
    clip, _ = make_clip(duration=2.0, size="320x180")
    counts: dict[str, int] = {}

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

        def translate_path(self, path: str) -> str:
            counts[path] = counts.get(path, 0) + 1
            named = {"/channel": "/index.m3u8", "/feed": "/clip.ts"}
            return super().translate_path(named.get(path, path))

    (site / "clip.ts").write_bytes(clip.read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path, playlist in (("/channel", True), ("/feed", False)):
            with MediaReader(base + path) as first:
                assert first.spec.hls is playlist and first.spec.is_hls is playlist
                assert next(iter(first.frames())) is not None
            assert counts[path] == 2, counts  # the 7-byte question, then FFmpeg's open
            with MediaReader(first.spec) as again:
                assert again.spec.hls is playlist
                assert next(iter(again.frames())) is not None
            assert counts[path] == 3, counts  # not asked again
    finally:
        server.shutdown()
        server.server_close()
