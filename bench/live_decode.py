"""The live floor: N looping file streams decoded by PyAV alone at real time, one process.

What any monitor pays before it looks at a frame when it watches N live streams in one
process: one thread per stream, one decoder thread each, every audio and video packet
decoded, each frame released at its media time (like `avmon serve`'s `pace: live`), the
file reopened at its end (like `loop: true`). Nothing is done with the frames. Against a
tight decode loop (one stream decoded as fast as possible) this counts what concurrency
costs: N decoders' state thrashing the caches and a thread switch per paced frame.

    python bench/live_decode.py CLIP N SECONDS    # prints one JSON line

bench/load.py runs it pinned to the same CPUs as `avmon serve` and grows N the same way.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import av

WARM_UP_S = 3.0


def _stream(clip: str, stop: threading.Event, out: dict[str, float]) -> None:
    wall0 = out["wall0"] = time.monotonic()  # media time 0 on the wall clock
    offset = 0.0  # media time continues across loops
    while not stop.is_set():
        with av.open(clip) as container:
            video = container.streams.video[0]
            video.thread_type = "NONE"
            video.codec_context.thread_count = 1
            end = offset
            for packet in container.demux(video, *container.streams.audio[:1]):
                if stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    if not isinstance(frame, av.VideoFrame) or frame.pts is None:
                        continue
                    t = offset + float(frame.pts * video.time_base)
                    end = max(end, t)
                    ahead = wall0 + t - time.monotonic()
                    if ahead > 0.01 and stop.wait(ahead):
                        return
                    out["frames"] += 1
                    out["media_t"] = t
            offset = end + 1 / 30


def run(clip: str, n: int, seconds: float) -> dict[str, float]:
    stop = threading.Event()
    states = [{"frames": 0.0, "media_t": 0.0, "wall0": time.monotonic()} for _ in range(n)]
    for state in states:
        threading.Thread(target=_stream, args=(clip, stop, state), daemon=True).start()
    time.sleep(WARM_UP_S)
    frames0 = sum(s["frames"] for s in states)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    frames1 = sum(s["frames"] for s in states)
    # Lag as avmon reports it: how far the newest frame is behind its place on the wall
    # clock (frames are released at their media time after the stream's start).
    lag = max(max(0.0, wall1 - (s["wall0"] + s["media_t"])) for s in states)
    stop.set()
    return {
        "streams": n,
        "frames": frames1 - frames0,
        "expected_frames": round(30 * (wall1 - wall0) * n),
        "max_lag_s": lag,
        "cpu_per_stream": (cpu1 - cpu0) / (wall1 - wall0) / n,
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
