"""EBU R128 figures against FFmpeg's own ``ebur128=peak=true`` on the same samples
(through libavfilter, via PyAV): integrated loudness and loudness range on tone,
music-like and speech-like signals, true peak (BS.1770-4, 4x oversampled); and the
``true_peak`` detector on an overshoot no sample peak shows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from service.detectors.bs1770 import LoudnessMeter, TruePeakMeter, dbtp
from service.detectors.loudness import LoudnessDetector, LoudnessParams
from tests.detectors.helpers import audio_frames, run
from tests.ffmpeg_ref import ebur128

RATE = 48000
BLOCK = 1024


def _signal(kind: str, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    fade = np.minimum(1.0, t / 0.05) ** 2  # no onset transient: both read steady state
    if kind == "inter-sample +0.5 dBTP":  # fs/4 at 45 degrees: samples at -2.5 dBFS
        x = 10 ** (0.5 / 20) * np.sin(2 * np.pi * RATE / 4 * t + np.pi / 4)
    elif kind == "997 Hz -3 dBFS":
        x = 10 ** (-3 / 20) * np.sin(2 * np.pi * 997 * t)
    elif kind == "11025 Hz":
        x = 0.8 * np.sin(2 * np.pi * 11025 * t + 0.3)
    else:  # full-band noise, the hardest case for an interpolator
        x = np.clip(np.random.default_rng(1).normal(0, 0.25, t.size), -0.99, 0.99)
    return np.stack([x * fade, x * fade]).astype(np.float32)


@pytest.mark.parametrize("kind", ["inter-sample +0.5 dBTP", "997 Hz -3 dBFS", "11025 Hz", "noise"])
def test_true_peak_matches_ffmpeg_ebur128_within_0_1_db(kind: str) -> None:
    x = _signal(kind)
    meter = TruePeakMeter(2)
    ours = max(float(meter.feed(x[:, i : i + BLOCK]).max()) for i in range(0, x.shape[1], BLOCK))
    assert dbtp(ours) == pytest.approx(ebur128(x, RATE)["true_peak"], abs=0.1)


def test_true_peak_detector_finds_an_overshoot_sample_peaks_do_not_show() -> None:
    quiet = _signal("997 Hz -3 dBFS", 6.0) * 0.1  # -23 dBFS
    burst = _signal("inter-sample +0.5 dBTP", 1.0)
    x = quiet.copy()
    x[:, 2 * RATE : 3 * RATE] = burst[:, :RATE] / np.minimum(1.0, 1.0)
    assert float(np.abs(x).max()) < 10 ** (-2.4 / 20)  # no sample above -2.4 dBFS
    _, defects = run(["true_peak", "clipping"], audio_frames(x))
    assert [d["type"] for d in defects] == ["true_peak"], defects
    (d,) = defects
    # The burst fades in over 50 ms: the limit (-1 dBTP) is crossed ~40 ms in.
    assert 2.0 <= d["start"] <= 2.06 and abs(d["end"] - 3.0) <= 0.01, d
    assert d["details"]["true_peak_dbtp"] == pytest.approx(0.5, abs=0.1)


def test_true_peak_is_opt_in() -> None:
    from service.detectors.registry import resolve_names

    assert "true_peak" not in resolve_names(None)
    assert "true_peak" not in resolve_names(["audio"])
    assert "true_peak" in resolve_names(["audio", "true_peak"])


def _programme(kind: str, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(rate * 40) / rate
    if kind == "tone":
        x = 0.1 * np.sin(2 * np.pi * 997 * t)
    elif kind == "music-like":  # 5 s sections at three levels (LRA ~20 LU)
        levels = np.repeat(rng.choice([0.03, 0.1, 0.3], 8), rate * 5)[: t.size]
        x = levels * np.sin(2 * np.pi * 440 * t)
    elif kind == "ramp":  # -40 to -20 dBFS evenly over 40 s: every percentile counts
        x = 10 ** ((-40 + 20 * t / t[-1]) / 20) * np.sin(2 * np.pi * 440 * t)
    elif kind == "quiet passages":  # 30 dB down: above -70 LUFS, below the -20 LU gate
        levels = np.repeat([0.3, 0.25, 0.01, 0.3, 0.2, 0.01, 0.3, 0.15], rate * 5)[: t.size]
        x = levels * np.sin(2 * np.pi * 440 * t)
    else:  # speech-like: band-limited noise, syllable-rate envelope, pauses
        b, a = signal.butter(2, [200 / (rate / 2), 3500 / (rate / 2)], "band")
        envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
        x = signal.lfilter(b, a, rng.normal(0, 0.3, t.size)) * envelope
    return np.stack([x, 0.8 * x]).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "rate"),
    [
        ("tone", RATE),
        ("music-like", RATE),
        ("quiet passages", RATE),
        ("ramp", RATE),
        ("speech-like", RATE),
        # 44.1 kHz (music, contribution AAC): K-weighting's coefficients are worked out
        # for the rate, and FFmpeg's true peak resamples to 192 kHz (4.35x, not 4x).
        ("speech-like", 44100),
        ("music-like", 44100),
        # The other rates a feed may carry (32 kHz: NICAM, old satellite radio; 88.2 /
        # 96 kHz: production audio): the filters and the gating blocks at each.
        ("speech-like", 32000),
        ("ramp", 88200),
        ("quiet passages", 96000),
    ],
)
def test_integrated_loudness_and_range_match_ffmpeg_within_0_1_lu(kind: str, rate: int) -> None:
    x = _programme(kind, rate)
    meter = LoudnessMeter(rate, 2)
    peak = TruePeakMeter(2)
    highest = 0.0
    for i in range(0, x.shape[1], BLOCK):
        meter.push(x[:, i : i + BLOCK])
        highest = max(highest, peak.feed_max(x[:, i : i + BLOCK]))
    ref = ebur128(x, rate)
    assert meter.integrated() == pytest.approx(ref["I"], abs=0.1)
    assert meter.loudness_range() == pytest.approx(ref["LRA"], abs=0.1)
    assert dbtp(highest) == pytest.approx(ref["true_peak"], abs=0.1)


@pytest.mark.parametrize("layout", ["quad", "2.1", "5.1", "5.1(side)", "7.1", "6.1", "4.0"])
def test_loudness_weights_channels_by_name_as_ffmpeg_does(layout: str) -> None:
    """Surrounds (back, side) weigh 1.41 and the LFE nothing wherever the layout puts
    them: quad's back pair is channels 2-3, 2.1's LFE is channel 2, 7.1's sides 6-7. Each
    channel at its own level, so a weight on the wrong channel moves the result."""
    import av

    names = tuple(c.name for c in av.AudioLayout(layout).channels)
    t = np.arange(RATE * 12) / RATE
    levels = 0.02 + 0.3 * np.arange(len(names)) / len(names)  # every channel different
    x = np.stack(
        [lv * np.sin(2 * np.pi * (200 + 150 * i) * t) for i, lv in enumerate(levels)]
    ).astype(np.float32)
    meter = LoudnessMeter(RATE, len(names), layout=names)
    for i in range(0, x.shape[1], BLOCK):
        meter.push(x[:, i : i + BLOCK])
    assert meter.integrated() == pytest.approx(ebur128(x, RATE, layout=layout)["I"], abs=0.1)


def _worst_case(amplitude: float, seconds: float = 1.0) -> np.ndarray:
    """Near silence with one burst shaped to the interpolator: every sample in one
    output's reach at +-amplitude, signed like that phase's taps, so the true peak is
    amplitude x the interpolator's largest lift (7.4 dB), far past any programme's."""
    meter = TruePeakMeter(2)
    taps = meter.phases_reversed[:, int(np.abs(meter.phases_reversed).sum(axis=0).argmax())]
    x = np.full((2, int(seconds * RATE)), 1e-4, np.float32)
    at = RATE // 2
    x[:, at : at + taps.size] = amplitude * np.sign(taps)
    return x


def test_skipping_quiet_blocks_never_changes_the_true_peak_reading() -> None:
    # A tone peaking at 0.5, then blocks whose samples stay under 0.5 / 2.2 (6.8 dB below)
    # but whose true peak passes 0.5: a skip that assumed a ~3-6 dB lift missed it.
    tone = _signal("997 Hz -3 dBFS", 1.0) * np.float32(0.5 / 10 ** (-3 / 20))
    x = np.concatenate([tone, _worst_case(0.5 / 2.2)], axis=1)
    every = TruePeakMeter(2)
    want = max(every.feed_max(x[:, i : i + BLOCK]) for i in range(0, x.shape[1], BLOCK))
    assert want > 0.53  # the burst's, not the tone's
    det = LoudnessDetector(LoudnessParams())
    for frame in audio_frames(x):
        det.on_audio(frame)
    assert det.readings()["true_peak_dbtp"] == pytest.approx(dbtp(want), abs=0.01)


def test_true_peak_detector_finds_an_overshoot_7_db_above_every_sample() -> None:
    x = _worst_case(10 ** (-1 / 20) / 2.1)  # samples at -7.4 dBFS, the true peak ~0 dBTP
    assert float(np.abs(x).max()) < 10 ** (-1 / 20) / 2  # under the old skip's line
    _, defects = run(["true_peak"], audio_frames(x))
    assert [d["type"] for d in defects] == ["true_peak"], defects
    assert defects[0]["details"]["true_peak_dbtp"] > -0.5
