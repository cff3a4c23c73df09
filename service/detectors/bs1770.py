"""ITU-R BS.1770 loudness: K-weighting, channel weights, momentary/short-term/integrated.

Coefficients are computed for any sample rate from the filters' analogue definitions
(they reproduce BS.1770's published 48 kHz tables). Loudness is
-0.691 + 10*log10(sum_c G_c * mean_square_c) LUFS.

The K-weighting recursion runs in libavfilter's ``biquad`` (double precision), which PyAV
already brings: numpy has no recursive filter, and scipy.signal would cost every
monitoring process ~77 MB of RSS and ~0.6 s of import.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from itertools import islice

import av
import numpy as np
from av.filter import Graph

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0

SUBNORMAL_GUARD = 1e-20  # see KWeightingFilter.__call__

Biquad = tuple[tuple[float, float, float], tuple[float, float, float]]  # (b, a), a[0] = 1


def k_weighting_stages(rate: int) -> tuple[Biquad, Biquad]:
    """The two biquads: the high-shelf pre-filter, then the RLB high-pass."""
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (head acoustics).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (
        ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
        (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0),
    )
    # Stage 2: RLB high-pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    high_pass = ((1.0, -2.0, 1.0), (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0))
    return shelf, high_pass


def k_weighting(rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The two stages cascaded into one 4th-order filter (b, a)."""
    (b1, a1), (b2, a2) = k_weighting_stages(rate)
    return np.convolve(b1, b2), np.convolve(a1, a2)


class KWeightingFilter:
    """K-weighting applied block by block, its state carried across blocks (any block
    lengths give what one pass over the whole signal would). Each channel's recursion
    runs in its own one-thread libavfilter graph (mono: no channel layout to get
    wrong), in doubles: a third of the CPU of the FFT convolution numpy alone needed."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self._chains = self._build(channels)
        self._pts = 0
        self._floor = np.zeros(0)

    def _build(self, channels: int) -> list[_BiquadChain]:
        stages = k_weighting_stages(self.rate)
        return [_BiquadChain(self.rate, stages) for _ in range(channels)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(channels, n) samples -> the K-weighted (channels, n), float64."""
        # Silence decays the recursion's state into subnormal numbers, which cost the
        # CPU ~30x (a silent block took 3.9 ms against 0.12): a tone at the Nyquist
        # frequency 400 dB under full scale keeps it normal and weighs nothing.
        n = x.shape[1]
        if self._floor.size < n + 1:
            self._floor = np.resize(np.array([SUBNORMAL_GUARD, -SUBNORMAL_GUARD]), 2 * n + 2)
        # C order whatever the input's (packed formats decode to a transposed view): each
        # channel's row goes to its graph as one contiguous buffer.
        guard = self._floor[self._pts % 2 : self._pts % 2 + n]
        x = np.add(x, guard, dtype=np.float64, order="C")
        if len(self._chains) != x.shape[0]:  # the layout changed
            self._chains = self._build(x.shape[0])
        if n == 0:
            return x.copy()
        y = np.empty_like(x)
        for chain, row, out in zip(self._chains, x, y, strict=True):
            chain.run(row, out, self._pts)
        self._pts += x.shape[1]
        return y


class _BiquadChain:
    """Biquads in series over one channel, in a libavfilter graph of their own."""

    def __init__(self, rate: int, stages: tuple[Biquad, ...]) -> None:
        self.rate = rate
        # The graph must outlive its filters: PyAV's filter handles do not keep it alive.
        self.graph = Graph()
        self.graph.threads = 1  # a thread pool per channel would cost more than it saves
        node = self.source = self.graph.add_abuffer(
            format="dbl", sample_rate=rate, layout="mono", time_base=Fraction(1, rate)
        )
        for b, a in stages:
            coefficients = zip(("b0", "b1", "b2", "a0", "a1", "a2"), (*b, *a), strict=True)
            args = ":".join(f"{name}={value!r}" for name, value in coefficients)
            stage = self.graph.add("biquad", args + ":precision=f64")
            node.link_to(stage)
            node = stage
        self.sink = self.graph.add("abuffersink")
        node.link_to(self.sink)
        self.graph.configure()

    def run(self, x: np.ndarray, out: np.ndarray, pts: int) -> None:
        """Filter ``x`` (n,) into ``out`` (n,); ``pts``: its first sample's index."""
        frame = av.AudioFrame.from_ndarray(x[None, :], format="dbl", layout="mono")
        frame.sample_rate, frame.pts = self.rate, pts
        self.source.push(frame)
        done = 0
        while done < x.size:
            filtered = self.sink.pull()  # biquad hands back what it was given
            if not isinstance(filtered, av.AudioFrame):
                raise TypeError(f"K-weighting graph returned {type(filtered).__name__}")
            got = filtered.to_ndarray()[0]
            out[done : done + got.size] = got
            done += got.size


