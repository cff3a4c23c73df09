"""Blockiness: block-boundary gradients well above the stream's own baseline.

A cheap grid ratio in the spirit of FFmpeg's blockdetect (Muijs & Kirenko): on a band of
sampled rows (and columns), the mean absolute gradient across block boundaries (every
4th, 8th and 16th pixel) divided by the mean gradient elsewhere. Natural pictures score
about 1; visible blocking scores well above. Content moves the score, so a run is raised
when it is well above the stream's own baseline (a low percentile of recent seconds),
not above a fixed number. Flat pictures (black, slates) carry no evidence and are skipped.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import Field

from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame

PERIODS = (4, 8, 16)
INNER = {p: [i for i in range(1, p - 1, 2) if (i + 1) % 8] for p in PERIODS}
MAX_SCORE = 50.0
BAND = 32  # rows (and columns) sampled per frame
CLIP = 24  # per-pixel gradient cap (8-bit): strong edges must not dominate the ratio
SMOOTH = 5  # running median over scores, so a single clean frame does not break a run
MAX_RATE = 15.0  # scores per second: every other frame at 30 fps keeps timing to ~0.07 s


def grid_ratio(luma: np.ndarray, bit_depth: int = 8) -> float | None:
    """Boundary/non-boundary gradient ratio, max over block periods; None if too flat."""
    h, w = luma.shape
    if h < 32 or w < 32:
        return None
    shift = bit_depth - 8
    rows = luma[h // (2 * BAND) :: max(h // BAND, 1)]
    cols = luma[:, w // (2 * BAND) :: max(w // BAND, 1)]
    best: float | None = None
    num_h, num_v = _profile(rows, 1, shift), _profile(cols, 0, shift)
    for num in (num_h, num_v):
        if num is None:
            continue
        for p in PERIODS:
            n = num.size - (num.size % p)
            if n < 2 * p:
                continue
            folded = num[:n].reshape(-1, p).sum(axis=0)
            edge = folded[p - 1]  # gradient between pixel kp-1 and kp
            # Compare with the other odd positions only (interlacing and 2x scaling make
            # odd and even gradients differ), and not with 8-pixel boundaries.
            inner = folded[INNER[p]].mean()
            # Perfectly flat blocks have no inner gradient at all: floor the divisor.
            r = min(float(edge / max(inner, 0.05 * folded.mean())), MAX_SCORE)
            best = r if best is None else max(best, r)
    return best


def _profile(x: np.ndarray, axis: int, shift: int) -> np.ndarray | None:
    # Widen before differencing: uint8 differences would wrap around.
    wide = x.astype(np.int16) if shift == 0 else (x.astype(np.int32) >> shift)
    g = np.abs(np.diff(wide, axis=axis))
    np.minimum(g, CLIP, out=g)
    prof = g.sum(axis=1 - axis)
    # Mean gradient below ~0.5 code values per pixel: a flat picture, no evidence.
    if prof.sum() < 0.5 * g.size:
        return None
    return prof.astype(np.float64)


class BlockinessParams(Params):
    d: float = Field(1.0, ge=0.0, le=3600.0)
    factor: float = Field(1.35, gt=1.0, le=10.0, description="score / baseline to raise")
    margin: float = Field(0.3, ge=0.0, le=10.0, description="and score - baseline at least")
    baseline_window_s: float = Field(120.0, ge=5.0, le=3600.0)
    initial_baseline: float = Field(1.1, gt=0.0, le=10.0)
    severity: str = Field("warning", pattern="^(warning|critical)$")


class BlockinessDetector(Detector[BlockinessParams]):
    name = "blockiness"
    group = "video"
    resume_after_s = 1.0  # the running median settles over a few frames
    params_model = BlockinessParams
    wants_video = True

    def __init__(self, params: BlockinessParams) -> None:
        super().__init__(params)
        self.recent: deque[tuple[float, float]] = deque(maxlen=SMOOTH)  # (t, score)
        self.seconds: deque[float] = deque()  # per-second median scores
        self.second_start: float | None = None
        self.second_scores: list[float] = []
        self.active = False
        self.last_eval = -1e9

    @property
    def baseline(self) -> float:
        if len(self.seconds) < 10:
            return self.params.initial_baseline
        # A low percentile: blocky stretches (the defect) must not raise the baseline.
        return float(np.percentile(np.fromiter(self.seconds, float), 20))

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.t - self.last_eval < 0.9 / MAX_RATE and frame.t >= self.last_eval:
            return []
        self.last_eval = frame.t
        score = grid_ratio(frame.luma, frame.bit_depth)
        if score is None:
            return []
        self._learn(frame.t, score)
        self.recent.append((frame.t, score))
        smoothed = float(np.median([s for _, s in self.recent]))
        base = self.baseline
        blocky = smoothed >= base * self.params.factor and smoothed - base >= self.params.margin
        if blocky == self.active:
            return []
        self.active = blocky
        # The running median lags the change by half its window: date it back.
        t = self.recent[-(len(self.recent) + 1) // 2][0] if len(self.recent) > 1 else frame.t
        details = {"score": round(smoothed, 3), "baseline": round(base, 3)} if blocky else {}
        return [Change(t, blocky, details=details)]

    def _learn(self, t: float, score: float) -> None:
        if self.second_start is None:
            self.second_start = t
        if t - self.second_start >= 1.0:
            if self.second_scores:
                self.seconds.append(float(np.median(self.second_scores)))
                max_len = int(self.params.baseline_window_s)
                while len(self.seconds) > max_len:
                    self.seconds.popleft()
            self.second_scores = []
            self.second_start = t
        self.second_scores.append(score)
