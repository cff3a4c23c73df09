"""Clipping: the waveform held at full scale, sustained.

Two signatures, either one counts:
- runs of >= ``run`` (3) consecutive samples at >= ``level`` (0.999) of full scale --
  PCM clipped at full scale, or lossy-decoded audio overshooting past 1.0;
- flat tops: >= ``plateau_run`` (6) consecutive samples above ``plateau_level`` (0.9)
  that barely change (``plateau_flatness``) -- what a clipped signal looks like after
  an AAC encoder that scales its peaks back (FFmpeg's own turns a plateau at 1.0 into
  one near 0.95) -- with a corner: somewhere in or beside the flat run the waveform
  bends far more sharply than a smooth crest flat for as long would (``CORNER``). A
  loud clean tone under ~400 Hz is flat for dozens of samples at each crest, but
  bends there evenly; a clipped one bends at the plateau's ends.

Clipped runs closer together than ``gap_s`` form one burst. A clipped tone is one long
burst, but overdriven speech or music clips only on its syllables and beats, in bursts
split by pauses of 0.1-0.7 s, each often shorter than ``d``. So bursts also join into one
episode by *density*: the share of the last ``window_s``'s 100 ms slots that hold a
clipped run.
- Bursts that bring the share to >= ``join_share`` (0.4) continue the episodes that
  ended, not raised, with clipped slots still in the window, dated from the first one's
  start (a run already pending is re-dated). The lifecycle then raises the whole once it
  has lasted ``d``: bursts joined in under ``d`` from first to last raise nothing.
- A raised episode is held open across a pause while the share stays >= ``hold_share``
  (0.2), so one clipped passage is one alarm. An episode not raised yet is never held:
  the lifecycle would count the pause as clipping and could raise a burst shorter
  than ``d``.
An episode starts at its first clipped sample and ends after its last. Isolated clipped
peaks (a kick drum on a hot master, two a second) stay under ``join_share``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from service.detectors.base import Change, Detector, Params
from service.media.frames import AudioFrame

CARRY = 16  # samples kept from the previous block so runs across blocks are seen
SLOT_S = 0.1  # the density's time resolution
# A flat top is a clipped one only if the waveform bends this many times more sharply in
# or beside it (CORNER_REACH samples) than a smooth peak flat for as long would: a loud
# clean tone under ~400 Hz is flat for dozens of samples at its crests, which read as
# plateaus (clipping raised for the whole of a 40-350 Hz sine at -0.3 dBFS through AAC).
# Clean sines bend 0.1-1.1x (at most 4.7x at a crest), clipped ones 5-200x at the median.
CORNER = 5.0
CORNER_REACH = 6


def run_starts(pairs: np.ndarray, length: int) -> np.ndarray:
    """Sample indices where ``length`` consecutive samples satisfy a pairwise condition.

    ``pairs[c, i]`` says samples i and i+1 of channel c belong together."""
    need = length - 1
    if pairs.shape[1] < need:
        return np.zeros(0, np.int64)
    acc = pairs[:, : pairs.shape[1] - need + 1].copy()
    for j in range(1, need):
        acc &= pairs[:, j : pairs.shape[1] - need + 1 + j]
    return np.flatnonzero(acc.any(axis=0))


class ClippingParams(Params):
    d: float = Field(0.5, ge=0.0, le=3600.0)
    level: float = Field(0.999, gt=0.0, le=4.0, description="share of full scale")
    run: int = Field(3, ge=2, le=CARRY, description="consecutive samples")
    plateau_level: float = Field(0.9, gt=0.0, le=4.0)
    plateau_run: int = Field(6, ge=2, le=CARRY)
    plateau_flatness: float = Field(0.01, ge=0.0, le=1.0, description="max sample step")
    gap_s: float = Field(0.05, gt=0.0, le=10.0, description="runs this close form one burst")
    window_s: float = Field(1.0, ge=SLOT_S, le=10.0, description="density window")
    join_share: float = Field(0.4, gt=0.0, le=1.0, description="share of clipped slots")
    hold_share: float = Field(0.2, gt=0.0, le=1.0, description="share of clipped slots")
    severity: str = Field("warning", pattern="^(warning|critical)$")

    @model_validator(mode="after")
    def _hold_below_join(self) -> ClippingParams:
        if self.hold_share > self.join_share:
            raise ValueError("hold_share must not exceed join_share")
        return self


class ClippingDetector(Detector[ClippingParams]):
    name = "clipping"
    group = "audio"
    params_model = ClippingParams
    wants_audio = True

    def __init__(self, params: ClippingParams) -> None:
        super().__init__(params)
        self.carry: np.ndarray | None = None
        self.n_slots = max(1, round(params.window_s / SLOT_S))
        self.join_slots = max(1, math.ceil(params.join_share * self.n_slots - 1e-9))
        self.hold_slots = max(1, math.ceil(params.hold_share * self.n_slots - 1e-9))
        self.slots: list[int] = []  # indices of recent 100 ms slots holding a clipped run
        self.active = False
        self.start = 0.0
        self.last_clip = 0.0
        self.on_until = 0.0  # last input end the lifecycle saw this episode on at
        # (start, end) of the episodes that ended lately without being raised: joinable.
        self.recent: list[tuple[float, float]] = []

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        p = self.params
        x = frame.samples
        carry = self.carry if self.carry is not None and self.carry.shape[0] == x.shape[0] else None
        if carry is not None:
            x = np.concatenate([carry, x], axis=1)
        n_carry = 0 if carry is None else carry.shape[1]
        self.carry = x[:, -CARRY:]
        out: list[Change] = []
        # Cheap exit: nothing near full scale in this block (the usual case).
        if float(frame.peak().max()) < min(p.level, p.plateau_level) and (
            carry is None or float(np.abs(carry).max()) < min(p.level, p.plateau_level)
        ):
            return self._end_of_input(frame.end, out)
        mag = np.abs(x)
        hot = mag >= p.level
        full = run_starts(hot[:, :-1] & hot[:, 1:], p.run)
        high = mag >= p.plateau_level
        step = np.diff(x, axis=1)
        flat = np.abs(step) <= p.plateau_flatness
        plateau = run_starts(self._cornered(step, high[:, :-1] & high[:, 1:] & flat), p.plateau_run)
        starts = np.union1d(full, plateau)
        if starts.size:
            times = frame.t + (starts - n_carry) / frame.sample_rate
            span = p.run / frame.sample_rate
            # Bursts: split where a run begins more than gap_s after the previous one ended.
            cuts = np.flatnonzero(np.diff(times) - span > p.gap_s) + 1
            for burst in np.split(times, cuts):
                self._burst(float(burst[0]), float(burst[-1]) + span, burst, out)
        return self._end_of_input(frame.end, out)

    def _cornered(self, step: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """``flat`` (pairs of samples high and flat; ``step``: each pair's difference)
        kept only on the runs of at least ``plateau_run`` samples that are a clipped top,
        not a smooth peak: somewhere in the run or within CORNER_REACH of it, the waveform
        bends (second difference) at least CORNER times as sharply as a smooth peak flat
        for that long would (its steps grow from 0 to ``plateau_flatness`` over half the
        run, evenly)."""
        p = self.params
        keep = np.zeros_like(flat)
        edges = np.diff(flat.view(np.int8), axis=1, prepend=np.int8(0), append=np.int8(0))
        for c in range(flat.shape[0]):
            a = np.flatnonzero(edges[c] == 1)  # a run's first pair
            b = np.flatnonzero(edges[c] == -1)  # one past its last
            long = b - a >= p.plateau_run - 1
            if not long.any():
                continue
            a, b = a[long], b[long]  # the run: samples a .. b
            # |second difference| at sample i: bend[i + R], zeros beyond the block.
            r = CORNER_REACH
            bend = np.zeros(step.shape[1] + 2 * r + 2, np.float32)
            bend[r + 1 : r + step.shape[1]] = np.abs(np.diff(step[c]))
            # The largest within the run (runs never overlap: one reduceat) and within r
            # samples either side (fixed widths: no window as long as a long run).
            inside = np.maximum.reduceat(bend, np.column_stack([a + r, b + r + 1]).ravel())[::2]
            side = np.arange(1, r + 1)
            beside = np.maximum(bend[(a + r)[:, None] - side], bend[(b + r)[:, None] + side])
            smooth = 2 * p.plateau_flatness / (b - a + 1)  # per sample, squared
            clipped = np.maximum(inside, beside.max(axis=1)) >= CORNER * smooth
            marks = np.zeros(flat.shape[1] + 1, np.int32)
            np.add.at(marks, a[clipped], 1)
            np.add.at(marks, b[clipped], -1)
            keep[c] = np.cumsum(marks[:-1]) > 0
        return keep

    def _end_of_input(self, now: float, out: list[Change]) -> list[Change]:
        self._maybe_end(now, out)
        if self.active:
            self.on_until = now  # the lifecycle ticks the open episode at this input's end
        return out

    def _raised(self) -> bool:
        """Whether the lifecycle has raised the open episode: it lasted ``d`` by its last
        clipped sample or by the end of an input it was still on at."""
        return max(self.last_clip, self.on_until) - self.start >= self.params.d - 1e-6

    def _burst(self, first: float, last: float, times: np.ndarray, out: list[Change]) -> None:
        self._maybe_end(first, out)
        joined: float | None = None
        for slot in np.unique(np.floor(times / SLOT_S)).astype(int).tolist():
            self._window(slot)
            if not self.slots or self.slots[-1] != slot:
                self.slots.append(slot)
            if self.recent and len(self.slots) >= self.join_slots:
                # Dense enough: continue the episodes whose clipped slots are in the window.
                since = (slot - self.n_slots + 1) * SLOT_S
                starts = [a for a, b in self.recent if b > since]
                if starts:
                    joined = min(starts) if joined is None else min(joined, *starts)
                self.recent = []
        self.last_clip = max(self.last_clip, last)
        if not self.active:
            start = first if joined is None else joined
            self.active, self.start, self.on_until = True, start, start
            out.append(Change(start, True))
        elif joined is not None and joined < self.start and not self._raised():
            # Re-date the pending run; closing it at zero length never raises it.
            out += [Change(self.start, False), Change(joined, True)]
            self.start = self.on_until = joined

    def _window(self, newest: int) -> None:
        """Keep only the clipped slots of the window ending at slot ``newest`` (and none
        "ahead" of it, should media time jump back)."""
        self.slots = [s for s in self.slots if newest - self.n_slots < s <= newest]

    def _maybe_end(self, now: float, out: list[Change]) -> None:
        p = self.params
        if not self.active or now - self.last_clip <= p.gap_s:
            return
        raised = self._raised()
        if raised:
            self._window(math.floor(now / SLOT_S))
            if len(self.slots) >= self.hold_slots:
                return  # a raised episode holds across the pause
        out.append(Change(self.last_clip, False))
        self.active = False
        if raised:
            self.recent = []  # never date a later episode back into a raised one
        else:
            since = self.last_clip - p.window_s
            self.recent = [e for e in self.recent if e[1] > since] + [(self.start, self.last_clip)]

    def finish(self, t: float) -> list[Change]:
        if not self.active:
            return []
        self.active = False
        return [Change(self.last_clip, False)]