# BS.1770 weights by channel, as FFmpeg's ebur128 gives them: the LFE channels count
# for nothing, the surrounds (back, side, surround-direct) 1.41, every other channel
# (front, centre, height) 1.0.
_SURROUND = frozenset({"BL", "BC", "BR", "SL", "SR", "SDL", "SDR"})
_LOW_FREQUENCY = frozenset({"LFE", "LFE2"})


def channel_weights(channels: int, names: tuple[str, ...] | None = None) -> np.ndarray:
    """BS.1770 weights of each channel, by its name when the layout is known; without
    names, FFmpeg's default order for the count is assumed (L R C LFE Ls Rs ...)."""
    if names is not None and len(names) == channels:
        return np.array(
            [0.0 if n in _LOW_FREQUENCY else 1.41 if n in _SURROUND else 1.0 for n in names]
        )
    if channels <= 3:
        return np.ones(channels)
    w = np.ones(channels)
    w[3] = 0.0  # LFE
    w[4:6] = 1.41  # surrounds
    return w


def lufs(mean_square: float) -> float:
    return -0.691 + 10 * math.log10(mean_square) if mean_square > 0 else -math.inf


class LoudnessMeter:
    """Streams K-weighted energy into 25 ms sub-blocks and reads loudness over windows.

    The sub-block history (a few seconds) serves the momentary and short-term windows
    and dates level changes; integrated loudness keeps a fixed-size histogram of gating
    blocks (400 ms every 100 ms), so memory does not grow with the stream's length.
    """

    BLOCK_S = 0.025
    PER_GATE_STEP = 4  # sub-blocks per 100 ms
    GATE_WINDOW = 16  # sub-blocks per 400 ms
    HIST_MIN, HIST_STEP, HIST_BINS = ABSOLUTE_GATE, 0.1, 1000  # -70 .. +30 LUFS
    SHORT_TERM = 120  # sub-blocks per 3 s
    LRA_STEP, LRA_BINS = 0.01, 10_000

    def __init__(
        self,
        rate: int,
        channels: int,
        history_s: float = 8.0,
        layout: tuple[str, ...] | None = None,
    ) -> None:
        self.rate = rate
        self.channels = channels
        self.layout = layout
        self.k_filter = KWeightingFilter(rate, channels)
        self.weights = channel_weights(channels, layout)[:, None]
        self.block = max(1, round(self.BLOCK_S * rate))
        self.block_s = self.block / rate
        self.pending = np.zeros(0)
        self.blocks: deque[float] = deque(
            maxlen=max(self.GATE_WINDOW, int(history_s / self.block_s))
        )
        self.blocks_total = 0
        self.hist_power = np.zeros(self.HIST_BINS)  # summed power per loudness bin
        self.hist_count = np.zeros(self.HIST_BINS, dtype=np.int64)
        # Loudness range (EBU Tech 3342): short-term (3 s) levels every 100 ms, 0.01 LU bins.
        self.lra_power = np.zeros(self.LRA_BINS)
        self.lra_count = np.zeros(self.LRA_BINS, dtype=np.int64)

    def push(self, samples: np.ndarray) -> int:
        """Add (channels, n) samples; return how many sub-blocks completed."""
        y = self.k_filter(samples)
        energy = (self.weights * (y * y)).sum(axis=0)
        data = np.concatenate([self.pending, energy]) if self.pending.size else energy
        n = data.size // self.block
        if n:
            for mean in data[: n * self.block].reshape(n, self.block).mean(axis=1).tolist():
                self.blocks.append(mean)
                self.blocks_total += 1
                if self.blocks_total % self.PER_GATE_STEP == 0:
                    self._gate_block()
        self.pending = data[n * self.block :]
        return n

    def _gate_block(self) -> None:
        if self.blocks_total >= self.SHORT_TERM and len(self.blocks) >= self.SHORT_TERM:
            power = self._mean(self.SHORT_TERM)
            level = lufs(power)
            if level > ABSOLUTE_GATE:
                i = min(int((level - self.HIST_MIN) / self.LRA_STEP), self.LRA_BINS - 1)
                self.lra_power[i] += power
                self.lra_count[i] += 1
        if self.blocks_total < self.GATE_WINDOW:
            return
        power = self._mean(self.GATE_WINDOW)
        level = lufs(power)
        if level <= ABSOLUTE_GATE:
            return
        i = min(int((level - self.HIST_MIN) / self.HIST_STEP), self.HIST_BINS - 1)
        self.hist_power[i] += power
        self.hist_count[i] += 1

    def _mean(self, n: int) -> float:
        hist = self.blocks  # summed in C, oldest first (as a loop over them would)
        return sum(islice(hist, len(hist) - n, None)) / n

    def window(self, seconds: float) -> float:
        """Loudness (LUFS) of the last ``seconds``; NaN until that much audio has passed."""
        n = round(seconds / self.block_s)
        if len(self.blocks) < n:
            return math.nan
        return lufs(self._mean(n))

    def short_term(self) -> float:
        return self.window(3.0)

    def momentary(self) -> float:
        return self.window(0.4)

    def integrated(self) -> float:
        """Gated integrated loudness (absolute -70 LUFS, relative -10 LU)."""
        count = int(self.hist_count.sum())
        if count == 0:
            return -math.inf
        rel = lufs(float(self.hist_power.sum()) / count) + RELATIVE_GATE
        first = max(0, math.ceil((rel - self.HIST_MIN) / self.HIST_STEP))
        kept = int(self.hist_count[first:].sum())
        return lufs(float(self.hist_power[first:].sum()) / kept) if kept else -math.inf

    def loudness_range(self) -> float:
        """LRA (LU): the spread between the 10th and 95th percentiles of the short-term
        levels above -70 LUFS and above -20 LU under their power mean (EBU Tech 3342)."""
        count = int(self.lra_count.sum())
        if count == 0:
            return 0.0
        rel = lufs(float(self.lra_power.sum()) / count) - 20.0
        first = max(0, math.ceil((rel - self.HIST_MIN) / self.LRA_STEP))
        counts = self.lra_count[first:]
        kept = int(counts.sum())
        if kept == 0:
            return 0.0
        cum = np.cumsum(counts)
        low = int(np.searchsorted(cum, 0.10 * kept))
        high = int(np.searchsorted(cum, 0.95 * kept))
        return (high - low) * self.LRA_STEP

    def history_db(self, seconds: float) -> np.ndarray:
        """Sub-block energies of the last ``seconds`` in dB (floored), oldest first."""
        n = min(len(self.blocks), round(seconds / self.block_s))
        hist = self.blocks
        arr = np.fromiter(islice(hist, len(hist) - n, None), float, n)
        return 10 * np.log10(np.maximum(arr, 1e-12))


