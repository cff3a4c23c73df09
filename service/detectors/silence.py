"""Silence: every channel below -60 dBFS for >= d (FFmpeg silencedetect, all channels).

A sample position is silent when all channels are below the noise level; one louder
sample on any channel ends the run. Runs are dated to the first silent sample.
"""

from __future__ import annotations

from pydantic import Field

from service.detectors._audio import db_to_amplitude, transitions
from service.detectors.base import Change, Detector, Params
from service.media.frames import AudioFrame


class SilenceParams(Params):
    d: float = Field(2.0, ge=0.0, le=3600.0)
    noise_db: float = Field(-60.0, ge=-140.0, le=0.0)


class SilenceDetector(Detector[SilenceParams]):
    name = "silence"
    group = "audio"
    params_model = SilenceParams
    wants_audio = True

    def __init__(self, params: SilenceParams) -> None:
        super().__init__(params)
        self.level = db_to_amplitude(params.noise_db)
        self.silent = False

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        quiet = frame.peak() < self.level
        idx, values = transitions(quiet, self.silent)
        if idx.size == 0:
            return []
        self.silent = bool(values[-1])
        if self.params.d >= frame.duration and idx.size > 2:
            # Runs that start and end inside this block are shorter than d: only the end
            # of a run carried in and the start of a run reaching the block's end matter.
            # (Speech crosses zero thousands of times a second.)
            keep = [i for i in (0, idx.size - 1) if bool(values[i]) == (i == idx.size - 1)]
            idx, values = idx[keep], values[keep]
        rate = frame.sample_rate
        return [Change(frame.t + int(i) / rate, bool(v)) for i, v in zip(idx, values, strict=True)]
