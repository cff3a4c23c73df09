"""Memory of one process with many UDP sources whose decoding cannot keep up.

Starts a real `avmon serve`, registers N udp:// sources on loopback, and has one sender
process push the same MPEG-TS clip to every port at the clip's bit rate. N streams of
360p on this machine are far more than its cores decode, so every decoder falls behind
and FFmpeg's UDP FIFOs fill: the process's RSS must level off (bounded FIFOs, dropped
datagrams counted) instead of growing with time.

    python bench/udp_memory.py [--streams 100] [--seconds 90]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.synth import SynthSpec, synthesize
from tests.integration.service_proc import Service, free_port

SENDER = r"""
import socket, sys, time
path, rate, ports = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
data = open(path, "rb").read()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
chunk, start, sent = 1316, time.monotonic(), 0
while True:
    for i in range(0, len(data), chunk):
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for port in ports:
            sock.sendto(data[i : i + chunk], ("127.0.0.1", port))
        sent += chunk
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=90)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="avmon-udpmem-"))
    clip = tmp / "clip.ts"
    synthesize(SynthSpec(out=clip, duration=10.0, width=640, height=360))
    rate = clip.stat().st_size / 10.0
    svc = Service(tmp, AVMON_MAX_STREAMS=str(args.streams + 1), AVMON_SOURCE_TIMEOUT_S="5")
    ports = [free_port() for _ in range(args.streams)]
    for i, port in enumerate(ports):
        status, body = svc.request(
            "POST", "/api/v1/streams", {"name": f"udp-{i}", "url": f"udp://127.0.0.1:{port}"}
        )
        assert status == 201, body
    time.sleep(2.0)
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(clip), str(rate), *map(str, ports)]
    )
    print(f"{args.streams} sources at {rate * 8 / 1e6:.2f} Mbit/s each")
    print("seconds  rss_MB  frames  dropped  kernel_drops")
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < args.seconds:
            time.sleep(10)
            _, streams = svc.request("GET", "/api/v1/streams")
            frames = sum(s["frames"] for s in streams)
            dropped = sum(s["dropped_frames"] for s in streams)
            with urllib.request.urlopen(svc.base + "/metrics", timeout=30) as resp:
                metrics = resp.read().decode()
            kdrops = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("avmon_udp_kernel_drops_total{")
            )
            print(
                f"{time.monotonic() - t0:7.0f}  {rss_mb(svc.proc.pid):6.0f}  {frames:6d}"
                f"  {dropped:7d}  {kdrops:12.0f}",
                flush=True,
            )
    finally:
        sender.kill()
        svc.stop()
        os.system(f"rm -rf {tmp}")


if __name__ == "__main__":
    main()
