"""Loudness off target: EBU R128 short-term loudness outside target +- tolerance for >= d,
read to 0.1 LU as a meter shows it (a line-up tone at the edge of the range is inside).

Short-term loudness (3 s window) is evaluated every 100 ms. Its window lags the audio,
so when it leaves (or re-enters) the range, the start (or end) is dated back to the level
change itself: the best single change point in the recent 25 ms energy history. Digital
silence (below the -70 LUFS gate) is no evidence either way -- that is ``silence``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from service.detectors.base import Change, Detector, Params
from service.detectors.bs1770 import ABSOLUTE_GATE, LoudnessMeter, TruePeakMeter, dbtp
from service.media.frames import AudioFrame

EVAL_EVERY_S = 0.1
SEARCH_S = 4.0  # history searched for the change point (short-term window + margin)


def change_point(levels_db: np.ndarray) -> int:
    """Index splitting ``levels_db`` into two segments of most different means (least
    squared error); returns the first index of the second segment."""
    n = levels_db.size
    if n < 4:
        return n - 1
    x = levels_db - levels_db.mean()
    csum = np.cumsum(x)[:-1]
    k = np.arange(1, n)
    # Between-segment sum of squares for each split (maximising it minimises the SSE).
    score = csum**2 * n / (k * (n - k))
    return int(np.argmax(score)) + 1


class LoudnessParams(Params):
    d: float = Field(10.0, ge=0.0, le=3600.0)
    target: float = Field(-23.0, ge=-70.0, le=0.0, description="LUFS")
    tolerance: float = Field(5.0, gt=0.0, le=40.0, description="LU either side")
    severity: str = Field("warning", pattern="^(warning|critical)$")


class LoudnessDetector(Detector[LoudnessParams]):
    name = "loudness"
    group = "audio"
    resume_after_s = SEARCH_S  # the short-term window must fill before a level is known
    params_model = LoudnessParams
    wants_audio = True

    def __init__(self, params: LoudnessParams) -> None:
        super().__init__(params)
        self.meter: LoudnessMeter | None = None
        self.peak_meter: TruePeakMeter | None = None
        self.true_peak = 0.0  # highest so far (linear)
        self.state = "ok"  # ok | low | high
        self.blocks_since_eval = 0
        self.t0 = 0.0  # media time of the meter's first sample

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        m = self.meter
        if (
            m is None
            or m.rate != frame.sample_rate
            or m.channels != frame.channels
            or m.layout != frame.layout
        ):
            m = self.meter = LoudnessMeter(frame.sample_rate, frame.channels, layout=frame.layout)
            self.t0 = frame.t
            self.blocks_since_eval = 0
        self._true_peak(frame)
        self.blocks_since_eval += m.push(frame.samples)
        every = round(EVAL_EVERY_S / m.block_s)
        if self.blocks_since_eval < every:
            return []
        self.blocks_since_eval = 0
        st = m.short_term()
        if math.isnan(st) or st <= ABSOLUTE_GATE:
            return []
        p = self.params
        # Judged as a meter shows it, to 0.1 LU (EBU Tech 3341's accuracy), in integer
        # tenths: EBU R68's line-up tone (1 kHz at -18 dBFS, stereo) reads -17.993 LUFS
        # (-17.995 through AAC), a hair past -23 + 5, and raised `loudness` for as long as
        # a feed carried it; FFmpeg's ebur128 shows it as -18.0.
        shown = round(st * 10)
        state = (
            "low"
            if shown < round((p.target - p.tolerance) * 10)
            else "high"
            if shown > round((p.target + p.tolerance) * 10)
            else "ok"
        )
        if state == self.state:
            return []
        t = self._dated_change(m)
        out: list[Change] = []
        if self.state != "ok":
            out.append(Change(t, False))
        if state != "ok":
            details = {
                "short_term_lufs": round(st, 1),
                "target_lufs": p.target,
                "direction": state,
            }
            out.append(Change(t, True, details=details))
        self.state = state
        return out

    def _true_peak(self, frame: AudioFrame) -> None:
        x = frame.samples
        if self.peak_meter is None or self.peak_meter.history.shape[0] != x.shape[0]:
            self.peak_meter = TruePeakMeter(x.shape[0])
        # Oversampling costs: skip blocks that cannot beat the highest so far (the
        # block's sample peak is the one the other audio detectors share).
        if self.peak_meter.bound(float(frame.peak().max())) < self.true_peak:
            self.peak_meter.skip(x)
        else:
            self.true_peak = max(self.true_peak, self.peak_meter.feed_max(x, self.true_peak))

    def readings(self) -> dict[str, float]:
        m = self.meter
        if m is None:
            return {}
        out = {
            "momentary_lufs": m.momentary(),
            "short_term_lufs": m.short_term(),
            "integrated_lufs": m.integrated(),
            "range_lu": m.loudness_range(),
            "true_peak_dbtp": dbtp(self.true_peak),
        }
        return {k: round(v, 2) for k, v in out.items() if math.isfinite(v)}

    def _dated_change(self, m: LoudnessMeter) -> float:
        now = self.t0 + m.blocks_total * m.block_s
        levels = m.history_db(SEARCH_S)
        k = change_point(levels)
        return now - (levels.size - k) * m.block_s

    def integrated(self) -> float | None:
        if self.meter is None:
            return None
        value = self.meter.integrated()
        return None if math.isinf(value) else value
