"""Audio/video sync on line-up signals: a short flash with a short tone burst.

Each flash (a picture, or a run of pictures up to ``max_flash_s`` long, much brighter
than the pictures before and after it: line-up generators flash one frame, some two or
three, and a frame-rate conversion may double one) is paired, by its first picture, with
the onset of the nearest tone burst (sound after >= 200 ms of quiet, lasting
<= ``max_burst_s``) within half a second; ``offset_ms`` > 0 means the audio is later
than the video. An offset beyond BT.1359's detectability (45 ms early, 125 ms late) on
``confirm`` consecutive pairs opens a run dated to the first of them; the first pair
back in range ends it.
Streams that carry no line-up signal produce no measurements and no events.
A stream decoding reference pictures only (service.media.decode_frames) may drop a
one-picture flash, so every picture is decoded for ``LINEUP_HOLD_S`` after each sign of
a line-up signal: a flash seen, or a burst evenly spaced after the two before it
(``REGULAR_S``: a line-up repeats like a clock; programme speech also makes "bursts", a
short sound after a pause, 45 a minute in avmon's synthetic speech, none evenly). A flash
whose first picture came after dropped ones is not dated (it may have begun on one of
them): it only asks for every picture. So a line-up's first flashes (one to three) go
unmeasured, and a raise is dated to a later pair; every pair measured is measured on
every picture. (Every stream's first seconds decoded in full, for a line-up as
monitoring starts, was tried: 11 streams started at once on a core sized for reference
decoding fell behind for those seconds.)

Independently, on any programme, the audio timestamps are checked against the samples
they carry (``method: timestamps``, see ``_timeline``).
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

import numpy as np
from pydantic import Field

from service.detectors._pixels import integer_mean
from service.detectors.base import Change, Detector, Params
from service.media.frames import AudioFrame, VideoFrame

PAIR_WINDOW_S = 0.5
QUIET_BEFORE_S = 0.2
LINEUP_HOLD_S = 10.0  # every picture decoded this long after a line-up's flash or burst
# Bursts evenly spaced: the last two intervals within REGULAR_S plus REGULAR_SHARE of
# the first of each other, at most LINEUP_PERIOD_S each. A generator's are sample-exact
# (FFmpeg's aevalsrc through AAC: 1.0000 s apart to the 0.1 ms); avmon's synthetic speech,
# 60 s: 45 bursts, 4 evenly spaced triples within 20 ms + 2 %, none within 5 ms + 0.5 %.
REGULAR_S, REGULAR_SHARE, LINEUP_PERIOD_S = 0.005, 0.005, 5.0


class AvSyncParams(Params):
    d: float = Field(0.0, ge=0.0, le=3600.0)
    early_ms: float = Field(45.0, ge=0.0, le=5000.0, description="audio early tolerance")
    late_ms: float = Field(125.0, ge=0.0, le=5000.0, description="audio late tolerance")
    confirm: int = Field(2, ge=1, le=100, description="consecutive pairs to raise")
    flash_jump: float = Field(
        0.3, gt=0.0, le=1.0, description="flash brightness jump, share of range"
    )
    burst_level_db: float = Field(-30.0, ge=-90.0, le=0.0)
    max_burst_s: float = Field(0.1, gt=0.0, le=2.0)
    max_flash_s: float = Field(
        0.1, gt=0.0, le=1.0, description="first to last picture of a flash, at most"
    )


class AvSyncDetector(Detector[AvSyncParams]):
    name = "av_sync"
    group = "sync"
    resume_after_s = 5.0  # an offset is known once a flash and its beep have been paired
    params_model = AvSyncParams
    wants_video = True
    wants_audio = True

    def __init__(self, params: AvSyncParams) -> None:
        super().__init__(params)
        self.flashes: deque[float] = deque(maxlen=8)
        self.bursts: deque[float] = deque(maxlen=8)
        self.burst_level = 10 ** (params.burst_level_db / 20)
        self.drifting = False
        self.bad: list[tuple[float, float]] = []  # consecutive out-of-range (t, offset)
        self.active = False
        self.last_pair_t = -1e9
        self.measurements = 0
        self.lineup_until = -math.inf  # media time: every picture decoded until then
        self.onsets: deque[float] = deque(maxlen=3)  # the last bursts heard, paired or not
        self._follow_from_here()

    def _follow_from_here(self) -> None:
        """What follows the signal from one item to the next: set at the start, and
        again after an outage (see ``on_gap``)."""
        self.previous: float | None = None  # brightness of the picture before
        # A bright run under way: (first picture's t, brightness before it, its dimmest,
        # whether its first picture is dated: none dropped before it).
        self.run: tuple[float, float, float, bool] | None = None
        self.pending = np.zeros(0, np.float32)
        self.audio_origin: float | None = None
        self.audio_seconds = 0.0
        self.loud = False
        self.quiet_since = -1e9
        self.candidate: float | None = None  # onset of a burst not yet confirmed short

    # ---- video: short flashes
    def on_video(self, frame: VideoFrame) -> list[Change]:
        grid = frame.grid()
        span = max(frame.white_level - frame.black_level, 1)
        level = (integer_mean(grid) - frame.black_level) / span
        out: list[Change] = []
        flash = self._flash(frame.t, level, frame.pictures == 1)
        if flash is not None:
            start, dated = flash
            self.lineup_until = frame.t + LINEUP_HOLD_S
            if dated:
                self.flashes.append(start)
                out += self._pair()
        return out + self._expire(frame.t)

    def _flash(self, t: float, level: float, follows: bool) -> tuple[float, bool] | None:
        """(first picture's time, dated) of a flash that ends at this picture, if one does.
        A flash: pictures all brighter by ``flash_jump`` than the one before them and
        than the one after them, the last at most ``max_flash_s`` after the first.
        ``follows``: this picture directly follows the one before (none dropped between
        them); a flash whose first picture does not may have begun on a dropped one, so
        it is not dated."""
        jump, before = self.params.flash_jump, self.previous
        self.previous = level
        run = self.run
        if run is None:
            if before is not None and level - before >= jump and level > 0.6:
                self.run = (t, before, level, follows)
            return None
        start, base, dimmest, dated = run
        if dimmest - level >= jump:  # back down, and the run was short: a flash
            self.run = None
            return start, dated
        if level - base >= jump and level > 0.6 and t - start <= self.params.max_flash_s + 1e-6:
            self.run = (start, base, min(dimmest, level), dated)
        else:
            self.run = None  # a cut to a bright scene, or a slow change: no flash
        return None

    def every_frame_until(self) -> float:
        return self.lineup_until

    def on_gap(self, t: float) -> None:
        # The audio timeline restarts (the missing media is no timestamp drift), and a
        # flash or burst under way when the source was lost is not one.
        self._follow_from_here()

    # ---- audio
    def on_audio(self, frame: AudioFrame) -> list[Change]:
        return self._timeline(frame) + self._bursts(frame)

    # ---- audio timestamps vs audio samples
    def _timeline(self, frame: AudioFrame) -> list[Change]:
        """Drift of the audio timestamps from the samples they carry.

        A player that plays audio by its sample clock and video by timestamps drifts by
        exactly this amount: when timestamps run ahead of the samples (gaps, a wrong
        rate in the encoder's stamping), the audio is heard early."""
        if self.audio_origin is None:
            self.audio_origin = frame.t
        offset_ms = ((self.audio_origin + self.audio_seconds) - frame.t) * 1000.0
        self.audio_seconds += frame.duration
        p = self.params
        bad = offset_ms > p.late_ms or offset_ms < -p.early_ms
        if bad == self.drifting:
            return []
        self.drifting = bad
        details = {"offset_ms": round(offset_ms, 1), "method": "timestamps"} if bad else {}
        return [Change(frame.t, bad, key="timestamps", details=details)]

    # ---- audio: short tone bursts after quiet
    def _bursts(self, frame: AudioFrame) -> list[Change]:
        # Work on a 1 ms peak envelope: a tone's zero crossings must not look like gaps.
        rate = frame.sample_rate
        chunk = max(rate // 1000, 1)
        peak = frame.peak()
        if self.pending.size:
            peak = np.concatenate([self.pending, peak])
        t0 = frame.end - peak.size / rate
        n = peak.size // chunk
        self.pending = peak[n * chunk :]
        chunks = peak[: n * chunk].reshape(n, chunk)
        loud = chunks.max(axis=1) >= self.burst_level
        out: list[Change] = []
        idx = np.flatnonzero(np.diff(loud.view(np.int8), prepend=np.int8(self.loud)))
        for i in idx.tolist():
            t = t0 + i * chunk / rate
            if loud[i]:
                if t - self.quiet_since >= QUIET_BEFORE_S:
                    first = int(np.argmax(chunks[i] >= self.burst_level))
                    self.candidate = t + first / rate
            else:
                self.quiet_since = t
                if self.candidate is not None and t - self.candidate <= self.params.max_burst_s:
                    self.bursts.append(self.candidate)
                    self._heard(self.candidate)
                    out += self._pair()
                self.candidate = None
            self.loud = bool(loud[i])
        if (
            self.loud
            and self.candidate is not None
            and frame.end - self.candidate > self.params.max_burst_s
        ):
            self.candidate = None  # programme sound, not a burst
        return out

    def _heard(self, onset: float) -> None:
        """A burst: a line-up's once evenly spaced after the two before it."""
        self.onsets.append(onset)
        if len(self.onsets) == 3:
            a, b, c = self.onsets
            within = REGULAR_S + REGULAR_SHARE * (b - a)
            if b - a <= LINEUP_PERIOD_S and abs((c - b) - (b - a)) <= within:
                self.lineup_until = onset + LINEUP_HOLD_S

    # ---- pairing and the run
    def _pair(self) -> list[Change]:
        out: list[Change] = []
        for f in list(self.flashes):
            near = [b for b in self.bursts if abs(b - f) <= PAIR_WINDOW_S]
            if not near:
                continue
            b = min(near, key=lambda x: abs(x - f))
            self.flashes.remove(f)
            self.bursts.remove(b)
            out += self._measure(f, (b - f) * 1000.0)
        return out

    def _measure(self, t: float, offset_ms: float) -> list[Change]:
        self.measurements += 1
        self.last_pair_t = t
        p = self.params
        bad = offset_ms > p.late_ms or offset_ms < -p.early_ms
        if not bad:
            self.bad.clear()
            if self.active:
                self.active = False
                return [Change(t, False)]
            return []
        self.bad.append((t, offset_ms))
        if self.active or len(self.bad) < p.confirm:
            return []
        self.active = True
        offset = median(o for _, o in self.bad)
        return [
            Change(
                self.bad[0][0],
                True,
                details={"offset_ms": round(offset, 1), "method": "lineup"},
            )
        ]

    def _expire(self, now: float) -> list[Change]:
        # The line-up signal stopped: the measurement (and so the run) ends with it.
        if self.active and now - self.last_pair_t > 3.0:
            self.active = False
            self.bad.clear()
            return [Change(self.last_pair_t + 1.0, False)]
        return []
