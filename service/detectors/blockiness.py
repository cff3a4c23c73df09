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
Blocking that recurs (a flaky link) must not become that level: a run's first
``UNLEARNED_S`` seconds are not learned, and a run that lasts ``d`` takes the scores it
left among the normal peaks before it started back out of them (``_Level.forget_since``).
Vertical and horizontal boundaries are scored and learned apart, and either raises: a
predicted picture carries old block edges along with the motion, so under a scroll or a
tilt only one orientation stays on the grid, and the other's swings (a moving pattern's
edges crossing the grid) must not widen the level it is judged against. A score that
flips sign at full strength from one scored picture to the next is blocking carried by a
scroll (``_Level._unflipped``), not a level to average away.
A run that has been clearly past the level (by ``margin`` at least) goes on while the
score stays half way past it (``HOLD_SHARE`` of each condition on the level, and of the
stream's normal peaks; ``min_score`` whole) and keeps a quarter of the run's own highest
score (``RUN_SHARE``: what follows a strong run is the stream's, however high): a dip of
the running median ended a run just started, and the pictures after it, judged as still,
could not raise it again --
QP-51 blocking through FFmpeg's MPEG-2 on a slow zoom (mandelbrot, 360p) was found whole
on 6 of 12 encodes that differ only in the encoders' thread counts, 0.8 s short on 2,
missed on 4; held half way, 12 of 12 (ends within 0.07 s). Only a clear run: held, a
marginal one (a still `smptehdbars` creeping 0.01 past its level before the blocking,
bikes at the floor through x264 CRF 28) ran on into the blocking, or past ``d`` by itself.

A *held* picture (its sample grid within ``HELD`` of the picture scored before: an
encoder copying a frozen picture) starts no run unless it is a test pattern: it is the
freeze detector's (one alert, not two, as a frozen black picture is black's), and an
encoder's held picture keeps its own coding's grid steps -- held through x264 at CRF 23
(2 s GOPs) a camera picture scores 0.061-0.065 against the stream's 99th percentile of
0.025-0.030 and raised blockiness beside the freeze; so did carphone through MPEG-2 at
700 kbit/s, VP9 at CRF 45 and VP8, bikes through VP8. QP-51 blocking on a held line-up
pattern scores no higher (0.044-0.158) and is still found: freeze leaves patterns alone.
Held but for a band along the top or bottom edge (``EDGE_BAND``) counts as held: a live
ticker keeps moving over a programme that froze (``freeze.ignore_bottom`` finds it); so
does a still re-code of a held picture. Not a picture blocky across the whole of it
(``WHOLE`` both ways): an upstream encoder starved to QP 51 sends one blocky key frame and
then copies it while the content barely moves (Big Buck Bunny, 360p: 0.45 on both
orientations, found 0.88 s late when left to ``freeze``).
A *new shot* -- a wholesale change of the picture (``CUT``), as a line-up steps to its next
test card or a programme cuts to one -- is first judged against itself: for ``learn_s``
seconds a run starts only once the shot's smoothed score has risen ``margin`` past the most
it has scored so far (``_Shot``; its first pictures alone were too low a bar: a cut's key
frame can score below what the shot goes on to show). The level was learned from what came
before: one held card has no spread, footage sits near 0, so a card's own edges on the grid
passed every condition -- a line-up stepping from smptebars to testsrc (0.095 against 0.042
on the vertical boundaries) raised blockiness for two seconds at its first change in 10 of
12 line-ups (`bench/lineup.py`), and footage or a moving pattern cut to a card raised it in
15 of 15 (360p). Not judged so: a new shot that moves (its level judges it as any moving
picture; a change on every picture, cellauto's scroll, is motion, not a cut) -- unless it
follows a still test card, whose level is the card's, flat: Big Buck Bunny's own steps
passed it after smptebars (720p, 43.68-44.80) -- or synthetic content, moving or not
(``pattern_share`` at least ``SYNTHETIC`` on a picture sampled once a second, three seconds
running: Big Buck Bunny passed `testsrc2`'s level 4 s after a line-up ended on it, 720p,
15.92-16.88) -- and one blocky across the whole picture (both orientations at ``WHOLE`` or
more: no card's own edges fall on the grid that densely both ways -- the cards' weaker
orientation reads at most 0.065). Limitation: a still card blocky from its first picture on
one orientation only is taken for the card (QP-51 through a new smptehdbars), and so is a
shot after a still card or synthetic content (QP-51 from testsrc2's first picture after
yuvtestsrc, 720p).
Limitation: blocking already present for the whole of the first seconds is learned as
the stream's normal until it clears. Flat pictures (black, slates) carry no evidence;
neither does a held picture that is not a pattern.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import Field

from service.detectors._pixels import is_test_pattern, mean_abs_diff, pattern_share
from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame

BAND = 32  # rows sampled per frame
STRIPES, STRIPE_ROWS = 8, 25  # stripes of rows whose columns are sampled (2 blocks each)
CLIP = 24  # per-pixel gradient cap (8-bit): one strong edge counts as one step
STEP = 2  # a visible step: 2 code values (8-bit) above the mean gradient beside it
SMOOTH = 5  # running median over scores, so a single clean frame does not break a run
MAX_RATE = 15.0  # scores per second: every other frame at 30 fps keeps timing to ~0.07 s
# A picture all but unchanged from the one scored before it (mean absolute difference of
# the sample grids, 8-bit code values): held, as an encoder re-codes a frozen picture
# (0.3-0.8 at MPEG-2's key frames at 6 Mbit/s), not moving (camera clips: 1.5-2.5 at their
# 1st percentile; animation has near-still shots, 23 % of bigbuckbunny's pictures, which
# are judged as still -- against the key frames, as before).
STILL = 1.5
# Held: all but identical to the picture scored before (an encoder's copy of a frozen
# picture: 0.000-0.014 through x264 between its re-codes), a tenth of STILL's motion floor.
HELD = 0.25
HOLD_SHARE = 0.5  # a run goes on while past this share of each condition on the level
# A new shot: the sample grid changed wholesale from the picture scored before (8-bit code
# values; one test card to the next: 64-95, footage to a card: 66), unlike the one before.
CUT = 30.0
# A run goes on only while its smoothed score keeps this share of the run's own height
# above the level.
RUN_SHARE = 0.25
UNLEARNED_S = 20.0  # a run's first seconds are not learned as the stream's level
# Synthetic content, moving or not: a picture sampled once a second, SYNTHETIC_S in a row,
# with at least this ``pattern_share`` (`testsrc2` 0.44-0.62, `testsrc` 0.72, bands
# 0.8-1; camera and animation 0-0.49 on single pictures, never three seconds running).
SYNTHETIC, SYNTHETIC_S = 0.4, 3
WHOLE = 0.1  # both orientations at this or more: blocky across the picture, not a card
# A band along the top or bottom edge, this share of the height, that may move over a held
# picture (a live ticker, crawl or clock strap: 6-15 % of the height).
EDGE_BAND = 0.2


def grid_score(luma: np.ndarray, bit_depth: int = 8) -> float | None:
    """Fraction of grid boundaries that step minus that inside blocks (max over both
    orientations, 8- and 4-pixel grids); None if the picture is too flat to tell."""
    known = [s for s in grid_scores(luma, bit_depth) if s is not None]
    return max(known) if known else None


def grid_scores(luma: np.ndarray, bit_depth: int = 8) -> tuple[float | None, float | None]:
    """The score of the vertical block boundaries (along sampled rows) and of the
    horizontal ones (along sampled columns), each None where the lines are too flat.

    Kept apart because motion moves them apart: in a predicted picture the encoder
    copies blocks, and their edges, from where the content was, so under vertical motion
    the horizontal edges leave the grid while the vertical ones stay on it."""
    h, w = luma.shape
    if h < 32 or w < 32:
        return None, None
    rows = luma[h // (2 * BAND) :: max(h // BAND, 1)]
    return _lines_score(rows, bit_depth), _lines_score(_column_segments(luma), bit_depth)


def _lines_score(lines: np.ndarray, bit_depth: int) -> float | None:
    shift = bit_depth - 8
    if shift == 0:  # widened by the subtraction itself: uint8 differences would wrap
        g = np.subtract(lines[:, 1:], lines[:, :-1], dtype=np.int16)
    else:
        g = np.diff(lines.astype(np.int32) >> shift, axis=1)
    np.abs(g, out=g)
    np.minimum(g, _cap_like(g), out=g)
    # Some steps (0.1% of positions): enough to count where they fall. Blocking on a
    # ramp or on bars is that sparse at 1080p: a few steps, all on the grid.
    if np.count_nonzero(g >= STEP) >= 0.001 * g.size:
        return max(_grid_excess(g))
    if float(lines.std()) >= 8 * (1 << shift):
        return 0.0  # smooth ramps, no step anywhere: certainly no blocking
    return None  # flat (black, a plain slate): no evidence either way


_CAPS: dict[tuple[tuple[int, ...], str, bool], np.ndarray] = {}


def _cap_like(g: np.ndarray) -> np.ndarray:
    """An array of CLIP shaped (and laid out) like ``g``: numpy's minimum against a
    scalar takes a slow path (16 us against 2 us per sampled band of 1280 pixels)."""
    key = (g.shape, g.dtype.str, bool(g.flags.f_contiguous))
    cap = _CAPS.get(key)
    if cap is None:
        if len(_CAPS) > 32:  # picture sizes come and go: keep the cache small
            _CAPS.clear()
        cap = _CAPS[key] = np.full_like(g, CLIP)
    return cap


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
    # Position p steps when g[p] >= STEP + mean(g[p-1], g[p+1]), in integers
    # (gradients <= CLIP). Only odd positions are ever counted, so only they are tested:
    # column k of ``over`` is position 2k + 1, i.e. place 2 * (k % 4) + 1 in its block.
    # (Array-to-array operations: numpy's scalar broadcasts are the slow path here.)
    odd = g[:, 1 : n + 1 : 2]
    beside = g[:, 0:n:2] + g[:, 2 : n + 2 : 2]
    over = np.add(odd, odd) >= beside + 2 * STEP
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
    min_score: float = Field(
        0.03, ge=0.0, le=1.0, description="and the score at least (above the level if negative)"
    )
    baseline_window_s: float = Field(120.0, ge=5.0, le=3600.0)
    learn_s: float = Field(5.0, ge=1.0, le=600.0, description="seconds before any raise")
    severity: str = Field("warning", pattern="^(warning|critical)$")


class _Level:
    """One orientation's scores: a running median, and the stream's own level learned
    from its per-second medians."""

    def __init__(self, params: BlockinessParams) -> None:
        self.params = params
        self.recent: deque[tuple[float, float]] = deque(maxlen=SMOOTH)  # (t, score)
        self.seconds: deque[float] = deque()  # per-second median scores
        self.second_start: float | None = None
        self.second_scores: list[float] = []
        self.baseline: tuple[float, float] | None = None  # (level, spread); None: unlearned
        # Every score of the window outside raised runs (a ring), raw and smoothed, and
        # their 99th percentiles: the most the stream shows in normal operation, picture
        # by picture and over the running median.
        size = max(1, round(params.baseline_window_s * MAX_RATE))
        self.normal = np.zeros(size, np.float32)
        self.normal_smoothed = np.zeros(size, np.float32)
        self.normal_count = 0
        self.high: float | None = None
        self.high_smoothed: float | None = None
        self.last_raw: float | None = None  # the last score as measured (``_unflipped``)
        self.run_high = 0.0  # the open run's highest smoothed score (0: no run open)
        # (t, ring position) of the last scores kept as normal: a run's first scores are
        # kept before the running median lets it start, taken back once it is a defect.
        self.kept: deque[tuple[float, int]] = deque(maxlen=4 * SMOOTH)

    def add(self, t: float, score: float, active: bool, learn: bool = True) -> None:
        """A scored picture's score; ``active``: in a run (not a normal score);
        ``learn``: one the level may learn from (``BlockinessDetector._learns``)."""
        score = self._unflipped(score)
        if self.second_start is None:
            self.second_start = t
        if t - self.second_start >= 1.0:
            if self.second_scores:
                self.seconds.append(float(np.median(self.second_scores)))
                while len(self.seconds) > int(self.params.baseline_window_s):
                    self.seconds.popleft()
                self._relearn()
            self.second_scores = []
            self.second_start = t
        if learn:
            self.second_scores.append(score)
        self.recent.append((t, score))
        self.run_high = max(self.run_high, self.smoothed) if active else 0.0
        if not active:
            at = self.normal_count % self.normal.size
            self.normal[at], self.normal_smoothed[at] = score, self.smoothed
            self.normal_count += 1
            self.kept.append((t, at))

    def forget_since(self, start: float) -> None:
        """Take the scores kept as normal from ``start`` on back out of the normal peaks
        (a run that turned out to be a defect: its first scores were kept before the
        running median let it start). Each onset left three raw scores and one smoothed
        in them, and a few runs within the window made QP-51 the stream's 99th
        percentile: Big Buck Bunny at 360p with six 2 s runs in 60 s (x264 CRF 20) was
        found three times, bikes and carphone four, life twice. Replaced by the level
        (a normal score); the peaks are read again at once."""
        value = self.baseline[0] if self.baseline is not None else 0.0
        for t, at in self.kept:
            if t >= start:
                self.normal[at] = self.normal_smoothed[at] = value
        self.kept.clear()
        self._read_peaks()

    def _unflipped(self, score: float) -> float:
        """Blocking carried along by a scroll: a predicted picture copies the blocks, and
        their edges, with the motion, so edges that moved 2 rows between two scored
        pictures (a row a frame, every other frame scored) sit on the grid's places (3, 7)
        in one and on the controls (1, 5) in the next, and the score flips sign at full
        strength: cellauto through x264 at 720p / 25 fps reads +0.05, -0.05, +0.05... on
        its horizontal boundaries, which the running median averages away. A flip
        between two scores both past ``margin`` counts as the smaller magnitude; natural
        pictures' scores wander about their level with no such beat."""
        last, self.last_raw = self.last_raw, score
        if last is not None and score * last < 0:
            folded = min(abs(score), abs(last))
            if folded >= self.params.margin:
                return folded
        return score

    def _relearn(self) -> None:
        if len(self.seconds) < self.params.learn_s:
            self.baseline = None
            return
        # A low percentile (20th), spread 80th minus 20th: blocky stretches (the defect)
        # must not raise the level.
        low, high = np.percentile(np.fromiter(self.seconds, float), [20, 80])
        self.baseline = float(low), float(high - low)
        self._read_peaks()

    def _read_peaks(self) -> None:
        kept = min(self.normal_count, self.normal.size)
        if kept:
            self.high = float(np.percentile(self.normal[:kept], 99))
            self.high_smoothed = float(np.percentile(self.normal_smoothed[:kept], 99))

    def unusual(self, still: bool) -> bool:
        """Above the most the stream shows in normal operation. A stream's own key
        frames can step on the grid far more than the pictures between them (MPEG-2 at
        6 Mbit/s, GOP 15: 0.17-0.35 every half second against 0.01-0.05): the running
        median passes over them, so a moving picture is judged by the most the *smoothed*
        score reaches -- blocking on every picture (0.18 on such a stream) stands out
        there, though below a key frame's own score. A *still* picture held from a key
        frame keeps that frame's quality on every picture: it is the stream's normal
        (and a freeze), not blocking, so a still picture must pass even the key frames."""
        high = self.high if still else self.high_smoothed
        return high is not None and self.smoothed > high

    def holds(self) -> bool:
        """A run goes on while the smoothed score stays half way to the most the stream
        shows in normal operation, too (``HOLD_SHARE``, as for the level's conditions).
        Without it, the residue an encoder carries on for a moment after blocking ends
        (0.03 on Big Buck Bunny through x264 at 720p / 29.97 fps, against normal peaks
        of 0.09) held a run until the next cut's picture (the clip's loop) lifted the
        median again: ended 0.95 s late."""
        if self.faded():
            return False
        return self.high_smoothed is None or self.smoothed > HOLD_SHARE * self.high_smoothed

    def faded(self) -> bool:
        """Far below what the open run itself scored, above the level: the blocking is
        over, and what holds the score up is the stream's own (Big Buck Bunny at 360p: a
        run at 0.40-0.48, then a cut's first pictures at its normal peaks, 0.04-0.09, held
        it 0.72 s on). Such a score neither holds the run nor carries it on as unusual: a
        still `smptehdbars` (level 0.047) that x264 re-coded after QP-51 blocking at 0.125
        held at 0.060, above any key frame it had sent, until its next key frame -- and the
        run with it (360p, CRF 23: ended 6.3 s late)."""
        base = self.baseline[0] if self.baseline is not None else 0.0
        return self.smoothed - base < RUN_SHARE * (self.run_high - base)

    @property
    def smoothed(self) -> float:
        return _median([s for _, s in self.recent])

    def excess(self, share: float = 1.0, floor: float | None = None) -> float | None:
        """How far the smoothed score is past ``share`` of each condition relative to the
        level and ``floor`` (default: ``share``) of ``min_score`` (>= 0: past all of
        them); None until the level is learned."""
        if self.baseline is None or not self.recent:
            return None
        p, (base, spread), score = self.params, self.baseline, self.smoothed
        return min(
            score - base - share * max(p.margin, p.spread * spread),
            score - max(base, 0.0) * (1 + share * (p.factor - 1)),
            # At least min_score above nothing, or above a level below nothing (a
            # pattern whose edges fall inside the blocks more than on the grid).
            score - min(base, 0.0) - (share if floor is None else floor) * p.min_score,
        )

    def dated(self) -> float:
        """When the smoothed score changed: the running median lags by half its window."""
        return self.recent[-(len(self.recent) + 1) // 2][0]


class _Shot:
    """A new shot (module doc): judged against its own scores for its first ``learn_s``
    seconds, unless it moves -- or follows a still test card or synthetic content, whose
    level says nothing of the programme after it."""

    def __init__(self, start: float, after_card: bool = False) -> None:
        self.start = start
        self.after_card = after_card
        self.moved: list[float] = []  # each scored picture's motion since the cut
        self.reference: tuple[float | None, ...] | None = None  # per orientation

    def settle(self, levels: tuple[_Level, ...]) -> None:
        """Its reference once the running median holds mostly its own pictures."""
        if self.reference is not None:
            return
        own = (SMOOTH + 1) // 2
        if all(sum(t >= self.start for t, _ in lv.recent) >= own for lv in levels if lv.recent):
            self.reference = tuple(lv.smoothed if lv.recent else None for lv in levels)

    def note(self, levels: tuple[_Level, ...]) -> None:
        """A picture that started no run: the reference becomes the most the shot has
        scored so far. Its first pictures alone were too low a bar -- the cut's key frame
        scores below what the shot goes on to show (Big Buck Bunny after `testsrc2`, 720p:
        0.010 on the horizontal boundaries, then 0.02-0.049 with no blocking)."""
        if self.reference is not None:
            self.reference = tuple(
                None if ref is None or not lv.recent else max(ref, lv.smoothed)
                for ref, lv in zip(self.reference, levels, strict=True)
            )

    def judge(
        self, blocky: list[tuple[float, _Level]], levels: tuple[_Level, ...], margin: float
    ) -> list[tuple[float, _Level]]:
        """The orientations that may start a run: past the most the shot has scored."""
        if not self.after_card and len(self.moved) >= 2 and _median(self.moved) > STILL:
            return blocky  # it moves: judged as any moving picture
        if _whole(levels):
            return blocky
        if self.reference is None:
            return []  # its first pictures: nothing to judge them against yet
        ref = self.reference
        return [(e, lv) for e, lv in blocky if _risen(lv, ref[levels.index(lv)], margin)]


def _whole(levels: tuple[_Level, ...]) -> bool:
    """Blocky across the whole picture: both orientations' running medians at ``WHOLE``
    or more -- no card's own edges fall on the grid that densely both ways, and no
    encoder's held picture steps that much on it (x264 at CRF 23: 0.03-0.06)."""
    return all(lv.recent and lv.smoothed >= WHOLE for lv in levels)


def _risen(level: _Level, reference: float | None, margin: float) -> bool:
    return reference is None or level.smoothed >= reference + margin


class BlockinessDetector(Detector[BlockinessParams]):
    name = "blockiness"
    group = "video"
    resume_after_s = 1.0  # the running median settles over a few frames
    params_model = BlockinessParams
    wants_video = True

    def __init__(self, params: BlockinessParams) -> None:
        super().__init__(params)
        # Vertical boundaries (sampled rows) and horizontal ones (sampled columns), each
        # against its own level: a pattern's or a scroll's steady offset in one does not
        # hide blocking in the other.
        self.levels = (_Level(params), _Level(params))
        self.active = False
        self.clear = False  # the open run has been past the level by ``margin`` at least
        self.last_eval = -1e9
        self.last_grid: np.ndarray | None = None  # the last scored picture's sample grid
        self.last_moved: float | None = None  # the last scored picture's motion
        self.shot: _Shot | None = None  # a new shot, while judged against itself
        self.run_start: float | None = None  # the open run's start while not yet ``d`` long
        self.run_began: float | None = None  # the open run's start
        self.shares: deque[float] = deque(maxlen=SYNTHETIC_S)  # ``pattern_share``, 1 a second
        self.next_share = -1e9  # media time the next one is sampled at

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.t - self.last_eval < 0.9 / MAX_RATE and frame.t >= self.last_eval:
            return []
        before, self.last_eval = self.last_eval, frame.t
        grid, last = frame.grid(), self.last_grid
        moved = (  # from the picture scored before it, 8-bit code values
            mean_abs_diff(grid, last) / (1 << (frame.bit_depth - 8))
            if last is not None and last.shape == grid.shape
            else None
        )
        still = moved is not None and moved <= STILL
        self.last_grid = grid
        held_before = self.last_moved is not None and self.last_moved <= HELD
        self._follow_shot(moved, frame.t, before, last, frame.bit_depth)
        if frame.t >= self.next_share or frame.t < before:
            self.next_share = frame.t + 1.0
            self.shares.append(pattern_share(grid, frame.bit_depth))
        scores = grid_scores(frame.luma, frame.bit_depth)
        if scores == (None, None):
            return []
        for level, score in zip(self.levels, scores, strict=True):
            if score is not None:
                level.add(frame.t, score, self.active, self._learns(frame.t))
        if self.shot is not None:
            self.shot.settle(self.levels)
        # Raised past the level and above the stream's normal range; held while half way
        # past it (a blocky run lifts nothing it is judged against: its scores are not
        # kept), so a dip of the running median does not end a run just started.
        if self.active and not self.clear:
            self.clear = any(_past(lv.excess()) >= self.params.margin for lv in self.levels)
        share = HOLD_SHARE if self.clear else 1.0  # min_score, the floor, holds whole
        excess = [(_past(lv.excess(share, floor=1.0)), lv) for lv in self.levels]
        blocky = [
            (e, lv)
            for e, lv in excess
            if e >= 0
            and (
                (self.active and lv.holds())
                or (lv.unusual(still) and not (self.active and lv.faded()))
            )
        ]
        if blocky and not self.active and self.shot is not None:
            blocky = self.shot.judge(blocky, self.levels, self.params.margin)
        if (
            blocky
            and not self.active
            and moved is not None
            and last is not None  # as ``moved`` is: for the type checker
            and not _whole(self.levels)
            and _held(grid, last, moved, frame, held_before)
        ):
            # A held picture is a freeze's, unless a test pattern or blocky across the
            # whole picture (module doc).
            blocky = blocky if is_test_pattern(grid, frame.bit_depth) else []
        if bool(blocky) == self.active:
            if self.shot is not None and not self.active:
                self.shot.note(self.levels)
            self._confirm(frame.t)
            return []
        self.active = bool(blocky)
        self.clear = self.clear and self.active
        if blocky:
            worst = max(blocky, key=lambda pair: pair[0])[1]
            assert worst.baseline is not None
            details = {"score": round(worst.smoothed, 3), "baseline": round(worst.baseline[0], 3)}
            self.run_start = self.run_began = worst.dated()
            self._confirm(frame.t)
            return [Change(self.run_start, True, details=details)]
        self.run_start = self.run_began = None
        # Cleared: dated by the orientation that was raising it (both see the same frames).
        return [Change(max(lv.dated() for lv in self.levels if lv.recent), False)]

    def _learns(self, t: float) -> bool:
        """Whether the level learns from this picture's score: not in a run's first
        ``UNLEARNED_S``. Learned, a 2 s run's per-second scores were a fifth of a short
        history after a few runs, the spread (80th percentile) took them in and the next
        run ended at once (Big Buck Bunny at 360p, QP-51 for 2 s every 9 s: 17.04-18.56),
        its tail then kept as normal. A run that goes on longer is learned as before:
        content that changed for good (a new graphic on the grid) ends its own alarm."""
        return self.run_began is None or t - self.run_began >= UNLEARNED_S

    def _confirm(self, t: float) -> None:
        """A run that has lasted ``d`` is a defect: its first scores are not the stream's
        normal (``_Level.forget_since``). A shorter one keeps them, as before: a natural
        rise that ends before ``d`` lifts the bar the next rise of the same content must
        pass."""
        if self.active and self.run_start is not None and t - self.run_start >= self.params.d:
            for level in self.levels:
                level.forget_since(self.run_start)
            self.run_start = None

    def _follow_shot(
        self,
        moved: float | None,
        t: float,
        before: float,
        last_grid: np.ndarray | None,
        bit_depth: int,
    ) -> None:
        """Whether this picture starts a new shot, or goes on with the one judged;
        ``last_grid``: the picture scored before it."""
        last, self.last_moved = self.last_moved, moved
        if moved is None:
            return
        # A wholesale change on every picture is motion (cellauto's scroll), not a cut --
        # unless the picture then stands still: the shot began at the last change.
        if moved >= CUT and (last is None or last < CUT):
            # Out of a still test card, or synthetic content for seconds, the level is
            # the card's (flat, no spread) or the pattern's: a programme's own steps passed
            # it (Big Buck Bunny after smptebars, 720p, 43.68-44.80; after testsrc2,
            # 15.92-16.88), so even a moving shot is judged against itself first.
            card = (
                last is not None
                and last <= STILL
                and last_grid is not None
                and is_test_pattern(last_grid, bit_depth)
            ) or (len(self.shares) == SYNTHETIC_S and min(self.shares) >= SYNTHETIC)
            self.shares.clear()  # the new shot's own from here
            self.shot = _Shot(t, after_card=card)
        elif moved <= STILL and last is not None and last >= CUT and self.shot is None:
            self.shot = _Shot(before)
            self.shot.moved.append(moved)
        elif self.shot is not None and t - self.shot.start > self.params.learn_s:
            self.shot = None
        elif self.shot is not None:
            self.shot.moved.append(moved)

    def near_raise(self) -> bool:
        """Half way from the stream's own level to raising, or further (for decoding
        less than everything: decode every picture while blocking may be starting)."""
        return any(_past(lv.excess(0.5)) >= 0 for lv in self.levels)


def _held(grid: np.ndarray, last: np.ndarray, moved: float, frame: VideoFrame, after: bool) -> bool:
    """Held since the picture scored before (``last``, ``moved`` away): as a whole, or all
    but a band along the top or bottom edge -- or re-coded, ``after`` a held one, by no
    more than a still picture moves (x264 re-codes a held picture 1.2 code values away a
    few pictures into the hold, and its grid steps rose from 0.003 to 0.031: bikes held
    at CRF 23 raised blockiness beside the freeze from there). A live ticker keeps moving
    over a programme that froze, and the held part keeps its coding's grid steps as any
    held picture does: bikes held 6 s at 720p under a ticker in the bottom 6-15 % raised
    blockiness (x264 CRF 20) where the same hold without it raised only ``freeze``. Only
    asked of a picture that would start a run."""
    if moved <= HELD or (after and moved <= STILL):
        return True
    band, scale = max(1, round(EDGE_BAND * grid.shape[0])), 1 << (frame.bit_depth - 8)
    return any(
        mean_abs_diff(a, b) / scale <= HELD
        for a, b in ((grid[:-band], last[:-band]), (grid[band:], last[band:]))
    )


def _past(excess: float | None) -> float:
    """``excess`` with a level not learned yet as short of every condition (``or`` would
    have taken an excess of exactly 0.0 -- past them all -- for short of them too)."""
    return -1.0 if excess is None else excess


def _median(values: list[float]) -> float:
    """Median of a few values (the running window): sorted in Python, no array."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
