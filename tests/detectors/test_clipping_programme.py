"""Clipping on programme audio through a real AAC encode and decode (PyAV, FFmpeg's
encoder): a hot master limited just under full scale raises nothing, though AAC lifts
its peaks past 1.0; the same music clipped hard raises one episode per passage. A loud
clean bass tone raises nothing; the same tone clipped, even by 5 %, is raised.

The music is made here: a kick on every beat at 124 bpm, a snare, hats, a saw bass and
three saw chords, then brick-wall limited (look-ahead, smooth gain) or hard-clipped.
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tests.detectors.helpers import audio_frames, run, write_aac

RATE = 48000


def music(seconds: float, bpm: float = 124.0) -> np.ndarray:
    rng = np.random.default_rng(3)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = np.zeros((2, n))
    beat = 60.0 / bpm
    for k in range(int(seconds / beat)):
        s = int(k * beat * RATE)
        m = min(n - s, int(0.35 * RATE))
        tt = np.arange(m) / RATE
        x[:, s : s + m] += (
            0.9
            * np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-tt * 30)) / RATE)
            * (np.exp(-tt * 8))
        )
        if k % 2:
            m2 = min(n - s, int(0.2 * RATE))
            x[:, s : s + m2] += 0.5 * rng.normal(0, 1, m2) * np.exp(-np.arange(m2) / RATE * 20)
        for h in range(4):
            s3 = int((k + h / 4) * beat * RATE)
            m3 = min(n - s3, int(0.04 * RATE))
            if m3 > 0:
                x[:, s3 : s3 + m3] += (
                    0.15 * np.diff(rng.normal(0, 1, m3 + 1)) * np.exp(-np.arange(m3) / RATE * 100)
                )
    x += 0.35 * (2 * ((t * 55 * np.where((t // (4 * beat)) % 2, 1.0, 4 / 3)) % 1) - 1)
    for f0, detune in ((220.0, 0.3), (277.2, -0.2), (329.6, 0.5)):
        for ch in range(2):
            x[ch] += 0.12 * (2 * ((t * (f0 + detune * (2 * ch - 1))) % 1) - 1)
    return x + 0.05 * rng.normal(0, 1, (2, n))


def limited(x: np.ndarray, ceiling_db: float) -> np.ndarray:
    """Brick-wall limiting to a sample peak of ``ceiling_db``: the gain each sample needs,
    its minimum over +-5 ms, then averaged over +-2.5 ms (every value averaged is the
    minimum over a span holding this sample, so the result never exceeds what it needs)."""
    need = np.minimum(1.0, 10 ** (ceiling_db / 20) / np.maximum(np.abs(x).max(axis=0), 1e-9))
    reach = int(0.005 * RATE)
    low = sliding_window_view(np.pad(need, reach, constant_values=1.0), 2 * reach + 1).min(axis=1)
    half = reach // 2
    smooth = sliding_window_view(np.pad(low, half, mode="edge"), 2 * half + 1).mean(axis=1)
    return x * smooth


def through_aac(x: np.ndarray, bitrate: int = 128_000) -> np.ndarray:
    buf = io.BytesIO()
    write_aac(buf, x, RATE, "adts", bitrate)
    buf.seek(0)
    with av.open(buf) as decoded:
        return np.concatenate([f.to_ndarray() for f in decoded.decode(audio=0)], axis=1)


@pytest.fixture(scope="module")
def programme() -> np.ndarray:
    return music(12.0)


@pytest.mark.parametrize("ceiling_db", [-1.0, -0.1])
def test_a_hot_master_raises_no_clipping(programme: np.ndarray, ceiling_db: float) -> None:
    y = through_aac(limited(programme * 3, ceiling_db))
    assert np.abs(y).max() > 1.0  # AAC overshoots full scale on the loudest beats
    assert run(["clipping"], audio_frames(y))[1] == []


def test_hard_clipped_music_raises_clipping(programme: np.ndarray) -> None:
    # Clipped on every beat and bass peak, with the pauses between: one long episode.
    y = through_aac(np.clip(programme * 1.5, -1.0, 1.0))
    found = run(["clipping"], audio_frames(y))[1]
    assert found, "hard-clipped music not raised"
    covered = sum(d["end"] - d["start"] for d in found)
    assert covered >= 0.8 * 12.0, found


def sine(freq: float, amplitude: float, seconds: float = 6.0) -> np.ndarray:
    wave = amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * RATE)) / RATE)
    return np.stack([wave, wave])


@pytest.mark.parametrize("freq", [40.0, 100.0, 200.0])
def test_a_loud_clean_bass_tone_raises_no_clipping(freq: float) -> None:
    # Under ~400 Hz a clean crest at -0.3 dBFS is flat (sample steps under 0.01) for
    # dozens of samples: it read as a plateau, and clipping was raised throughout.
    assert run(["clipping"], audio_frames(through_aac(sine(freq, 0.966))))[1] == []


@pytest.mark.parametrize(("freq", "drive"), [(60.0, 1.05), (200.0, 1.1), (100.0, 3.0)])
def test_a_clipped_bass_tone_is_raised_throughout(freq: float, drive: float) -> None:
    y = through_aac(np.clip(sine(freq, drive), -1.0, 1.0))
    found = run(["clipping"], audio_frames(y))[1]
    assert len(found) == 1, found
    assert found[0]["start"] < 0.1 and found[0]["end"] > 5.9, found
