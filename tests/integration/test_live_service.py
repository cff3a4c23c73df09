"""The embedded service end to end, with real processes: `avmon serve`, a live MPEG-TS
source over UDP (PyAV in a helper process), webhook receivers over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import ClipFactory
from tests.detectors.helpers import write_aac
from tests.integration.service_proc import EventFeed, Service, UdpSender, free_port, wait_for

SECRET = "s3cret"
STANDARD = Webhook("whsec_" + base64.b64encode(SECRET.encode()).decode())


class Receiver:
    """A webhook receiver; ``hang`` seconds of delay before answering each POST."""

    def __init__(self, hang: float = 0.0) -> None:
        self.received: list[tuple[float, dict[str, Any], bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sig = self.headers.get("X-Avmon-Signature", "")
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                # And as a Standard Webhooks receiver checks it (the library, not our code).
                try:
                    STANDARD.verify(body, dict(self.headers.items()))
                    standard = True
                except WebhookVerificationError:
                    standard = False
                outer.received.append(
                    (time.time(), json.loads(body), hmac.compare_digest(sig, want) and standard)
                )
                time.sleep(hang)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receivers():  # type: ignore[no-untyped-def]
    good, hanging = Receiver(), Receiver(hang=30.0)
    yield good, hanging
    good.close()
    hanging.close()


def test_live_udp_stream_defects_no_signal_and_webhooks(
    make_clip: ClipFactory, tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    good, hanging = receivers
    clip, truth = make_clip("black@3-6,silence@8-11", duration=16.0)
    service = Service(
        tmp_path,
        AVMON_WEBHOOK_URLS=f"{hanging.url},{good.url}",
        AVMON_WEBHOOK_SECRET=SECRET,
        # The first open must outlast the sender's start-up, so media time 0 is the
        # clip's first frame (a live join later in the clip shifts every media time).
        AVMON_SOURCE_TIMEOUT_S="8",
    )
    feed = EventFeed(service.base)
    port = free_port()
    sender = None
    try:
        status, stream = service.request(
            "POST", "/api/v1/streams", {"name": "studio-1", "url": f"udp://127.0.0.1:{port}"}
        )
        assert status == 201, stream
        sid = stream["id"]
        assert {u["group"] for u in stream["units"]} == {"video", "audio", "sync"}
        sender = UdpSender(clip, port)
        started = sender.started

        def closed(kind: str) -> list[dict[str, Any]]:
            _, defects = service.request("GET", f"/api/v1/streams/{sid}/defects?open=false")
            return [d for d in defects if d["type"] == kind]

        # Defects in the live source: right types, media times within 0.2 s.
        for want in truth["defects"]:
            got = wait_for(lambda w=want: closed(w["type"]), timeout=30)
            assert got, f"{want['type']} never reported"
            d = got[0]
            assert abs(d["start"] - want["start"]) <= 0.2, d
            assert abs(d["end"] - want["end"]) <= 0.2, d
            assert d["stream_name"] == "studio-1" and d["state"] == "closed"
            assert d["evidence_url"] is not None
        black_open_wall = min(t for t, k, d in feed.events if k == "open" and d["type"] == "black")
        # Raised 2 s (d) after it began at 3 s media, whatever the hanging webhook does.
        assert black_open_wall - started < 3.0 + 2.0 + 2.0
        # The same defects on the SSE feed, open then close.
        kinds = [(k, d["type"]) for _, k, d in feed.events]
        for want in ("black", "silence"):
            assert ("open", want) in kinds and ("close", want) in kinds
        status, info = service.request("GET", f"/api/v1/streams/{sid}")
        assert info["state"] == "running" and info["fps"] > 20 and info["last_frame_at"]

        # The source dies: no_signal d (5 s) after the last packet, plus a CI margin.
        sender.kill()
        killed = time.time()
        ns = wait_for(
            lambda: [e for e in feed.events if e[1] == "open" and e[2]["type"] == "no_signal"], 10
        )
        assert ns, "no_signal not raised"
        print(f"no_signal raised {ns[0][0] - killed:.2f} s after the UDP sender died (d = 5 s)")
        assert ns[0][0] - killed <= 5.0 + 1.5
        # It comes back mid-GOP (the clip's keyframes are 2 s apart; it resumes 0.1 s
        # after one): no_signal closes within ~1 s of the first packet (issue 11: 1 s;
        # margin for a shared CI machine), not 1.9 s later at the first keyframe.
        sender = UdpSender(clip, port, skip_s=0.1)
        back = time.time()
        cleared = wait_for(
            lambda: [e for e in feed.events if e[1] == "close" and e[2]["type"] == "no_signal"], 12
        )
        assert cleared, "no_signal not closed"
        print(f"no_signal closed {cleared[0][0] - back:.2f} s after the UDP sender came back")
        assert cleared[0][0] - back <= 1.0 + 0.5
        assert wait_for(
            lambda: service.request("GET", f"/api/v1/streams/{sid}")[1]["state"] == "running", 10
        )

        # Webhooks: the good receiver got signed open and close events.
        assert wait_for(lambda: len(good.received) >= 4, 10)
        assert all(valid for _, _, valid in good.received)
        got_kinds = {(b["kind"], b["defect"]["type"]) for _, b, _ in good.received}
        assert {("open", "black"), ("close", "black")} <= got_kinds
    finally:
        feed.close()
        if sender is not None:
            sender.kill()
        service.stop()


def test_no_signal_clears_within_a_second_of_a_refusing_source_coming_back(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    """An HTTP source that refuses connections for 16 s: the reconnect backoff has grown
    to 8 s by then, but while no_signal is open the source is tried every second, so the
    alarm clears within ~1 s of the source coming back (not at the next 8-10 s retry)."""
    from tests.integration.live_http import LiveHttpSource

    clip, _ = make_clip(duration=12.0, size="320x180")
    service = Service(tmp_path)
    feed = EventFeed(service.base)
    port = free_port()
    source = None
    try:
        body = {"name": "relay", "url": f"http://127.0.0.1:{port}/live.ts"}
        status, stream = service.request("POST", "/api/v1/streams", body)
        assert status == 201, stream

        def no_signal(kind: str) -> list[Any]:
            return [e for e in feed.events if e[1] == kind and e[2]["type"] == "no_signal"]

        assert wait_for(lambda: no_signal("open"), 15), "no_signal not raised"
        time.sleep(max(0.0, 16.0 - (time.time() - no_signal("open")[0][0] + 5.0)))
        source = LiveHttpSource(clip, port)
        back = source.started
        assert wait_for(lambda: no_signal("close"), 15), "no_signal not closed"
        took = no_signal("close")[0][0] - back
        print(f"no_signal closed {took:.2f} s after a refusing HTTP source came back")
        assert took <= 1.0 + 1.0
    finally:
        feed.close()
        if source is not None:
            source.close()
        service.stop()


def test_an_http_source_is_asked_whether_it_is_a_playlist_once_not_at_every_reconnect(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    """A progressive file over HTTP under a name without an extension: read to its end,
    then opened again (a network source that ended reconnects). Only the first open asks
    for the body's first bytes; the reconnects reuse the answer -- one GET a read."""
    clip, _ = make_clip(duration=2.0, size="320x180")
    body = clip.read_bytes()
    gets: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gets.append(time.time())
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the 7-byte question hangs up early
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = Service(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/feed"
        status, stream = service.request("POST", "/api/v1/streams", {"name": "feed", "url": url})
        assert status == 201, stream

        def frames() -> int:  # read: analysed or dropped by a busy analyser
            got = service.request("GET", f"/api/v1/streams/{stream['id']}")[1]
            return int(got["frames"]) + int(got["dropped_frames"])

        assert wait_for(lambda: frames() >= 6 * 60, 60), "the file was not read six times"
        server.shutdown()  # no more GETs; the reads under way end with the body
        time.sleep(3.0)  # ... and their frames are analysed
        reads = frames() / 60  # 2 s at 30 fps a read
        print(f"{len(gets)} GETs for {reads:.2f} reads")
        # One question, then one GET a read (asked at every open: twice the reads).
        assert len(gets) <= math.ceil(reads) + 1, (len(gets), reads)
    finally:
        server.server_close()
        service.stop()


def _run_to_end(service: Service, name: str, clip: Path) -> tuple[str, list[dict[str, Any]]]:
    """Register ``clip`` read as fast as it decodes; when it has stopped: its id and defects."""
    status, stream = service.request(
        "POST", "/api/v1/streams", {"name": name, "url": str(clip), "pace": "asap"}
    )
    assert status == 201, stream
    sid = stream["id"]
    done = wait_for(
        lambda: service.request("GET", f"/api/v1/streams/{sid}")[1]["state"] == "stopped", 60
    )
    assert done
    _, defects = service.request("GET", f"/api/v1/streams/{sid}/defects")
    return sid, defects


def test_file_stream_asap_metrics_and_lifecycle(make_clip: ClipFactory, tmp_path: Path) -> None:
    clip, _ = make_clip("black@2-5,silence@6-9", duration=12.0)
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true")
    try:
        sid, defects = _run_to_end(service, "vod", clip)
        assert sorted((d["type"], d["state"]) for d in defects) == [
            ("black", "closed"),
            ("silence", "closed"),
        ]
        with urllib.request.urlopen(service.base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert f'avmon_frames_decoded_total{{stream_id="{sid}"}} 360.0' in text
        assert 'avmon_defects_raised_total{type="black"} 1.0' in text
        assert "avmon_units_owned 3.0" in text
        assert "avmon_frame_analysis_seconds_count" in text
        assert "avmon_frame_decode_seconds_count" in text
        # EBU R128 per stream: in the metrics and in the stream's status.
        for series in (
            f'avmon_loudness_lufs{{stream_id="{sid}",window="integrated"}}',
            f'avmon_loudness_lufs{{stream_id="{sid}",window="short_term"}}',
            f'avmon_loudness_range_lu{{stream_id="{sid}"}}',
            f'avmon_true_peak_dbtp{{stream_id="{sid}"}}',
        ):
            assert series in text, series
        loudness = service.request("GET", f"/api/v1/streams/{sid}")[1]["loudness"]
        assert {"momentary_lufs", "integrated_lufs", "range_lu", "true_peak_dbtp"} <= set(loudness)
        assert -70 < loudness["integrated_lufs"] < 0 and loudness["true_peak_dbtp"] < 3
        assert str(clip) not in text  # labels never carry URLs
        status, _ = service.request("DELETE", f"/api/v1/streams/{sid}")
        assert status == 204
        assert service.request("GET", f"/api/v1/streams/{sid}")[0] == 404
        with urllib.request.urlopen(service.base + "/metrics", timeout=10) as resp:
            assert f'stream_id="{sid}"' not in resp.read().decode()
    finally:
        service.stop()


def test_demo_prints_defects_as_they_are_raised() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--port", str(port), "--duration", "16"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"dashboard at http://127.0.0.1:{port}/" in out
    # The demo clip has black at 8-12 s: raised at ~10 s, printed with its media time.
    raised = [line for line in out.splitlines() if line.startswith("RAISED  black")]
    assert raised, out
    assert abs(float(raised[0].split("at media")[1].split()[0]) - 8.0) <= 0.2


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_worker_processes_run_streams_behind_the_same_api(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    clip, truth = make_clip("black@2-5,silence@6-9", duration=12.0)
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_WORKERS="2")
    feed = EventFeed(service.base)
    try:
        assert len(_children(service.proc.pid)) >= 2  # the worker processes
        ids = []
        for name in ("a", "b"):
            status, body = service.request(
                "POST", "/api/v1/streams", {"name": name, "url": str(clip), "pace": "asap"}
            )
            assert status == 201 and body["state"] == "pending", body
            ids.append(body["id"])
        for sid in ids:
            assert wait_for(
                lambda s=sid: (
                    service.request("GET", f"/api/v1/streams/{s}")[1]["state"] == "stopped"
                ),
                60,
            )
            _, defects = service.request("GET", f"/api/v1/streams/{sid}/defects")
            got = sorted((d["type"], d["start"], d["end"]) for d in defects)
            want = sorted((d["type"], d["start"], d["end"]) for d in truth["defects"])
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert g[0] == w[0] and abs(g[1] - w[1]) <= 0.05 and abs(g[2] - w[2]) <= 0.05
            assert service.request("GET", f"/api/v1/streams/{sid}")[1]["frames"] == 360
        assert len([e for e in feed.events if e[1] == "open"]) == 4
        with urllib.request.urlopen(service.base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert f'avmon_frames_decoded_total{{stream_id="{ids[0]}"}} 360.0' in text
        assert service.request("DELETE", f"/api/v1/streams/{ids[0]}")[0] == 204
        assert service.request("GET", f"/api/v1/streams/{ids[0]}")[0] == 404
    finally:
        feed.close()
        service.stop()


def test_a_killed_worker_process_is_noticed_and_restarted(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    clip, _ = make_clip("", duration=8.0, size="320x180")
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_WORKERS="2")
    try:
        status, body = service.request(
            "POST", "/api/v1/streams", {"name": "w", "url": str(clip), "loop": True}
        )
        assert status == 201, body
        sid = body["id"]

        def frames() -> int:
            return int(service.request("GET", f"/api/v1/streams/{sid}")[1]["frames"])

        assert wait_for(lambda: frames() > 30, 30)
        for pid in _children(service.proc.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        killed = frames()
        # Restarted, given the stream again, and analysing: frames move on.
        assert wait_for(lambda: frames() != killed and frames() > 30, 30)
        assert wait_for(lambda: len(_children(service.proc.pid)) >= 2, 10)
        with urllib.request.urlopen(service.base + "/metrics", timeout=10) as resp:
            assert "avmon_worker_restarts_total 2.0" in resp.read().decode()
    finally:
        service.stop()


def _audio_only_clip(path: Path, seconds: float, silent: tuple[float, float]) -> Path:
    """MPEG-TS with one AAC stream (a radio feed): a tone, silent in ``silent``."""
    rate = 48_000
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    tone[(t >= silent[0]) & (t < silent[1])] = 0.0
    write_aac(path, np.stack([tone, tone]), rate, "mpegts")
    return path


def test_an_audio_only_stream_exports_its_detector_metrics(tmp_path: Path) -> None:
    """Detector CPU time (and failures) reach /metrics for a stream with no picture too:
    they used to be exported only when a picture was analysed."""
    clip = _audio_only_clip(tmp_path / "radio.ts", 10.0, (3.0, 7.0))
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true")
    try:
        _, defects = _run_to_end(service, "radio", clip)
        assert [d["type"] for d in defects] == ["silence"]
        spent = _detector_cpu(service)
        assert spent.get("silence", 0.0) > 0 and spent.get("loudness", 0.0) > 0, spent
    finally:
        service.stop()


def _detector_cpu(service: Service) -> dict[str, float]:
    with urllib.request.urlopen(service.base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        line.split('detector="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("avmon_detector_cpu_seconds_total{")
    }


def test_a_live_audio_only_stream_exports_its_detector_metrics_while_it_runs(
    tmp_path: Path,
) -> None:
    """The once-a-second export runs on any input, not only on pictures: a live radio
    feed (paced, looping: its input never ends) shows its detectors' CPU while it runs."""
    clip = _audio_only_clip(tmp_path / "radio.ts", 10.0, (3.0, 7.0))
    service = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true")
    try:
        status, stream = service.request(
            "POST",
            "/api/v1/streams",
            {"name": "radio", "url": str(clip), "pace": "live", "loop": True},
        )
        assert status == 201, stream
        both = wait_for(
            lambda: all(_detector_cpu(service).get(d, 0.0) > 0 for d in ("silence", "loudness")),
            20,
        )
        assert both, _detector_cpu(service)
        _, now = service.request("GET", f"/api/v1/streams/{stream['id']}")
        assert now["state"] == "running", now
    finally:
        service.stop()
