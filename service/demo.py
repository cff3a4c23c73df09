"""`avmon demo`: the embedded service, a synthetic live source with defects, watched.

A clip with defects every few tens of seconds is synthesized, then sent as live MPEG-TS
over UDP on loopback (paced on its timestamps, looping with continuous timestamps, as a
real encoder would). The service is started in this process, the stream registered over
the REST API, and defects are printed as the event feed reports them.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import uvicorn

from service.api.app import create_app
from service.config import Settings
from service.synth import SynthSpec, parse_injections, synthesize

DEMO_DEFECTS = (
    "black@8-12,freeze@20-24,silence@32-36,channel_silence@42-46:1,"
    "clipping@50-51.5,loudness@56-70:-20"
)
DEMO_LENGTH_S = 75.0


def send_udp(
    path: str,
    url: str,
    stop: threading.Event,
    loop: bool = True,
    skip_s: float = 0.0,
    fmt: str = "mpegts",
    options: dict[str, str] | None = None,
) -> None:
    """Send ``path`` to ``url`` (udp://host:port) in real time, looping forever with
    timestamps that keep increasing (one continuous live stream). ``skip_s``: start that
    far into the clip (mid-GOP: a receiver joins without a keyframe, as on a live feed).
    ``fmt``/``options``: another live muxer (``rtp_mpegts`` to rtp://, ``hls`` to a
    playlist path, ``mpegts`` to a named pipe)."""
    offset = -skip_s
    with av.open(url, "w", format=fmt, options=options or {}) as out:
        streams: dict[int, Any] = {}
        start = time.monotonic()
        while not stop.is_set():
            with av.open(path) as inp:
                mapping: dict[Any, Any] = {}
                for s in (*inp.streams.video, *inp.streams.audio):
                    if s.index not in streams:
                        streams[s.index] = out.add_stream_from_template(s)
                    mapping[s] = streams[s.index]
                first: float | None = None
                spans: dict[Any, tuple[float, float]] = {}  # per stream: first pts, end
                for pkt in inp.demux(*mapping):
                    if stop.is_set():
                        return
                    if pkt.dts is None:
                        continue
                    ts = float(pkt.dts * pkt.time_base)
                    first = ts if first is None else first
                    rel = ts - first
                    if pkt.pts is not None:
                        begin = float(pkt.pts * pkt.time_base)
                        end = float((pkt.pts + (pkt.duration or 0)) * pkt.time_base)
                        low, high = spans.get(pkt.stream, (begin, end))
                        spans[pkt.stream] = (min(low, begin), max(high, end))
                    if rel < skip_s:
                        continue
                    delay = start + offset + rel - 0.5 - time.monotonic()  # 0.5 s head start
                    if delay > 0 and stop.wait(delay):
                        return
                    shift = round(offset / pkt.time_base)
                    pkt.dts += shift
                    if pkt.pts is not None:
                        pkt.pts += shift
                    pkt.stream = mapping[pkt.stream]
                    out.mux(pkt)
            if not loop:
                return
            # The next loop starts where the longest stream ended: its samples (audio,
            # usually) run on without a gap. A gap per loop in the audio timestamps adds
            # up to what a receiver rightly reads as drift (12 ms a loop, when the loop
            # was timed by the last packet's dts plus a video frame).
            offset += max((high - low for low, high in spans.values()), default=1 / 30)
            skip_s = 0.0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(base: str, path: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def _print_events(base: str, stop: threading.Event) -> None:
    with urllib.request.urlopen(base + "/api/v1/events", timeout=3600) as resp:
        for raw in resp:
            if stop.is_set():
                return
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                msg = json.loads(line[6:])
                kind, d = msg["kind"], msg["defect"]
                span = f"{d['start']:7.2f} s" if kind == "open" else f"{d['end']:7.2f} s"
                extra = " ".join(f"{k}={v}" for k, v in d["details"].items())
                word = "RAISED " if kind == "open" else "cleared"
                print(f"{word} {d['type']:<16} at media {span}  {extra}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="avmon-demo-") as tmp:
        clip = Path(tmp) / "demo.ts"
        print("avmon demo: synthesizing a 75 s clip with defects ...", flush=True)
        synthesize(
            SynthSpec(
                out=clip,
                duration=DEMO_LENGTH_S,
                width=640,
                height=360,
                audio="speech",
                injections=parse_injections(DEMO_DEFECTS),
            )
        )
        port = _free_udp_port()
        stop = threading.Event()
        source = f"udp://127.0.0.1:{port}"
        sender = threading.Thread(
            target=send_udp, args=(str(clip), source + "?pkt_size=1316", stop), daemon=True
        )
        # The demo's own sender is on loopback, which sources may not use by default.
        settings = Settings(host="127.0.0.1", port=args.port, source_allowlist=["127.0.0.1/32"])
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=args.port, log_level="warning"
            )
        )
        web = threading.Thread(target=server.run, daemon=True)
        web.start()
        base = f"http://127.0.0.1:{args.port}"
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            print(f"avmon demo: could not start the service on port {args.port}")
            return 1
        created = _post(base, "/api/v1/streams", {"name": "demo", "url": source})
        time.sleep(1.0)  # the stream is listening before the first packet is sent
        sender.start()
        print(f"avmon demo: live source {source} registered as stream {created['id']}")
        print(f"avmon demo: dashboard at {base}/   (Ctrl-C to stop)")
        print(f"avmon demo: defects repeat every {DEMO_LENGTH_S:.0f} s: {DEMO_DEFECTS}", flush=True)
        watcher = threading.Thread(target=_print_events, args=(base, stop), daemon=True)
        watcher.start()
        try:
            end = time.monotonic() + args.duration if args.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            server.should_exit = True
            web.join(10)
    return 0
