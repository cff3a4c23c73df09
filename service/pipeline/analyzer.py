"""Fan decoded frames out to a stream's detectors and collect defect events."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service.detectors.base import Change, Detector
from service.media.decoder import MediaItem
from service.media.frames import AudioFrame, DecodeError, VideoFrame
from service.observability.sampling import TIME_ONE_IN
from service.pipeline.lifecycle import Defect, DefectEvent, Lifecycle

log = logging.getLogger(__name__)

# ~170 ms at 48 kHz: per-call costs dominate the audio detectors, and batching 8192
# samples instead of 4096 cut their CPU by ~25% (20 s 720p clip, one run, 3 sizes
# tried); their times are per sample, so only an alarm's wall-clock delay grows.
AUDIO_BATCH_SAMPLES = 8192

# A stream's detectors of one kind with the method each reacts to an input with.
_Calls = list[tuple[Detector[Any], Callable[[Any], list[Change]]]]


class Analyzer:
    """Runs detectors over one stream's frames. Not thread-safe: one per stream."""

    def __init__(self, detectors: list[Detector[Any]]) -> None:
        self.detectors = detectors
        self.video = [d for d in detectors if d.wants_video]
        self.audio = [d for d in detectors if d.wants_audio]
        self._video_calls: _Calls = [(d, d.on_video) for d in self.video]
        self._audio_calls: _Calls = [(d, d.on_audio) for d in self.audio]
        self._every_frame = [
            d for d in detectors if type(d).every_frame_until is not Detector.every_frame_until
        ]
        self.lifecycle = Lifecycle()
        self.t_end = 0.0  # end of the media seen so far
        self.last_video_t: float | None = None
        self.frame_period = 1 / 30
        self.detector_seconds: dict[str, float] = {d.name: 0.0 for d in detectors}
        # Inputs on which a detector raised: it is skipped for that input, the others
        # carry on (one detector's bug, or input it did not expect, blinds no other).
        self.detector_errors: dict[str, int] = {d.name: 0 for d in detectors}
        self.first_error: dict[str, str] = {}
        self._audio_pending: list[AudioFrame] = []
        self._audio_samples = 0
        self._untimed = {"video": 0, "audio": 0}  # inputs since the last timed one

    def inherit(self, defect: Defect) -> bool:
        """Continue or close an open defect raised by the unit's previous owner; False
        if none of these detectors raises its type (the caller closes it)."""
        if not any(d.name == defect.type for d in self.detectors):
            return False
        self.lifecycle.inherit(defect)
        return True

    @property
    def wants_video(self) -> bool:
        return bool(self.video)

    def every_frame_until(self) -> float:
        """Media time until which a detector needs every picture decoded (read by the
        reader, which may decode reference pictures only before it)."""
        return max((d.every_frame_until() for d in self._every_frame), default=-math.inf)

    @property
    def wants_audio(self) -> bool:
        return bool(self.audio)

    def feed(self, item: MediaItem) -> list[DefectEvent]:
        if isinstance(item, AudioFrame):
            # Audio arrives in small codec frames (~21 ms); detectors cost mostly per
            # call, so contiguous frames are batched (AUDIO_BATCH_SAMPLES) first.
            pending = self._audio_pending
            if pending and (
                abs(item.t - pending[-1].end) > 1.5 / item.sample_rate
                or item.sample_rate != pending[0].sample_rate
                or item.channels != pending[0].channels
                or item.layout != pending[0].layout
            ):
                events = self._analyse(self._take_audio())
            else:
                events = []
            self._audio_pending.append(item)
            self._audio_samples += item.samples.shape[1]
            if self._audio_samples >= AUDIO_BATCH_SAMPLES:
                events += self._analyse(self._take_audio())
            return events
        return self._analyse(item)

    def _take_audio(self) -> AudioFrame:
        frames, self._audio_pending, self._audio_samples = self._audio_pending, [], 0
        if len(frames) == 1:
            return frames[0]
        samples = np.concatenate([f.samples for f in frames], axis=1)
        first = frames[0]
        return AudioFrame(
            t=first.t, samples=samples, sample_rate=first.sample_rate, layout=first.layout
        )

    def _analyse(self, item: MediaItem) -> list[DefectEvent]:
        events: list[DefectEvent] = []
        life = self.lifecycle
        life.input(item.t)
        if isinstance(item, VideoFrame):
            if self.last_video_t is not None and 0 < item.t - self.last_video_t < 1.0:
                # (Pictures dropped as non-reference between the two are counted out.)
                self.frame_period = (item.t - self.last_video_t) / item.pictures
            self.last_video_t = now = item.t
            self.t_end = max(self.t_end, item.t + self.frame_period)
            events = self._run(self._video_calls, item, now, "video")
        elif isinstance(item, AudioFrame):
            now = item.end
            self.t_end = max(self.t_end, now)
            events = self._run(self._audio_calls, item, now, "audio")
        elif isinstance(item, DecodeError):
            for det in self.detectors:
                changes = self._changes(det, det.on_decode_error, item)
                if changes:
                    events += life.apply(det, changes, item.t)
        return events

    def _run(
        self,
        calls: _Calls,
        item: Any,
        now: float,
        kind: str,
    ) -> list[DefectEvent]:
        """Each detector's reaction to ``item``, through the lifecycle; CPU time measured
        on one input in ``TIME_ONE_IN`` (CPU time: wall time swells on a loaded machine)."""
        life = self.lifecycle
        events: list[DefectEvent] = []
        untimed = self._untimed[kind]
        self._untimed[kind] = untimed + 1 if untimed < TIME_ONE_IN - 1 else 0
        for det, call in calls:
            if untimed:
                changes = self._changes(det, call, item)
            else:
                t0 = time.thread_time()
                changes = self._changes(det, call, item)
                self.detector_seconds[det.name] += TIME_ONE_IN * (time.thread_time() - t0)
            events += life.apply(det, changes, now) if changes else life.tick(det, now)
        return events

    def gap(self, t: float) -> list[DefectEvent]:
        """The source was lost until media time ``t`` (see ``Gap``): what was read before
        is analysed first, then runs pending and detectors' continuity restart."""
        events = self._analyse(self._take_audio()) if self._audio_pending else []
        self.lifecycle.gap()
        for det in self.detectors:
            try:
                det.on_gap(t)
            except Exception as exc:  # see _changes
                self._failed(det, exc)
        self.last_video_t = None
        return events

    def readings(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for det in self.detectors:
            try:
                out.update(det.readings())
            except Exception as exc:  # see _changes
                self._failed(det, exc)
        return out

    def _changes(
        self, det: Detector[Any], call: Callable[[Any], list[Change]], arg: Any
    ) -> list[Change]:
        """``call(arg)``, a detector's reaction to an input; none if it raised: the
        failure is counted, and one detector's bug (or input it did not expect) takes
        no other detector down with it."""
        try:
            return call(arg)
        except Exception as exc:
            self._failed(det, exc)
            return []

    def _failed(self, det: Detector[Any], exc: Exception) -> None:
        self.detector_errors[det.name] = self.detector_errors.get(det.name, 0) + 1
        if det.name not in self.first_error:  # the traceback once; later ones are counted
            self.first_error[det.name] = f"{type(exc).__name__}: {exc}"
            log.exception("detector %s failed (later failures are only counted)", det.name)

    def finish(self) -> list[DefectEvent]:
        events = self._analyse(self._take_audio()) if self._audio_pending else []
        for det in self.detectors:
            changes = self._changes(det, det.finish, self.t_end)
            if changes:
                events += self.lifecycle.apply(det, changes, self.t_end)
        return events + self.lifecycle.finish(self.detectors, self.t_end)
