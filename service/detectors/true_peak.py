"""True peak over the limit: the 4x oversampled waveform (BS.1770-4 / EBU R128) above
``max_dbtp`` (-1 dBTP by default, R128's limit for delivery).

Sample peaks miss inter-sample peaks -- the level a DAC or a lossy encoder will
reconstruct between samples, on programme audio up to ~3 dB above the highest sample
(an adversarial sequence, up to 7.4 dB with this interpolator) -- so a programme
peaking at -0.5 dBFS sample peak may overshoot 0 dBTP. Overshoots closer together than
``gap_s`` are one episode, raised once it has lasted ``d`` (0: at once); it starts at the
first overshoot and ends after the last. Its highest true peak is in the details (at the
open: so far; at the close: the episode's). Blocks that cannot reach the limit (sample
peak more than the interpolator's largest lift, 7.4 dB, under it) are not oversampled.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from service.detectors._audio import db_to_amplitude
from service.detectors.base import Change, Detector, Params
from service.detectors.bs1770 import TruePeakMeter, dbtp
from service.media.frames import AudioFrame


class TruePeakParams(Params):
    d: float = Field(0.0, ge=0.0, le=3600.0)
    max_dbtp: float = Field(-1.0, ge=-30.0, le=6.0, description="dBTP")
    gap_s: float = Field(0.5, gt=0.0, le=60.0)
    severity: str = Field("warning", pattern="^(warning|critical)$")


class TruePeakDetector(Detector[TruePeakParams]):
    name = "true_peak"
    group = "audio"
    params_model = TruePeakParams
    wants_audio = True

    def __init__(self, params: TruePeakParams) -> None:
        super().__init__(params)
        self.meter: TruePeakMeter | None = None
        self.limit = db_to_amplitude(params.max_dbtp)
        self.active = False
        self.last_over = 0.0
        self.highest = 0.0  # this episode's highest true peak (linear)

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        x = frame.samples
        if self.meter is None:
            self.meter = TruePeakMeter(x.shape[0])
        out: list[Change] = []
        if self.meter.bound(float(frame.peak().max())) < self.limit:
            self.meter.skip(x)
            return self._maybe_end(frame.end, out)
        peaks = self.meter.feed(x)
        over = np.flatnonzero(peaks >= self.limit)
        if over.size:
            rate = frame.sample_rate
            times = frame.t + (over - self.meter.lag) / rate
            block_max = float(peaks[over].max())
            if self.active and times[0] - self.last_over > self.params.gap_s:
                out.append(self._end())
            if not self.active:
                self.highest = block_max
                details = {"true_peak_dbtp": round(dbtp(block_max), 2)}
                out.append(Change(float(times[0]), True, details=details))
                self.active = True
            self.highest = max(self.highest, block_max)
            self.last_over = float(times[-1]) + 1 / rate
        return self._maybe_end(frame.end, out)

    def _maybe_end(self, now: float, out: list[Change]) -> list[Change]:
        if self.active and now - self.last_over > self.params.gap_s:
            out.append(self._end())
        return out

    def _end(self) -> Change:
        self.active = False
        highest = round(dbtp(self.highest), 2)
        return Change(self.last_over, False, details={"true_peak_dbtp": highest})
