"""Blockiness: visible steps on the coding-block grid, well above the stream's own level.

The score (per frame, on a band of sampled rows and of columns) counts *where* the
picture steps, not how much gradient there is: a block boundary shows a visible step
when the gradient across it clearly exceeds the gradients right beside it (flat on both
sides, a jump between: what a coarse quantizer leaves). The score is the fraction of
8-pixel (and 4-pixel, H.264's transform) boundaries that step, minus the same fraction at
positions inside the blocks. Natural pictures step anywhere, so both fractions match and
the score sits near 0; blocking steps on the grid only. A test pattern or a graphic with
edges on the grid scores a steady offset (a bar edge is one boundary among the dozens on
a line) instead of dominating the score, as a summed gradient would let it.

A run is raised when the score is well above the stream's *own* level: a low percentile
of the last two minutes' per-second scores, trusted only after ``learn_s`` seconds of
scores (no raise before: a stream's first seconds say nothing of its normal level).
Limitation: blocking already present for the whole of the first seconds is learned as
the stream's normal until it clears. Flat pictures (black, slates) carry no evidence.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import Field

from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame

BAND = 32  # rows sampled per frame
STRIPES, STRIPE_ROWS = 8, 25  # stripes of rows whose columns are sampled (2 blocks each)
CLIP = 24  # per-pixel gradient cap (8-bit): one strong edge counts as one step
STEP = 2  # a visible step: at least 2 code values (8-bit)...
BESIDE = 1  # ...plus the mean gradient of the pixels beside it (integers: compared exactly)
SMOOTH = 5  # running median over scores, so a single clean frame does not break a run
MAX_RATE = 15.0  # scores per second: every other frame at 30 fps keeps timing to ~0.07 s


def grid_score(luma: np.ndarray, bit_depth: int = 8) -> float | None:
    """Fraction of grid boundaries that step minus that inside blocks (max over both
    orientations, 8- and 4-pixel grids); None if the picture is too flat to tell."""
    h, w = luma.shape
    if h < 32 or w < 32:
        return None
    shift = bit_depth - 8
    rows = luma[h // (2 * BAND) :: max(h // BAND, 1)]
    cols = _column_segments(luma)
    best: float | None = None
    for lines in (rows, cols):
        if shift == 0:  # widened by the subtraction itself: uint8 differences would wrap
            g = np.subtract(lines[:, 1:], lines[:, :-1], dtype=np.int16)
        else:
            g = np.diff(lines.astype(np.int32) >> shift, axis=1)
        np.abs(g, out=g)
        np.minimum(g, CLIP, out=g)
        scores: tuple[float, ...] | None
        # Some steps (0.1% of positions): enough to count where they fall. Blocking on a
        # ramp or on bars is that sparse at 1080p: a few steps, all on the grid.
        if np.count_nonzero(g >= STEP) >= 0.001 * g.size:
            scores = _grid_excess(g)
        elif float(lines.std()) >= 8 * (1 << shift):
            scores = (0.0,)  # smooth ramps, no step anywhere: certainly no blocking
        else:
            scores = None  # flat (black, a plain slate): no evidence either way
        for score in scores or ():
            best = score if best is None else max(best, score)
    return best


def _column_segments(luma: np.ndarray) -> np.ndarray:
    """Vertical lines for the horizontal block boundaries: every 8th column within
    ``STRIPES`` stripes of ``STRIPE_ROWS`` rows (starting on the 8-row grid) spread down
    the picture, each column of a stripe one line. As many boundaries as whole columns
    would give, from a fifth of the picture's memory: a whole column touches a cache line
    on every row, and reading the frame was most of this detector's cost."""
    h = luma.shape[0]
    if h < STRIPES * STRIPE_ROWS:
        return np.ascontiguousarray(luma[:, 4::8].T)
    parts = []
    for i in range(STRIPES):
        y0 = min(h - STRIPE_ROWS, round((i + 0.5) * h / STRIPES) - STRIPE_ROWS // 2) // 8 * 8
        parts.append(luma[y0 : y0 + STRIPE_ROWS, 4::8].T)
    return np.concatenate(parts)


def _grid_excess(g: np.ndarray) -> tuple[float, float]:
    """(8-pixel grid, 4-pixel grid) excess of stepping boundaries. ``g`` holds gradients
    along each line; gradient j of a block lies between its pixels j and j+1: j = 7 is
    the 8-pixel boundary, 3 the 4-pixel one, 1 and 5 the controls (odd too: interlacing
    and 2x scaling make odd and even gradients differ). Every block but the last counts,
    so each position has both neighbours."""
    blocks = g.shape[1] // 8 - 1
    if blocks < 1:
        return 0.0, 0.0
    n = blocks * 8
    # Position p steps when g[p] >= STEP + BESIDE * mean(g[p-1], g[p+1]), in integers
    # (gradients <= CLIP). Only odd positions are ever counted, so only they are tested:
    # column k of ``over`` is position 2k + 1, i.e. place 2 * (k % 4) + 1 in its block.
    over = 2 * g[:, 1 : n + 1 : 2] >= 2 * STEP + BESIDE * (g[:, 0:n:2] + g[:, 2 : n + 2 : 2])
    total = g.shape[0] * blocks

    def stepping(j: int) -> float:  # j = 1, 3, 5, 7: the place in the block
        return np.count_nonzero(over[:, j // 2 :: 4]) / total

    control = (stepping(1) + stepping(5)) / 2
    edge8, edge4 = stepping(7), stepping(3)
    return edge8 - control, (edge8 + edge4) / 2 - control


class BlockinessParams(Params):
    d: float = Field(1.0, ge=0.0, le=3600.0)
    margin: float = Field(
        0.01, gt=0.0, le=1.0, description="score above the stream's level to raise, at least"
    )
    spread: float = Field(
        4.0, ge=0.0, le=100.0, description="and above it by this many times its own spread"
    )
    factor: float = Field(1.3, gt=1.0, le=10.0, description="and score / level at least")
    min_score: float = Field(0.03, ge=0.0, le=1.0, description="and the score at least")
    baseline_window_s: float = Field(120.0, ge=5.0, le=3600.0)
    learn_s: float = Field(5.0, ge=1.0, le=600.0, description="seconds before any raise")
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
        self._baseline: tuple[float, float] | None = None  # changes once a second

    @property
    def baseline(self) -> tuple[float, float] | None:
        """The stream's own level and its spread (per-second scores, 20th percentile and
        80th minus 20th); None until ``learn_s`` seconds are known."""
        return self._baseline

    def _relearn(self) -> None:
        if len(self.seconds) < self.params.learn_s:
            self._baseline = None
            return
        # A low percentile: blocky stretches (the defect) must not raise the level.
        low, high = np.percentile(np.fromiter(self.seconds, float), [20, 80])
        self._baseline = float(low), float(high - low)

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.t - self.last_eval < 0.9 / MAX_RATE and frame.t >= self.last_eval:
            return []
        self.last_eval = frame.t
        score = grid_score(frame.luma, frame.bit_depth)
        if score is None:
            return []
        self._learn(frame.t, score)
        self.recent.append((frame.t, score))
        smoothed = _median([s for _, s in self.recent])
        learned = self.baseline
        base = learned[0] if learned is not None else 0.0
        p = self.params
        blocky = (
            learned is not None
            and smoothed - base >= max(p.margin, p.spread * learned[1])
            and smoothed >= max(base, 0.0) * p.factor
            and smoothed >= p.min_score
        )
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
                self._relearn()
            self.second_scores = []
            self.second_start = t
        self.second_scores.append(score)


def _median(values: list[float]) -> float:
    """Median of a few values (the running window): sorted in Python, no array."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