OVERSAMPLE = 4  # BS.1770-4 Annex 2: true peak from a 4x oversampled signal (48 kHz in)
_TAPS_PER_PHASE = 24  # 97 taps: within 0.02 dB of FFmpeg even on full-band noise
_REACH = _TAPS_PER_PHASE // 2  # input samples the interpolator reaches either side


_BLOCK = 32  # outputs per row of the block-Toeplitz product (>= the taps - 1)


def _block_toeplitz(phases_reversed: np.ndarray) -> np.ndarray:
    """(2 x _BLOCK, _BLOCK x 4): row r, column 4i+p holds the tap that input r of two
    adjacent blocks has in output i's phase p (zero outside its window)."""
    taps = phases_reversed.shape[0]
    assert taps - 1 <= _BLOCK
    out = np.zeros((2 * _BLOCK, _BLOCK * OVERSAMPLE), np.float32)
    for i in range(_BLOCK):
        out[i : i + taps, i * OVERSAMPLE : (i + 1) * OVERSAMPLE] = phases_reversed
    return out


class TruePeakMeter:
    """Per-sample true peak: the largest magnitude of the 4x oversampled signal (any
    channel) between each input sample and the next, from a windowed-sinc polyphase
    interpolator. Output lags the input by ``_REACH`` samples: a sample's inter-sample
    peaks need the samples after it."""

    def __init__(self, channels: int) -> None:
        n = OVERSAMPLE * _TAPS_PER_PHASE + 1  # odd: the delay is a whole output sample
        self.h = interpolator(n)
        self.delay = (n - 1) // 2
        # Polyphase: output 4q+p is sum_k h[4k+p] x[q-k]; one short filter per phase.
        padded = np.zeros(-(-n // OVERSAMPLE) * OVERSAMPLE)
        padded[:n] = self.h
        phases = padded.reshape(-1, OVERSAMPLE).T  # phases[p, k] = h[4k + p]
        # float32 like decoded audio: one single-precision product (error ~1e-7 of full scale).
        self.phases_reversed = np.ascontiguousarray(phases[:, ::-1].T, dtype=np.float32)
        self.history = np.zeros((channels, 2 * _REACH), np.float32)
        # The most the interpolator can lift the largest sample in its reach (+7.4 dB:
        # every tap's sign matched; programme audio overshoots by under ~3 dB).
        self.gain = float(np.abs(self.phases_reversed).sum(axis=0).max())
        self.toeplitz = _block_toeplitz(self.phases_reversed)

    @property
    def lag(self) -> int:
        return _REACH

    def feed(self, x: np.ndarray) -> np.ndarray:
        """``x`` (channels, n) -> n true peaks (linear), for the n samples ending
        ``lag`` samples before the end of ``x``."""
        return np.abs(self._interpolate(x)).max(axis=(0, 2))

    def _interpolate(self, x: np.ndarray, above: float = 0.0) -> np.ndarray:
        """(channels, n, 4): the oversampled signal, in blocks of _BLOCK outputs; with
        ``above``, only the blocks whose windows reach a sample that could lift past it
        (over ``above / gain``, see ``bound``): the rest are left out."""
        if x.shape[0] != self.history.shape[0]:
            self.history = np.zeros((x.shape[0], 2 * _REACH), np.float32)
        channels, n = x.shape
        # Output 4q+p for the n samples measured: q runs over the positions where the
        # whole filter sits on input (the 2 x reach of history supplies the edges).
        # Taken _BLOCK outputs at a time, each block is two adjacent rows of input times
        # one fixed matrix: a contiguous product, ~3x cheaper than gathering one window
        # of input per output (the same sums).
        blocks = -(-n // _BLOCK)
        xx = np.zeros((channels, (blocks + 1) * _BLOCK), np.float32)
        xx[:, : 2 * _REACH] = self.history
        xx[:, 2 * _REACH : 2 * _REACH + n] = x
        self.history = xx[:, n : n + 2 * _REACH].copy()
        rows = xx.reshape(channels, blocks + 1, _BLOCK)
        pairs = np.lib.stride_tricks.as_strided(
            rows, (channels, blocks, 2 * _BLOCK), (rows.strides[0], rows.strides[1], xx.itemsize)
        )
        take = None
        if above > 0.0:
            # A block's windows lie within its row of input and the next.
            loud = (np.abs(rows).max(axis=(0, 2)) > above / self.gain).nonzero()[0]
            take = np.union1d(loud, loud - 1)
            take = take[(take >= 0) & (take < blocks)]
        # Most blocks near the peak (loud, steady programme): gathering them costs more
        # than the product over all of them saves (~1.9x the full product for all).
        if take is not None and 2 * take.size <= blocks:
            up = (pairs[:, take] @ self.toeplitz).reshape(channels, -1, _BLOCK, OVERSAMPLE)
            if take.size and take[-1] == blocks - 1:
                up[:, -1, n - (blocks - 1) * _BLOCK :] = 0.0  # past the input: padding
            return up.reshape(channels, -1, OVERSAMPLE)
        up = (pairs @ self.toeplitz).reshape(channels, blocks * _BLOCK, OVERSAMPLE)
        return up[:, :n]  # (channels, n, 4)

    def feed_max(self, x: np.ndarray, above: float = 0.0) -> float:
        """The highest true peak (linear) among what ``feed`` would return -- exactly,
        where it exceeds ``above``; else some value no higher than ``above``. Once the
        highest peak so far is known, programme audio has few blocks near it: the rest
        need not be oversampled."""
        up = self._interpolate(x, above)
        return max(float(up.max()), -float(up.min())) if up.size else 0.0

    def bound(self, sample_peak: float) -> float:
        """No true peak ``feed`` measures for a block whose largest magnitude is
        ``sample_peak`` can exceed this: its windows reach only that block and the
        history. A block whose bound is under what matters need not be oversampled."""
        history = max(float(self.history.max()), -float(self.history.min()))
        return self.gain * max(sample_peak, history)

    def skip(self, x: np.ndarray) -> None:
        """Keep continuity without measuring (a block far below any limit)."""
        if x.shape[0] == self.history.shape[0] and x.shape[1] >= 2 * _REACH:
            self.history = x[:, -2 * _REACH :].astype(np.float32)
        else:
            self.history = np.concatenate([self.history, x], axis=1)[:, -2 * _REACH :]


def interpolator(n: int) -> np.ndarray:
    """The 4x interpolation filter: an n-tap Kaiser (beta 5) windowed sinc cut at the
    input's Nyquist frequency, unit gain at DC per output phase."""
    k = np.arange(n) - (n - 1) / 2
    h = np.sinc(k / OVERSAMPLE) * np.kaiser(n, 5.0)
    return h * (OVERSAMPLE / h.sum())


def dbtp(linear: float) -> float:
    return 20 * math.log10(linear) if linear > 0 else -math.inf
