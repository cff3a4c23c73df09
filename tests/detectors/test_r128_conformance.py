"""EBU "mode" conformance: the synthetic signals of EBU Tech 3341 (momentary, short-term,
integrated loudness) and Tech 3342 (loudness range), made here sample for sample, against
the figures those documents require -- ground truth of its own, beside the cross-check
with FFmpeg's ``ebur128`` (test_r128_vs_ffmpeg.py). 48 kHz, 1 kHz sines; a level in dBFS
is the sine's peak. (The programme excerpts of the test set, 7 and 8, are recordings.)"""

from __future__ import annotations

import numpy as np
import pytest

from service.detectors.bs1770 import LoudnessMeter

RATE = 48000
BLOCK = 1024
Steps = list[tuple[float, float]]  # (dBFS, seconds)


def _tone(steps: Steps, gains_db: tuple[float, ...] = (0.0, 0.0)) -> np.ndarray:
    """A 1 kHz sine stepping through ``steps`` (phase continuous), one row per channel,
    each ``gains_db`` from the step's level."""
    levels = np.concatenate([np.full(round(s * RATE), 10 ** (db / 20)) for db, s in steps])
    wave = levels * np.sin(2 * np.pi * 1000 * np.arange(levels.size) / RATE)
    return np.stack([wave * 10 ** (g / 20) for g in gains_db]).astype(np.float32)


def _measure(
    x: np.ndarray, layout: tuple[str, ...] | None = None
) -> tuple[LoudnessMeter, np.ndarray, np.ndarray]:
    """The meter after ``x``; its momentary and short-term readings every block once 3 s
    (the short-term window) have passed."""
    meter = LoudnessMeter(RATE, x.shape[0], layout=layout)
    momentary, short_term = [], []
    for i in range(0, x.shape[1], BLOCK):
        meter.push(x[:, i : i + BLOCK])
        if i >= 3 * RATE:
            momentary.append(meter.momentary())
            short_term.append(meter.short_term())
    return meter, np.array(momentary), np.array(short_term)


@pytest.mark.parametrize(
    ("case", "steps", "want"),
    [
        ("3341-1", [(-23.0, 20.0)], -23.0),
        ("3341-2", [(-33.0, 20.0)], -33.0),
        ("3341-3", [(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),
        # -72 dBFS is under the absolute gate, -36 under the relative one
        (
            "3341-4",
            [(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)],
            -23.0,
        ),
        ("3341-5", [(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], -23.0),
    ],
)
def test_integrated_loudness_of_tech_3341s_signals(case: str, steps: Steps, want: float) -> None:
    meter, momentary, short_term = _measure(_tone(steps))
    assert meter.integrated() == pytest.approx(want, abs=0.1), case
    if len(steps) == 1:  # a steady tone: momentary and short-term read the same, throughout
        assert np.abs(momentary - want).max() <= 0.1, case
        assert np.abs(short_term - want).max() <= 0.1, case


@pytest.mark.parametrize("surrounds", [("BL", "BR"), ("SL", "SR")])
def test_five_channels_weigh_the_surrounds_as_tech_3341_case_6(surrounds: tuple[str, str]) -> None:
    """L and R at -28 dBFS, C at -24, Ls and Rs at -30 (weighed +1.5 dB): -23.0 LUFS,
    whichever names the layout gives the surrounds."""
    x = _tone([(0.0, 20.0)], gains_db=(-28.0, -28.0, -24.0, -30.0, -30.0))
    meter, _, _ = _measure(x, layout=("FL", "FR", "FC", *surrounds))
    assert meter.integrated() == pytest.approx(-23.0, abs=0.1)


def test_short_term_of_tech_3341_case_9_reads_steady() -> None:
    """1.34 s at -20 dBFS and 1.66 s at -30, twenty times: every 3 s window holds one of
    each, so short-term loudness reads -23.0 throughout."""
    _, _, short_term = _measure(_tone([(-20.0, 1.34), (-30.0, 1.66)] * 20))
    assert np.abs(short_term - -23.0).max() <= 0.1


def test_momentary_of_tech_3341_case_12_reads_steady() -> None:
    """0.18 s at -20 dBFS and 0.22 s at -30, repeated: every 400 ms window holds one of
    each, so momentary loudness reads -23.0 throughout."""
    _, momentary, _ = _measure(_tone([(-20.0, 0.18), (-30.0, 0.22)] * 50))
    assert np.abs(momentary - -23.0).max() <= 0.1


@pytest.mark.parametrize(
    ("case", "steps", "want"),
    [
        ("3342-1", [(-20.0, 20.0), (-30.0, 20.0)], 10.0),
        ("3342-2", [(-20.0, 20.0), (-15.0, 20.0)], 5.0),
        ("3342-3", [(-40.0, 20.0), (-20.0, 20.0)], 20.0),
        (
            "3342-4",
            [(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)],
            15.0,
        ),
    ],
)
def test_loudness_range_of_tech_3342s_signals(case: str, steps: Steps, want: float) -> None:
    """Tech 3342 allows +-1 LU; held to 0.1 (as against FFmpeg)."""
    meter, _, _ = _measure(_tone(steps))
    assert meter.loudness_range() == pytest.approx(want, abs=0.1), case
