"""Frozen picture: mean absolute difference to the last *changed* frame <= -60 dB.

Semantics of FFmpeg's freezedetect (noise 0.001 of full scale, d=2 s): each frame is
compared with the reference (the last frame that changed); the run starts at the
reference frame and ends at the first changed frame. Like FFmpeg, the difference is
averaged over all planes (Y, U, V, weighted by their sizes): an encoder refining a
frozen picture changes luma more than chroma, and luma alone would cross the threshold
frames away from where FFmpeg does. Measured on sample grids; only a frame whose grid
estimate lands near the threshold is measured again on every pixel (the reference
frame's planes are kept as zero-copy views, so this costs nothing until it is needed).
A frozen *black* picture is left to the black detector (one alert, not two).

A frozen picture as an encoder sends it is not quite still, and FFmpeg's rule misses it
(measured: a 3-4 s freeze through x264 at CBR with 1 s GOPs -- 3 Mbit/s at 720p,
800 kbit/s at 360p -- and through MPEG-2 with 0.4-0.5 s GOPs raised nothing, by FFmpeg
or by that rule). Every key frame re-encodes the
picture (a step of 0.0013-0.0033 of full scale from the frame before), and a CBR
encoder spends its bits refining the still picture a little each frame, which adds up
past 0.001 within a few frames. So a frame also continues a freeze when it stays within
``drift`` (0.005, -46 dB) of the reference, *and* it is still against the frame before
it (<= ``noise``) or it is a key frame or the one after (MPEG-2 refines that one too).
A picture that moves does not pass: it differs from the frame before at every frame,
not only at key frames. ``drift = noise``, ``return_s = 0`` and ``coarse_drift = 0`` give
FFmpeg's rule exactly.

Some encoders step further and then refine back: openh264 and libvpx re-code a still
picture at every key frame 0.006-0.012 of full scale away and are back within ``drift``
of it 0.2-0.3 s later; libvpx also steps (0.002-0.006) at its golden-frame refreshes,
which are not key frames (measured on camera footage and test patterns made with
GStreamer). No still run between two steps lasted ``d``: FFmpeg's rule and the key-frame
tolerance missed a 6 s freeze through libvpx, or cut one into pieces. So a picture that
leaves a freeze has ``return_s`` (0.5 s) to come back -- still, and within ``drift`` of the
frozen picture -- and the freeze goes on through the step; else it ended where it left.
A raised freeze is judged when the time has passed, on the picture then (compared from
then on with it: a slow refiner, openh264 at 128 kbit/s, drifts past ``drift`` from a
picture taken earlier) -- or, if it came back on an earlier frame and stepped again
since, the freeze went on to that frame and left again after it, judged anew: FFmpeg's
MPEG-2 with 0.5 s GOPs (or 12-picture GOPs at 25 fps) steps again just as the time runs
out, and judged on the time's last frame alone a picture held through it at 1.7 Mbit/s
(360p) was missed or found 0.9 s late. A raised freeze's end is thus reported up to
``return_s`` late (dated where it left); a run not raised yet ends at once and, on a
return (any frame in the time), is found on from its first frame.
Motion does not come back still; a cut to another picture does not come back within
``drift``. Nor does slow motion: a smooth gradient turning slowly changes 0.0001-0.0005
of full scale a frame, drifts past ``drift`` a frame at a time and was "back" on the next
frame, and the returns chained into freezes of 5 s that FFmpeg does not see (intra-only
x264 and MPEG-2 with GOPs, `tests/detectors/test_freeze_slow_motion.py`). So a run not
raised yet comes back only if it left in a step (past ``noise`` from the frame before), as
an encoder's re-code does, or stepped since: mjpegtools' MPEG-2 refines a still
checkerboard past ``drift`` a frame at a time and its next key frame steps it back.

Further still, a starved or coarse encoder re-codes a held picture well past ``drift`` and
never comes back: x264 / x265 at CRF 28 re-code Big Buck Bunny 3.2-4.4 code values (8-bit)
away at a key frame and hold it there (ended 1.27 s early); FFmpeg's MPEG-2 at 700 kbit/s
(360p) shimmers 0.3-2.0 a frame for as long as the picture is held (ended after 2.7 s of 6).
Its *coarse picture* -- the means of its 16x16 luma blocks, where coding noise averages out
-- stays put: no block more than 7 from the frozen picture's in 35 of 36 clips (6 sources x
6 encoders, 360p; `testsrc2`'s sharp edges at CRF 35: 11), while the same clips' motion
moves some block 4-14 from one frame to the next (Big Buck Bunny's near-still shots less,
below) and 9-108 over three. So a *raised* freeze goes on while no block of the coarse
picture moves past ``coarse_drift`` (8) from the frozen picture's and their average (a fade)
not past ``drift``. Raised only: a run must first be still by the rules above for ``d`` -- a
near-still shot of real footage (Big Buck Bunny: consecutive frames 0-2 apart, coarsely) is
never still that long, so this cannot start a freeze. One narrower case before that: a key
frame that re-codes a held picture just after it froze (x264 at CRF 28, 0.4 s into a hold
of Big Buck Bunny, 1.8 code values away; a starved MPEG-2, 6 away on life) ended the run
not raised yet, and the hold was found from the key frame (the clips above at 360p and
720p: 19 of 72 found 0.2-1.2 s late). A picture that leaves a still run and, a key frame
since, is still again and coarsely the run's picture has come back (as within ``drift``
does): still on both sides of one step, at a key frame -- motion is still on neither side.

A still *test pattern* -- colour bars, stripes, ramps: what engineers put on a feed while
lining up -- is not raised either (unless ``test_patterns`` is set): a monitor that
alarms through every line-up is switched off. Such a picture is bands, each constant
along one axis: most consecutive sampled rows (or columns) are alike, unlike any
camera or animation picture (measured: 92-99 % of rows alike on FFmpeg's bars, stripes
and ramps through x264 at CRF 18-28, 87-100 % through x265 at CRF 28, MPEG-2, MPEG-4
part 2 and VP9 -- `smptehdbars` at 360p through x265 the lowest, its section edges
ringing over a few sampled rows; camera and animation clips at most 19 %, `mandelbrot`
18 %, `testsrc2` 63 %, `testsrc` 73 %: 80 % is the line).
A plain field (a blue screen from a receiver that lost its input) is not a pattern and
is raised. The stream's status shows ``test_pattern`` while one is held.

A live ticker, crawl or clock strap keeps moving over a programme that froze, and the
whole picture is no longer still (FFmpeg's rule compares whole pictures too): where a
feed carries one, ``ignore_top`` / ``ignore_bottom`` leave that share of the picture's
height out of every comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from pydantic import Field, model_validator

from service.detectors._pixels import black_threshold, is_test_pattern, mean_abs_diff
from service.detectors.base import Change, Detector, Params
from service.media.frames import Pixels, VideoFrame

COARSE = 16  # side of the luma blocks (a macroblock) whose means make the coarse picture


def coarse_picture(luma: Pixels, bit_depth: int = 8) -> np.ndarray:
    """The picture as the means of its COARSE x COARSE luma blocks (8-bit code values,
    float32): what a viewer sees of it, without the coding noise an encoder re-codes."""
    h, w = luma.shape[0] // COARSE * COARSE, luma.shape[1] // COARSE * COARSE
    rows = luma[:h, :w].reshape(h // COARSE, COARSE, w).sum(axis=1, dtype=np.int32)
    blocks = rows.reshape(h // COARSE, w // COARSE, COARSE).sum(axis=2)
    return (blocks / float(COARSE * COARSE << (bit_depth - 8))).astype(np.float32)


@dataclass(slots=True)
class _Left:
    """The picture left a freeze (``ref`` since ``ref_t``) at ``at``."""

    ref: VideoFrame
    ref_t: float
    at: float
    first: VideoFrame  # the frame that left
    held: bool  # the freeze was raised (or due): its end waits for ``return_s``
    back: VideoFrame | None = None  # held: the latest frame in the time that was back
    away: VideoFrame | None = None  # and the first frame after it that was not
    keyed: bool = False  # a key frame came since it left (a re-code, not motion)
    coarse: np.ndarray | None = None  # ``ref``'s coarse picture, once asked
    stepped: bool = True  # it left, or moved since, in a step (not only by drifting)


class FreezeParams(Params):
    d: float = Field(2.0, ge=0.0, le=3600.0)
    noise: float = Field(
        0.001, gt=0.0, lt=1.0, description="mean abs difference, share of full scale"
    )
    drift: float = Field(
        0.005,
        gt=0.0,
        lt=1.0,
        description="how far a frozen picture may drift from its first frame as an encoder "
        "re-encodes it (key frames, CBR refinement), when still frame to frame",
    )
    test_patterns: bool = Field(
        False, description="raise on a still test pattern too (bars, stripes, ramps)"
    )
    coarse_drift: float = Field(
        8.0,
        ge=0.0,
        le=255.0,
        description="a raised freeze goes on while no 16x16 block's mean moves further than "
        "this (code values, 8-bit) from the frozen picture's, nor their average past drift: "
        "a starved encoder re-codes a held picture, shimmering; 0: off (FFmpeg)",
    )
    return_s: float = Field(
        0.5,
        ge=0.0,
        le=5.0,
        description="a picture that leaves a freeze may come back within this long (still "
        "and within drift) and the freeze goes on; 0: ended at once (FFmpeg)",
    )

    ignore_top: float = Field(
        0.0,
        ge=0.0,
        le=0.45,
        description="share of the picture's height left out at the top (a clock strap)",
    )
    ignore_bottom: float = Field(
        0.0,
        ge=0.0,
        le=0.45,
        description="share of the picture's height left out at the bottom: a live ticker "
        "or crawl keeps moving over a frozen programme, which then no longer compares still",
    )

    @model_validator(mode="after")
    def _drift_at_least_noise(self) -> FreezeParams:
        if self.drift < self.noise:
            raise ValueError("drift must be >= noise")
        return self


class FreezeDetector(Detector[FreezeParams]):
    name = "freeze"
    group = "video"
    params_model = FreezeParams
    wants_video = True

    def __init__(self, params: FreezeParams) -> None:
        super().__init__(params)
        self.ref: VideoFrame | None = None  # the last frame that changed
        self.ref_t = 0.0
        self.ref_black = False
        self.ref_pattern: bool | None = None  # worked out once a freeze would be raised
        self.active = False
        self.prev: VideoFrame | None = None  # the frame before (re-encoding tolerance)
        self.since_key = 2  # frames since the last key frame (0: this one)
        self.left: _Left | None = None  # the picture left a freeze (see module doc)
        self.ref_coarse: np.ndarray | None = None  # the frozen picture's, once asked
        self.crops = bool(params.ignore_top or params.ignore_bottom)  # ignore_* set

    @staticmethod
    def _planes(frame: VideoFrame) -> tuple[Pixels, ...]:
        return (frame.luma,) if frame.chroma is None else (frame.luma, *frame.chroma)

    @staticmethod
    def _grids(frame: VideoFrame) -> tuple[Pixels, ...]:
        chroma = frame.chroma_grids()
        return (frame.grid(),) if chroma is None else (frame.grid(), *chroma)

    @staticmethod
    def _mafd(a: tuple[Pixels, ...], b: tuple[Pixels, ...], planes: tuple[Pixels, ...]) -> float:
        """Mean absolute difference over planes, each weighted by its full size."""
        weights = [p.shape[0] * p.shape[1] for p in planes]
        diffs = [mean_abs_diff(x, y) for x, y in zip(a, b, strict=True)]
        return sum(d * w for d, w in zip(diffs, weights, strict=True)) / sum(weights)

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if self.crops:
            frame = self._band_left_out(frame)
        self.since_key = 0 if frame.key else self.since_key + 1
        out: list[Change] = []
        left = self.left
        if left is not None:
            left.keyed = left.keyed or frame.key
            # A still run since the step that has lasted d (frames were missing: an
            # encoder that drops still pictures) stands as it is.
            due = not left.held and self._raised(frame.t)
            back = not due and self._came_back(frame, left)
            within = frame.t - left.at <= self.params.return_s
            if left.held:
                if within:  # a raised freeze: its end waits for the time to pass
                    if back:
                        left.back, left.away = frame, None
                    elif left.back is not None and left.away is None:
                        left.away = frame
                    self.prev = frame
                    return []
                self.left = None
                if back:
                    return self._resume(frame, left)
                if left.back is not None:
                    # Back within the time, and stepped again since: an encoder that
                    # re-codes the picture at every key frame may step just as the time
                    # runs out (MPEG-2 with 0.5 s GOPs, or 12-picture GOPs at 25 fps).
                    # The freeze went on to the latest frame back and left again after it.
                    self._resume(left.back, left)
                    away = left.away or frame
                    self.left = _Left(left.back, self.ref_t, away.t, away, held=True)
                    self.prev = frame
                    return []
                # It did not come back: ended where it left.
                self.active = False
                out.append(Change(left.at, False))
                self._set_reference(left.first)
            elif back:  # a run not raised yet: found on from its first frame at once
                self.left = None
                return self._resume(frame, left)
            elif not within:
                self.left = None
        ref = self.ref
        still = False
        if ref is not None and self._comparable(ref, frame):
            mafd = self._difference(frame, ref, self.params.noise)
            still = mafd <= self.params.noise or self._reencoded(frame, ref, mafd)
            if not still and self._shimmering(frame, ref):
                # Compared from now on with the picture as re-coded (as after a return);
                # the coarse picture stays the frozen one's, so nothing drifts away.
                still, self.ref = True, frame
        if still and ref is not None:
            self.prev = frame
            if self.active or self.ref_black or self._still_pattern(ref):
                return out
            self.active = True
            return [*out, Change(self.ref_t, True, details={"mafd": round(mafd, 6)})]
        pending = self.left
        if (
            self.active
            and ref is not None
            and self.params.return_s
            and (pending is None or self._outlasts(pending, frame.t))
        ):
            # The picture left a freeze: an encoder's step may come back (module doc).
            held = self._raised(frame.t)  # raised, or due: keep it open
            stepped = held or self._stepped(frame)
            self.left = _Left(
                ref, self.ref_t, frame.t, frame, held, keyed=frame.key, stepped=stepped
            )
            if held:
                self.prev = frame
                return out
        self.prev = frame
        if self.active:
            out.append(Change(frame.t, False))
        self.active = False
        self._set_reference(frame)
        return out

    def every_frame_until(self) -> float:
        """Every picture while a still run is open or one that left may come back: a
        starved encoder's held picture is judged by them all (MPEG-2 at 700 kbit/s: its
        P-frames drift off the picture and its B-frames come back to it; on reference
        pictures alone the hold was found a second late)."""
        return math.inf if self.active or self.left is not None else -math.inf

    def _band_left_out(self, frame: VideoFrame) -> VideoFrame:
        """The frame without the rows ``ignore_top`` / ``ignore_bottom`` leave out (views:
        nothing copied), on even rows so that 4:2:0 chroma covers the same picture."""
        h, p = frame.height, self.params
        top, bottom = 2 * round(h * p.ignore_top / 2), h - 2 * round(h * p.ignore_bottom / 2)
        chroma = frame.chroma
        if chroma is not None:
            scale = chroma[0].shape[0] / h
            rows = slice(round(top * scale), round(bottom * scale))
            chroma = (chroma[0][rows], chroma[1][rows])
        return replace(
            frame,
            luma=frame.luma[top:bottom],
            chroma=chroma,
            _grid=None,
            _chroma_grids=None,
            _dark=None,
        )

    def _set_reference(self, frame: VideoFrame) -> None:
        # The frame itself: its planes are views that keep the decoder's buffers alive
        # (refcounted), and its grids are computed once, when first needed.
        self.ref = frame
        self.ref_t = frame.t
        self.ref_pattern = self.ref_coarse = None
        self.ref_black = self._black(frame)

    @staticmethod
    def _black(frame: VideoFrame) -> bool:
        """Black by the black detector's default rule (a frozen black picture is its)."""
        th = black_threshold(frame.black_level, frame.white_level, 0.10)
        return frame.dark_samples(th) >= 0.98 * frame.grid().size

    def _came_back(self, frame: VideoFrame, left: _Left) -> bool:
        """Still against the frame before, and within ``drift`` of the frozen picture --
        or, a key frame since it left, coarsely the frozen picture (``_coarsely_at``): a
        key frame re-coded the held picture past ``drift`` and it stays there (module
        doc). Motion is not still on both sides of one step; a key frame once a GOP."""
        p, prev = self.params, self.prev
        if prev is None:
            return False
        if not (self._comparable(frame, left.ref) and self._comparable(frame, prev)):
            return False
        if self._difference(frame, prev, p.noise) > p.noise:
            left.stepped = True  # a re-code's step: the picture may come back after it
            return False
        if not left.stepped:
            return False  # it drifted away and has not stepped since: it is moving
        if self._difference(frame, left.ref, p.drift) <= p.drift:
            return True
        if not (p.coarse_drift and left.keyed):
            return False
        if left.coarse is None:
            left.coarse = coarse_picture(left.ref.luma, left.ref.bit_depth)
        return self._coarsely_at(frame, left.coarse)

    def _stepped(self, frame: VideoFrame) -> bool:
        """``frame`` is a step from the frame before (past ``noise``): what an encoder's
        re-code is. A picture that left a still run by drifting past ``drift`` a little at
        a time, each frame still against the one before, is moving -- unless it steps
        later (``_came_back``)."""
        prev, noise = self.prev, self.params.noise
        if prev is None or not self._comparable(frame, prev):
            return True
        return self._difference(frame, prev, noise) > noise

    def _outlasts(self, pending: _Left, t: float) -> bool:
        """The still run leaving at ``t`` was longer than ``pending``'s (not raised), whose
        return is still awaited: it is the picture to come back to. (Motion holds a
        picture for a frame or two -- a duplicate -- just before a hold: that picture's
        return, awaited, kept the hold's from being awaited at all.)"""
        return not pending.held and t - self.ref_t > pending.at - pending.ref_t

    def _resume(self, frame: VideoFrame, left: _Left) -> list[Change]:
        """The picture came back: the freeze goes on from its first frame, compared from
        now on with the picture as it came back (the encoder refines that one further;
        against the old one its refinements would soon pass ``drift``)."""
        self.prev = frame
        out = [Change(frame.t, False)] if self.active and not left.held else []
        self.ref, self.ref_t, self.ref_pattern = frame, left.ref_t, None
        self.ref_black = self._black(frame)
        if left.held:
            return out  # it never ended (coarse: the frozen picture's still)
        self.ref_coarse = left.coarse  # the frozen picture's, if it was asked
        # Found on from its first frame -- unless, as it came back, the picture is black or
        # a still test pattern, which are left alone as in on_video (a picture that stepped
        # into black within drift raised freeze beside black).
        self.active = not (self.ref_black or self._still_pattern(frame))
        if not self.active:
            return out
        return [*out, Change(left.ref_t, True, details={"returned_at": round(frame.t, 3)})]

    def finish(self, t: float) -> list[Change]:
        left, self.left = self.left, None
        return [Change(left.at, False)] if left is not None and left.held else []

    def _reencoded(self, frame: VideoFrame, ref: VideoFrame, mafd: float) -> bool:
        """Still as an encoder sends a still picture: within ``drift`` of the reference,
        and still against the frame before, or a key frame's step (and the next's).
        ``mafd`` (to the reference) was measured only as exactly as ``noise`` needed: it
        is at least a lower bound."""
        p, prev = self.params, self.prev
        if mafd > p.drift or prev is None or not self._comparable(prev, frame):
            return False
        # Against the frame before first: a moving picture fails there, at one grid's cost.
        step = p.drift if self.since_key <= 1 else p.noise
        if self._difference(frame, prev, step) > step:
            return False
        return self._difference(frame, ref, p.drift) <= p.drift

    def _raised(self, t: float) -> bool:
        """The open still run has lasted ``d`` by ``t``: raised (or due, frames missing)."""
        return self.active and t - self.ref_t >= self.params.d

    def _shimmering(self, frame: VideoFrame, ref: VideoFrame) -> bool:
        """A raised freeze through a starved encoder: the picture re-coded (each frame
        ``noise`` or more from the one before, and past ``drift``), but its coarse picture
        where it was -- no block moved past ``coarse_drift``, and the picture not
        brightened or darkened as a whole past ``drift``. Motion and cuts move blocks
        (module doc)."""
        if not (self.params.coarse_drift and self._raised(frame.t)):
            return False
        if self.ref_coarse is None:
            self.ref_coarse = coarse_picture(ref.luma, ref.bit_depth)
        return self._coarsely_at(frame, self.ref_coarse)

    def _coarsely_at(self, frame: VideoFrame, coarse: np.ndarray) -> bool:
        """No block of ``frame``'s coarse picture past ``coarse_drift`` from ``coarse``
        (a comparable frame's), nor their average (a fade) past ``drift``."""
        p = self.params
        moved = coarse_picture(frame.luma, frame.bit_depth) - coarse
        return (
            float(np.abs(moved).max()) <= p.coarse_drift
            and abs(float(moved.mean())) <= p.drift * 256  # 8-bit, as _difference scales
        )

    def _still_pattern(self, ref: VideoFrame) -> bool:
        if self.params.test_patterns:
            return False
        if self.ref_pattern is None:
            self.ref_pattern = is_test_pattern(ref.grid(), ref.bit_depth)
        return self.ref_pattern

    def readings(self) -> dict[str, float]:
        return {"test_pattern": 1.0} if self.ref_pattern else {}

    @staticmethod
    def _comparable(a: VideoFrame, b: VideoFrame) -> bool:
        return a.luma.shape == b.luma.shape and (a.chroma is None) == (b.chroma is None)

    def _difference(self, frame: VideoFrame, ref: VideoFrame, threshold: float) -> float:
        """Mean absolute difference (share of full scale), only as exact as comparing it
        with ``threshold`` needs: moving pictures are settled by the luma grid alone (the
        chroma planes can only add), near-threshold ones on every pixel."""
        scale = 1 << frame.bit_depth
        planes = self._planes(frame)
        weights = [p.shape[0] * p.shape[1] for p in planes]
        whole = sum(weights)
        luma_part = mean_abs_diff(frame.grid(), ref.grid()) * weights[0] / whole
        if luma_part / scale >= 2.0 * threshold:
            return luma_part / scale  # a lower bound already clear of the threshold
        mafd = self._mafd(self._grids(frame), self._grids(ref), planes) / scale
        if 0.5 * threshold < mafd < 2.0 * threshold:  # too close to call on a sample grid
            # Every pixel, luma first: it is two thirds of the weight (4:2:0), and when it
            # alone is past the threshold the chroma planes can only add.
            total = mean_abs_diff(frame.luma, ref.luma) * weights[0]
            if total / whole / scale <= threshold:
                for plane, ref_plane, weight in zip(
                    planes[1:], self._planes(ref)[1:], weights[1:], strict=True
                ):
                    total += mean_abs_diff(plane, ref_plane) * weight
            mafd = total / whole / scale
        return mafd
