"""One channel silent while others carry sound (a lost leg of a stereo pair, dead mic).

Each channel is tracked like FFmpeg's silencedetect in per-channel mode (m=1). A
channel's run is reported once it has lasted ``d`` while the other channel of its *pair*
is not in a run of that length (stereo: the other channel) -- when every channel is
silent, that is ``silence``. ``details.channel`` is the 0-based channel index.

In layouts of more than two channels (``pairs_only``) a pair's lost leg is raised, and a
silent centre while the front pair carries sound (the dialogue is lost). A pair silent
together (the surrounds of a speech programme, or of a stereo programme carried in 5.1)
and other unpaired channels are not: a monitor raising those on every such programme is
switched off. Pairs go by channel name (FL/FR, BL/BR, SL/SR...); channels of an
unspecified layout pair up in order (1-2, 3-4...: AES pairs). ``pairs_only=false`` raises
any channel while any other carries sound. The LFE channel of a 5.1 or 7.1 layout is
left out unless ``lfe`` is set (then watched like the centre): most programmes leave it
silent (it carries effects only), so it would be raised on nearly every one.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from service.detectors._audio import db_to_amplitude
from service.detectors.base import Change, Detector, Params
from service.media.frames import AudioFrame


class ChannelSilenceParams(Params):
    d: float = Field(2.0, ge=0.0, le=3600.0)
    noise_db: float = Field(-60.0, ge=-140.0, le=0.0)
    lfe: bool = Field(False, description="watch the LFE channel too (5.1, 7.1...)")
    pairs_only: bool = Field(
        True,
        description="beyond stereo, raise a channel only while the other of its pair "
        "carries sound (the centre: the front pair; false: while any other channel does)",
    )


# Left/right partners by FFmpeg's channel names.
_PAIRS = (
    ("FL", "FR"), ("BL", "BR"), ("SL", "SR"), ("FLC", "FRC"), ("TFL", "TFR"), ("TBL", "TBR"),
    ("DL", "DR"), ("WL", "WR"), ("SDL", "SDR"), ("TSL", "TSR"), ("BFL", "BFR"),
)  # fmt: skip
_PARTNER = {a: b for a, b in _PAIRS} | {b: a for a, b in _PAIRS}
_FRONT_MATES = frozenset({"FC", "LFE", "LFE2"})  # watched against the front pair


def partners(channels: int, names: tuple[str, ...] | None) -> list[list[int]]:
    """The channels whose sound makes each one's silence a fault: its pair's other leg
    (the centre and LFE: the front pair), by name when the layout names its channels,
    else in order (0-1, 2-3, ...); none for other unpaired channels."""
    if names is None or len(names) != channels:
        return [[c ^ 1] if (c ^ 1) < channels else [] for c in range(channels)]
    index = {n: i for i, n in enumerate(names)}
    front = [index[n] for n in ("FL", "FR") if n in index]
    return [
        front if n in _FRONT_MATES else [index[_PARTNER[n]]] if _PARTNER.get(n) in index else []
        for n in names
    ]


class ChannelSilenceDetector(Detector[ChannelSilenceParams]):
    name = "channel_silence"
    group = "audio"
    params_model = ChannelSilenceParams
    wants_audio = True

    def __init__(self, params: ChannelSilenceParams) -> None:
        super().__init__(params)
        self.level = db_to_amplitude(params.noise_db)
        self.run_start: list[float | None] = []
        self.reported: list[bool] = []
        self.partner: list[list[int]] = []
        self.layout: tuple[str, ...] | None = None

    @property
    def resume_s(self) -> float:
        return self.params.d + 0.5  # a channel's run is reported once it has lasted d

    def on_audio(self, frame: AudioFrame) -> list[Change]:
        channels = frame.channels
        if channels < 2:
            return []
        skip = frame.lfe if not self.params.lfe else None
        if len(self.run_start) != channels:  # first frame, or the layout changed
            self.run_start = [None] * channels
            self.reported = [False] * channels
        if frame.layout != self.layout or len(self.partner) != channels:
            self.layout = frame.layout  # same count, other names (5.1 -> 6.0...)
            self.partner = partners(channels, frame.layout)
        out: list[Change] = []
        rate = frame.sample_rate
        loud = frame.magnitude() >= self.level
        for c in range(channels):
            row = loud[c]
            last_loud = int(np.flatnonzero(row)[-1]) if row.any() else -1
            if last_loud >= 0:
                if self.run_start[c] is not None and self.reported[c]:
                    first_loud = int(np.argmax(row))
                    out.append(Change(frame.t + first_loud / rate, False, key=str(c)))
                self.reported[c] = False
                # A new run starts after the last loud sample, if any samples follow it.
                n = row.size
                self.run_start[c] = frame.t + (last_loud + 1) / rate if last_loud + 1 < n else None
            elif self.run_start[c] is None:
                self.run_start[c] = frame.t
        now = frame.end
        d = self.params.d
        long_runs = [s is not None and now - s >= d for s in self.run_start]
        watched = [c for c in range(channels) if c != skip]
        for c in watched:
            start = self.run_start[c]
            if start is None or self.reported[c] or not long_runs[c]:
                continue
            if self._others_sound(c, watched, long_runs):
                self.reported[c] = True
                out.append(Change(start, True, key=str(c), details={"channel": c}))
        return sorted(out, key=lambda ch: ch.t)

    def _others_sound(self, c: int, watched: list[int], long_runs: list[bool]) -> bool:
        if self.params.pairs_only and len(watched) > 2:
            return any(m in watched and not long_runs[m] for m in self.partner[c])
        return not all(long_runs[o] for o in watched if o != c)
