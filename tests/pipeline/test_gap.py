"""A source lost and read again (a reconnect: ``Gap`` in the item flow) -- time nobody saw
does not count towards a run's ``d``, and the missing media is not A/V drift. The outage
itself is ``no_signal``'s (tests/integration/test_dead_encoder.py)."""

from __future__ import annotations

import numpy as np

from service.media.frames import Gap
from tests.detectors.helpers import audio_frames, run, vframe

RATE = 48_000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave, wave])


def _shifted(frames: list, by: float) -> list:
    for f in frames:
        f.t += by
    return frames


def _outage(quiet_before: float, quiet_after: float, gap: bool) -> list:
    """Tone, then ``quiet_before`` s of digital silence, the source lost until t = 20,
    then ``quiet_after`` s of silence and tone again."""
    before = np.concatenate([_tone(5.0), np.zeros((2, int(quiet_before * RATE)))], axis=1)
    after = np.concatenate([np.zeros((2, int(quiet_after * RATE))), _tone(3.0)], axis=1)
    items = audio_frames(before)
    if gap:
        items.append(Gap(20.0))
    return items + _shifted(audio_frames(after), 20.0)


def test_silence_either_side_of_an_outage_is_not_joined_through_it() -> None:
    # 1.5 s before and 1 s after: neither lasts d (2 s). Counting the 13.5 s nobody saw,
    # the run would be 16 s long -- as it is without the gap marker.
    assert run(["silence"], _outage(1.5, 1.0, gap=True))[1] == []
    joined = run(["silence"], _outage(1.5, 1.0, gap=False))[1]
    assert [(d["start"], d["type"]) for d in joined] == [(5.0, "silence")]


def test_a_condition_still_on_after_the_outage_is_raised_from_its_return() -> None:
    defects = run(["silence"], _outage(1.5, 2.5, gap=True))[1]
    assert [d["start"] for d in defects] == [20.0]


def test_a_defect_raised_before_the_outage_stays_open_through_it() -> None:
    events, defects = run(["silence"], _outage(3.0, 1.0, gap=True))
    assert [d["start"] for d in defects] == [5.0]
    closes = [e.defect for e in events if e.kind == "close"]
    assert [(c.start, round(c.end, 3)) for c in closes] == [(5.0, 21.0)]


def test_an_outage_in_the_audio_timestamps_is_no_drift() -> None:
    """av_sync's timestamp check compares the audio clock with the samples carried:
    across a reconnect the timestamps jump by the outage, which is not drift."""
    items = _outage(0.0, 0.0, gap=True)
    assert run(["av_sync"], items)[1] == []
    drift = run(["av_sync"], _outage(0.0, 0.0, gap=False))[1]
    assert [d["details"]["method"] for d in drift] == ["timestamps"]


def test_a_black_picture_before_and_after_an_outage_counts_from_the_return() -> None:
    black = np.full((36, 64), 16, np.uint8)
    picture = np.full((36, 64), 120, np.uint8)
    frames = [vframe(i / 25, picture if i < 100 else black, index=i) for i in range(140)]
    frames.append(Gap(30.0))
    frames += [vframe(30 + i / 25, black if i < 25 else picture, index=200 + i) for i in range(50)]
    assert run(["black"], frames)[1] == []  # 1.6 s + 1 s, not 26 s
