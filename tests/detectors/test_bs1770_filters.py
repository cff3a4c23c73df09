"""The numpy-only BS.1770 filters against scipy's reference implementations (scipy is a
test and `avmon synth` dependency; the monitoring process does not import it)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from service.detectors import bs1770


@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000])
def test_k_weighting_matches_lfilter_across_any_block_lengths(rate: int) -> None:
    rng = np.random.default_rng(rate)
    b, a = bs1770.k_weighting(rate)
    ours = bs1770.KWeightingFilter(rate, 2)
    zi = np.zeros((2, len(a) - 1))
    worst = 0.0
    # Block lengths as decoders hand them out, odd ones, and one past the chunk size.
    for n in [1024] * 50 + [1, 7, 1152, 9000, 3, 2048]:
        x = rng.normal(0, 0.3, (2, n))
        want, zi = signal.lfilter(b, a, x, axis=1, zi=zi)
        worst = max(worst, float(np.abs(ours(x) - want).max()))
    assert worst < 1e-6  # ~1e-7 measured, on outputs of rms ~0.45


def test_k_weighting_takes_samples_in_any_memory_order() -> None:
    """Packed sample formats (s16, s32, flt) decode to a transposed view of the
    interleaved buffer: the filter must give the same as for contiguous rows."""
    x = np.random.default_rng(2).normal(0, 0.3, (2, 4096)).astype(np.float32)
    packed = np.ascontiguousarray(x.T).T  # what _audio_array returns for a packed format
    assert not packed.flags.c_contiguous
    want = bs1770.KWeightingFilter(48_000, 2)(x)
    assert np.array_equal(bs1770.KWeightingFilter(48_000, 2)(packed), want)


def test_k_weighting_state_stays_normal_through_long_silence() -> None:
    """Subnormal numbers cost the CPU ~30x: after 5 s of digital silence the output (the
    recursion's state) must still be a normal number, not have decayed towards zero."""
    ours = bs1770.KWeightingFilter(48_000, 2)
    rng = np.random.default_rng(1)
    ours(rng.normal(0, 0.3, (2, 48_000)).astype(np.float32))
    for _ in range(30):
        tail = ours(np.zeros((2, 8192), np.float32))
    smallest = float(np.abs(tail).min())
    assert smallest >= np.finfo(np.float64).tiny * 1e100, smallest
    assert float(np.abs(tail).max()) < 1e-15  # and weighs nothing: -300 dB


def test_true_peak_interpolator_matches_firwin_and_upfirdn() -> None:
    h = signal.firwin(97, 0.25, window=("kaiser", 5.0)) * 4
    assert np.abs(bs1770.interpolator(97) - h).max() < 1e-12
    meter = bs1770.TruePeakMeter(2)
    rng = np.random.default_rng(0)
    history = np.zeros((2, 2 * meter.lag))
    for n in (1024, 5, 1024, 3000):
        x = rng.normal(0, 0.3, (2, n))
        xx = np.concatenate([history, x], axis=1)
        history = xx[:, -2 * meter.lag :]
        up = signal.upfirdn(meter.h, xx, up=4, axis=1)  # the textbook 4x interpolation
        first = meter.lag * 4 + meter.delay
        want = np.abs(up[:, first : first + 4 * n]).reshape(2, n, 4).max(axis=(0, 2))
        assert np.abs(meter.feed(x) - want).max() < 1e-6  # float32 history


def test_true_peak_above_a_level_is_the_full_oversampling_where_it_matters() -> None:
    """Oversampling only the blocks that can pass the highest peak so far gives the
    highest true peak the full product gives, block after block, any block lengths --
    programme-like bursts, clipped ones, a peak in the last (partial) block -- and leaves
    the meter's history as the full product does."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        channels = int(rng.integers(1, 3))
        full, some = bs1770.TruePeakMeter(channels), bs1770.TruePeakMeter(channels)
        highest = 0.0
        for _ in range(20):
            n = int(rng.integers(1, 9000))
            envelope = rng.uniform(0.01, 1.0) * rng.random(n) ** rng.uniform(1, 8)
            x = (rng.standard_normal((channels, n)) * envelope).astype(np.float32)
            if rng.random() < 0.3:
                x = np.clip(5 * x, -1, 1)
            if rng.random() < 0.5:  # a quiet head, a loud tail: a peak in the last block
                x[:, : int(n * rng.uniform(0.5, 1.0))] *= 0.01
            expected = max(highest, full.feed_max(x))
            highest = max(highest, some.feed_max(x, above=highest))
            assert highest == pytest.approx(expected, rel=1e-6)
            assert np.array_equal(some.history, full.history)


def test_monitoring_does_not_import_scipy() -> None:
    """~77 MB of RSS per process for two filters: kept out of serve and check."""
    code = (
        "import sys, service.api.app, service.pipeline.check, service.detectors.registry;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_monitoring_starts_no_blas_thread_pool() -> None:
    """The true-peak product is BLAS's: a pool of its threads per process (one per core
    of the node) would spin beside the stream threads. avmon asks for none."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    count = "import os, numpy; print(len(os.listdir('/proc/self/task')))"
    bare = subprocess.run(
        [sys.executable, "-c", count], env=env, capture_output=True, text=True, check=True
    )
    if int(bare.stdout) == 1:
        pytest.skip("OpenBLAS starts no pool on a machine with one CPU")
    ours = subprocess.run(
        [sys.executable, "-c", "import service.pipeline.check;" + count],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(ours.stdout) == 1
