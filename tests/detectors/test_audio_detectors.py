"""Audio detectors on sample arrays: sample-accurate runs, BS.1770 loudness, clipping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.detectors.bs1770 import LoudnessMeter
from service.detectors.loudness import change_point
from service.media.frames import AudioFrame
from tests.detectors.helpers import audio_frames, run

RATE = 48000


def tone(seconds: float, amp: float = 0.0708, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x, x])


def test_bs1770_reference_sine_reads_its_level() -> None:
    meter = LoudnessMeter(RATE, 2)
    for frame in audio_frames(tone(10, amp=10 ** (-38.1 / 20))):
        meter.push(frame.samples)
    assert meter.integrated() == pytest.approx(-38.1, abs=0.1)
    assert meter.short_term() == pytest.approx(-38.1, abs=0.1)
    assert meter.momentary() == pytest.approx(-38.1, abs=0.1)


def test_integrated_loudness_gates_silence() -> None:
    x = np.concatenate([tone(10, amp=10 ** (-20 / 20)), np.zeros((2, 10 * RATE))], axis=1)
    meter = LoudnessMeter(RATE, 2)
    meter.push(x)
    assert meter.integrated() == pytest.approx(-20.0, abs=0.2)


def test_silence_is_sample_accurate_and_one_loud_sample_ends_it() -> None:
    x = tone(10)
    x[:, int(2.5 * RATE) : int(5.5 * RATE)] = 0
    x[:, int(7 * RATE) : int(8.5 * RATE)] = 0
    x[0, int(7.8 * RATE)] = 0.5  # one loud sample splits 1.5 s into two short runs
    x[:, int(7.8 * RATE) + 1 : int(8.5 * RATE)] = 0
    _, defects = run(["silence"], audio_frames(x))
    assert len(defects) == 1
    assert defects[0]["start"] == pytest.approx(2.5, abs=1 / RATE)
    assert defects[0]["end"] == pytest.approx(5.5, abs=1 / RATE)


def test_channel_silence_names_the_channel_and_ignores_full_silence() -> None:
    x = tone(12)
    x[1, 2 * RATE : 5 * RATE] = 0  # right leg lost
    x[:, 7 * RATE : 10 * RATE] = 0  # everything silent: that is `silence`
    _, defects = run(["silence", "channel_silence"], audio_frames(x))
    got = [(d["type"], round(d["start"], 3), round(d["end"], 3), d["details"]) for d in defects]
    assert got == [
        ("channel_silence", 2.0, 5.0, {"channel": 1}),
        ("silence", 7.0, 10.0, {}),
    ]


FIVE_ONE = ("FL", "FR", "FC", "LFE", "BL", "BR")


def _named(x: np.ndarray, layout: tuple[str, ...] | None) -> list[AudioFrame]:
    return [
        AudioFrame(t=f.t, samples=f.samples, sample_rate=f.sample_rate, layout=layout)
        for f in audio_frames(x)
    ]


def _channel_runs(frames: list[AudioFrame], **params: object) -> list[tuple]:
    _, defects = run(["channel_silence"], frames, {"channel_silence": params} if params else None)
    return [(round(d["start"], 3), round(d["end"], 3), d["details"]["channel"]) for d in defects]


def test_silent_surrounds_raise_nothing_a_silent_centre_is_raised() -> None:
    """A speech programme in 5.1 (or a stereo one carried in it): front pair and centre
    carry sound, LFE and surrounds silent throughout -- by design, not a lost channel.
    A silent centre under a live front pair loses the dialogue: raised."""
    x = np.zeros((6, 10 * RATE))
    x[:3] = np.concatenate([tone(10), tone(10)])[:3]
    assert _channel_runs(_named(x, FIVE_ONE)) == []
    # Every channel watched: both surrounds raised.
    assert {c for _, _, c in _channel_runs(_named(x, FIVE_ONE), pairs_only=False)} == {4, 5}
    x[2] = 0  # FFmpeg's own stereo-to-5.1 conversion leaves the centre silent too
    assert [c for _, _, c in _channel_runs(_named(x, FIVE_ONE))] == [2]


@pytest.mark.parametrize(
    "layout",
    [FIVE_ONE, ("FL", "FR", "FC", "LFE", "BC", "SL", "SR")],  # 5.1; 6.1: SL/SR not 4-5
    ids=["5.1", "6.1"],
)
def test_a_lost_leg_of_a_surround_pair_is_raised(layout: tuple[str, ...]) -> None:
    x = np.zeros((len(layout), 10 * RATE))
    x[:3] = np.concatenate([tone(10), tone(10)])[:3]  # front pair and centre
    x[-2:] = 0.5 * tone(10)
    right = len(layout) - 1
    x[right, 2 * RATE : 5 * RATE] = 0  # right surround lost, left surround carries on
    assert _channel_runs(_named(x, layout)) == [(2.0, 5.0, right)]


def test_pairs_follow_a_layout_change_of_the_same_channel_count() -> None:
    """Six channels, 5.1 for 4 s, then hexagonal (FL FR FC BL BR BC): channel 3 is the
    LFE, then the back left; channel 4 the back right either way. Channel 3 carries sound,
    4 and 5 never do: in 5.1 the back pair is silent together (nothing), in hexagonal the
    back right has lost its leg (raised, from when its silence began)."""
    hexagonal = ("FL", "FR", "FC", "BL", "BR", "BC")
    x = np.zeros((6, 10 * RATE))
    x[:4] = np.concatenate([tone(10), tone(10)])
    frames = _named(x, FIVE_ONE)
    split = next(i for i, f in enumerate(frames) if f.t >= 4.0)
    frames = frames[:split] + _named(x, hexagonal)[split:]
    assert _channel_runs(frames) == [(0.0, 10.0, 4)]


def test_unnamed_channels_pair_up_in_order() -> None:
    """Eight channels of an unspecified layout (four AES pairs): the second pair's
    second leg lost while its first carries; the last two pairs silent throughout."""
    x = np.zeros((8, 10 * RATE))
    x[:4] = np.concatenate([tone(10), tone(10)])
    x[3, 2 * RATE : 5 * RATE] = 0
    assert _channel_runs(_named(x, None)) == [(2.0, 5.0, 3)]


def test_loudness_change_dated_to_the_level_step() -> None:
    x = tone(40)
    x[:, 12 * RATE : 30 * RATE] *= 10 ** (-15 / 20)  # -23 -> -38 LUFS for 18 s
    _, defects = run(["loudness"], audio_frames(x))
    assert len(defects) == 1
    d = defects[0]
    assert d["details"]["direction"] == "low"
    assert d["start"] == pytest.approx(12.0, abs=0.03)
    assert d["end"] == pytest.approx(30.0, abs=0.03)


def test_loudness_too_loud_and_shorter_than_d() -> None:
    x = tone(40)
    x[:, 5 * RATE : 20 * RATE] *= 10 ** (12 / 20)  # +12 LU for 15 s
    x[:, 25 * RATE : 31 * RATE] *= 10 ** (12 / 20)  # and for 6 s: under d=10 s
    _, defects = run(["loudness"], audio_frames(x))
    assert [
        (d["details"]["direction"], round(d["start"], 1), round(d["end"], 1)) for d in defects
    ] == [("high", 5.0, 20.0)]


@pytest.mark.parametrize(
    ("dbfs", "raised"), [(-18.0, []), (-17.8, ["high"]), (-28.0, []), (-28.2, ["low"])]
)
def test_loudness_at_the_edge_of_the_range_reads_as_a_meter_shows_it(
    dbfs: float, raised: list[str]
) -> None:
    """EBU R68's line-up tone (1 kHz at -18 dBFS, both channels) reads -17.993 LUFS: on
    the edge of -23 +- 5 as a meter shows it (-18.0), so nothing is raised (it was, for as
    long as a feed carried it); 0.2 LU past either edge is raised."""
    _, defects = run(["loudness"], audio_frames(tone(20, amp=10 ** (dbfs / 20))))
    assert [d["details"]["direction"] for d in defects] == raised


def test_change_point_finds_a_step() -> None:
    levels = np.r_[np.full(50, -20.0), np.full(30, -40.0)] + np.random.default_rng(1).normal(
        0, 1, 80
    )
    assert change_point(levels) == 50


def test_clipping_pcm_and_flat_tops_but_not_loud_clean_tones() -> None:
    x = tone(6, amp=0.95)  # loud but clean 1 kHz
    x[:, 2 * RATE : 3 * RATE] = np.clip(x[:, 2 * RATE : 3 * RATE] * 4, -1, 1)  # PCM clipping
    seg = slice(4 * RATE, int(4.8 * RATE))
    x[:, seg] = np.clip(x[:, seg] * 4, -0.93, 0.93) + 0.002 * np.sin(np.arange(x[:, seg].shape[1]))
    _, defects = run(["clipping"], audio_frames(x))
    got = [(round(d["start"], 3), round(d["end"], 3)) for d in defects]
    assert len(got) == 2, got
    assert got[0][0] == pytest.approx(2.0, abs=0.002) and got[0][1] == pytest.approx(3.0, abs=0.002)
    assert got[1][0] == pytest.approx(4.0, abs=0.002) and got[1][1] == pytest.approx(4.8, abs=0.002)


def test_clipping_needs_d() -> None:
    x = tone(4)
    x[:, RATE : int(1.3 * RATE)] = np.clip(x[:, RATE : int(1.3 * RATE)] * 40, -1, 1)
    assert run(["clipping"], audio_frames(x))[1] == []


def clipped_bursts(seconds: float, bursts: list[tuple[float, float]]) -> np.ndarray:
    """A 1 kHz tone at -23 dBFS, hard-clipped (x40) over each (start, end)."""
    x = tone(seconds)
    for a, b in bursts:
        seg = slice(int(a * RATE), int(b * RATE))
        x[:, seg] = np.clip(x[:, seg] * 40, -1, 1)
    return x


def spans(defects: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(round(d["start"], 3), round(d["end"], 3)) for d in defects]


def test_clipped_syllables_split_by_pauses_are_one_defect() -> None:
    # Overdriven speech clips on its syllables: bursts shorter than d, pauses up to 0.4 s.
    x = clipped_bursts(8, [(2.0, 2.3), (2.7, 3.0), (3.2, 3.4)])
    got = spans(run(["clipping"], audio_frames(x))[1])
    assert len(got) == 1, got
    assert got[0][0] == pytest.approx(2.0, abs=0.002) and got[0][1] == pytest.approx(3.4, abs=0.002)


def test_a_pending_clipping_run_is_redated_once_the_share_joins_it() -> None:
    # The burst at 2.75 alone leaves the share at 3 slots of 10; the one from 2.85 brings
    # it up, so the run that began at 2.75 continues the episode that began at 2.0.
    x = clipped_bursts(6, [(2.0, 2.15), (2.75, 2.78), (2.85, 3.3)])
    got = spans(run(["clipping"], audio_frames(x))[1])
    assert len(got) == 1, got
    assert got[0][0] == pytest.approx(2.0, abs=0.002) and got[0][1] == pytest.approx(3.3, abs=0.002)


def test_a_pending_clipping_run_is_redated_when_a_later_input_joins_it() -> None:
    # The run from 2.70 is pending when the input ending at 2.73 s (8192-sample batches)
    # is analysed, at 3 slots of 10; the next input's slot 2.8 brings the share to 4.
    x = clipped_bursts(6, [(2.0, 2.15), (2.70, 3.3)])
    got = spans(run(["clipping"], audio_frames(x))[1])
    assert got == [(2.0, pytest.approx(3.3, abs=0.002))], got


def test_a_passage_after_a_raised_episode_is_never_dated_back_into_it() -> None:
    # With hold_share = join_share the raised episode ends while its last slots are still
    # in the window, so the next burst finds the share at join_share: it must not continue
    # (and so duplicate) the raised defect.
    x = clipped_bursts(8, [(2.0, 3.0), (3.65, 4.3)])
    got = spans(run(["clipping"], audio_frames(x), {"clipping": {"hold_share": 0.4}})[1])
    assert got == [(2.0, pytest.approx(3.0, abs=0.002)), (3.65, pytest.approx(4.3, abs=0.002))]


def test_joined_bursts_still_need_d_in_all() -> None:
    x = clipped_bursts(6, [(2.0, 2.2), (2.3, 2.45)])  # dense, but 0.45 s from first to last
    assert run(["clipping"], audio_frames(x))[1] == []


def test_sparse_clipped_peaks_raise_nothing() -> None:
    # A clipped peak every 0.5 s (a kick drum on a hot master): 2 slots in 10.
    peaks = [(t, t + 0.002) for t in np.arange(1.0, 11.0, 0.5)]
    assert run(["clipping"], audio_frames(clipped_bursts(12, peaks)))[1] == []
    # Short clipped bursts 1.5 s apart never reach the share that joins them.
    bursts = [(t, t + 0.3) for t in np.arange(1.0, 11.0, 1.5)]
    assert run(["clipping"], audio_frames(clipped_bursts(12, bursts)))[1] == []


def test_a_raised_clipping_episode_holds_across_pauses_then_ends() -> None:
    # Raised at 2.5; held over the 0.6 s pause; then ends, and the passage 1.5 s later is
    # a second defect that starts after the first ended (never dated back into it).
    x = clipped_bursts(10, [(2.0, 3.0), (3.6, 3.9), (5.4, 6.0)])
    got = spans(run(["clipping"], audio_frames(x))[1])
    assert len(got) == 2, got
    assert got[0][0] == pytest.approx(2.0, abs=0.002) and got[0][1] == pytest.approx(3.9, abs=0.002)
    assert got[1][0] == pytest.approx(5.4, abs=0.002) and got[1][1] == pytest.approx(6.0, abs=0.002)


def test_clipping_shares_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="hold_share"):
        run(["clipping"], [], {"clipping": {"join_share": 0.2, "hold_share": 0.5}})
