"""Process CPU of decoding one clip's video with one decoder thread vs frame threads.

Interleaved rounds in one run, minimum per variant (a shared machine is noisy). What
``AVMON_DECODE_THREADS=auto`` trades: frame threads decode faster in wall time but may
spend more CPU per frame than one thread.

    python bench/decode_threads.py CLIP [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.media.decoder import MediaReader

VARIANTS = {"NONE": "one thread", "AUTO": "frame threads"}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in VARIANTS}
    for i in range(args.rounds):
        for kind in list(VARIANTS)[:: 1 if i % 2 == 0 else -1]:
            cpu0, wall0 = _cpu(), time.monotonic()
            with MediaReader(args.clip, threads=kind, want_audio=False) as reader:
                frames = sum(1 for _ in reader.frames())
            runs[kind].append((_cpu() - cpu0, time.monotonic() - wall0, frames))
    for kind, name in VARIANTS.items():
        cpu, wall, frames = min(runs[kind])
        print(f"{name:<14} CPU {cpu:.2f} s  wall {wall:.2f} s  frames {frames}")
    ratio = min(runs["AUTO"])[0] / min(runs["NONE"])[0]
    print(f"frame threads / one thread, CPU: {ratio:.2f}")


if __name__ == "__main__":
    main()
