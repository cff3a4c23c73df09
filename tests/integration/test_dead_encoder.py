"""A dead encoder behind a live multiplexer: the UDP feed keeps arriving at its bit rate,
but for 10 s it carries only tables (PAT, PMT) and null packets -- no audio, no video --
then the media comes back. Real `avmon serve`, a real UDP socket, the clip's own MPEG-TS
bytes (cut mid-PES, as an encoder dies).

What the operator must see: one alarm, ``no_signal``, raised ``d`` after the last media
packet (the tables and padding are not signal) and cleared when media flows again; not a
damaged last picture (the demuxer's leftovers), not silence or A/V drift spanning the
outage, not decode errors while the decoder waits for a key frame after it.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from service.synth import SynthSpec, synthesize
from tests.integration.service_proc import EventFeed, Service, free_port, wait_for

D = 5.0  # no_signal's d
TS = 188
NULL = bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184
CLIP_S, OUTAGE_S = 24.0, 10.0


def _pid(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


class DeadEncoderFeed:
    """Sends the clip's packets at its mean rate; after ``media_s`` only PAT/PMT (every
    ~0.1 s) and null packets for ``outage_s``, then the rest of the clip."""

    def __init__(self, clip: Path, port: int, media_s: float, outage_s: float) -> None:
        data = clip.read_bytes()
        self.packets = [data[i : i + TS] for i in range(0, len(data), TS)]
        self.rate = len(self.packets) / CLIP_S  # packets per second
        self.cut = int(media_s * self.rate)  # mid-PES, wherever it falls
        self.outage_s = outage_s
        tables = [p for p in self.packets[:500] if _pid(p) in (0, 0x1000)]
        assert tables, "no PAT/PMT in the clip's first packets"
        self.tables = tables[:2]
        self.port = port
        self.stopped = self.resumed = 0.0
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _send(self, sock: socket.socket, packets: list[bytes]) -> None:
        start = time.monotonic()
        for i in range(0, len(packets), 7):  # 7 per datagram, as TS over UDP goes
            ahead = start + i / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            sock.sendto(b"".join(packets[i : i + 7]), ("127.0.0.1", self.port))

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            self._send(sock, self.packets[: self.cut])
            self.stopped = time.time()
            every = max(1, int(self.rate / 10))
            filler = [
                self.tables[(i // every) % 2] if i % every < 1 else NULL
                for i in range(int(self.outage_s * self.rate))
            ]
            self._send(sock, filler)
            self.resumed = time.time()
            self._send(sock, self.packets[self.cut :])
        self.done.set()


def test_a_dead_encoder_behind_a_live_mux_is_one_no_signal(tmp_path: Path) -> None:
    clip = tmp_path / "feed.ts"
    synthesize(SynthSpec(out=clip, duration=CLIP_S, width=640, height=360, audio="speech"))
    svc = Service(tmp_path)
    feed = EventFeed(svc.base)
    try:
        port = free_port(socket.SOCK_DGRAM)
        status, _ = svc.request(
            "POST", "/api/v1/streams", {"name": "mux", "url": f"udp://127.0.0.1:{port}"}
        )
        assert status == 201
        sender = DeadEncoderFeed(clip, port, media_s=10.0, outage_s=OUTAGE_S)
        assert sender.done.wait(CLIP_S + OUTAGE_S + 15)
        time.sleep(3.0)  # the last defects of the clip's end, if any
        events = list(feed.events)
        opened = [(w, d["type"]) for w, kind, d in events if kind == "open"]
        assert [t for _, t in opened] == ["no_signal"], events
        raised = opened[0][0] - sender.stopped
        closed = next(w for w, kind, d in events if kind == "close" and d["type"] == "no_signal")
        cleared = closed - sender.resumed
        print(f"FIGURE dead encoder: no_signal raised {raised:.2f} s after the last media")
        print(f"FIGURE dead encoder: cleared {cleared:.2f} s after media flowed again")
        assert D - 0.5 <= raised <= D + 0.5, raised
        # Clearing waits for the reader to open the source again, whose probe needs a
        # key frame (this clip: one every 2 s), and for a probe started during the outage
        # to give up first: measured 1.1-3.5 s.
        assert 0.0 < cleared <= 8.0, cleared
        assert wait_for(lambda: svc.request("GET", "/api/v1/defects?open=true")[1] == [], 5)
    finally:
        feed.close()
        svc.stop()
