"""Clipping: the waveform held at full scale, sustained.

Two signatures, either one counts:
- runs of >= ``run`` (3) consecutive samples at >= ``level`` (0.999) of full scale --
  PCM clipped at full scale, or lossy-decoded audio overshooting past 1.0;
- flat tops: >= ``plateau_run`` (6) consecutive samples above ``plateau_level`` (0.9)
  that barely change (``plateau_flatness``) -- what a clipped signal looks like after
  an AAC encoder that scales its peaks back (FFmpeg's own turns a plateau at 1.0 into
  one near 0.95). Clean loud tones above ~400 Hz are not flat for 6 samples at 48 kHz.

Clipped runs closer together than ``gap_s`` belong to one episode; an episode is raised
once it has lasted ``d``. It starts at the first clipped sample and ends after the last.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from service.detectors.base import Change, Detector, Params
from service.media.frames import AudioFrame

CARRY = 16  # samples kept from the previous block so runs across blocks are seen


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
    gap_s: float = Field(0.05, gt=0.0, le=10.0)
    severity: str = Field("warning", pattern="^(warning|critical)$")


class ClippingDetector(Detector[ClippingParams]):
    name = "clipping"
    group = "audio"
    params_model = ClippingParams
    wants_audio = True

    def __init__(self, params: ClippingParams) -> None:
        super().__init__(params)
        self.carry: np.ndarray | None = None
        self.active = False
        self.last_clip = 0.0

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
            return self._maybe_end(frame.end, out)
        mag = np.abs(x)
        hot = mag >= p.level
        full = run_starts(hot[:, :-1] & hot[:, 1:], p.run)
        high = mag >= p.plateau_level
        flat = np.abs(np.diff(x, axis=1)) <= p.plateau_flatness
        plateau = run_starts(high[:, :-1] & high[:, 1:] & flat, p.plateau_run)
        starts = np.union1d(full, plateau)
        if starts.size:
            rate = frame.sample_rate
            t_first = frame.t - n_carry / rate
            times = t_first + starts / rate
            span = p.run / rate
            prev = np.empty_like(times)
            prev[0] = self.last_clip if self.active else -np.inf
            prev[1:] = times[:-1] + span
            for i in np.flatnonzero(times - prev > p.gap_s):
                if self.active:
                    out.append(Change(float(prev[i]), False))
                out.append(Change(float(times[i]), True))
                self.active = True
            self.last_clip = max(self.last_clip, float(times[-1]) + span)
        return self._maybe_end(frame.end, out)

    def _maybe_end(self, now: float, out: list[Change]) -> list[Change]:
        if self.active and now - self.last_clip > self.params.gap_s:
            out.append(Change(self.last_clip, False))
            self.active = False
        return out
