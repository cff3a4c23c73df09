"""ITU-R BS.1770 loudness: K-weighting, channel weights, momentary/short-term/integrated.

Coefficients are computed for any sample rate from the filters' analogue definitions
(they reproduce BS.1770's published 48 kHz tables). Loudness is
-0.691 + 10*log10(sum_c G_c * mean_square_c) LUFS.

Filtering is numpy only: scipy.signal would cost every monitoring process ~77 MB of RSS
and ~0.6 s of import for one IIR filter and one FIR interpolator.
"""

from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0


def k_weighting(rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The high-shelf pre-filter and RLB high-pass cascaded into one 4th-order filter."""
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (head acoustics).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    b1 = np.array(
        [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]
    )
    a1 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # Stage 2: RLB high-pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return np.convolve(b1, b2), np.convolve(a1, a2)


@functools.lru_cache(maxsize=8)
def _responses(rate: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """K-weighting's impulse response and its responses to each unit past sample.

    Returns ``h`` (length,) and ``zir`` (length, 2N): column j is the output, with no
    input, when the only non-zero past value is ``x[-1-j]`` (j < N) or ``y[-1-(j-N)]``.
    """
    b, a = k_weighting(rate)
    b, a = b / a[0], a / a[0]
    order = len(a) - 1
    # Rows 0..2N-1: the past-state basis; row 2N: an impulse at n = 0, no past.
    past_x = np.zeros((2 * order + 1, order))  # x[n-1], x[n-2], ... per row
    past_y = np.zeros((2 * order + 1, order))
    past_x[np.arange(order), np.arange(order)] = 1.0
    past_y[order + np.arange(order), np.arange(order)] = 1.0
    out = np.empty((length, 2 * order + 1))
    for n in range(length):
        x_now = np.zeros(2 * order + 1)
        if n == 0:
            x_now[-1] = 1.0
        y_now = b[0] * x_now + past_x @ b[1:] - past_y @ a[1:]
        out[n] = y_now
        past_x = np.concatenate([x_now[:, None], past_x[:, :-1]], axis=1)
        past_y = np.concatenate([y_now[:, None], past_y[:, :-1]], axis=1)
    return out[:, -1].copy(), out[:, :-1].copy()


class KWeightingFilter:
    """K-weighting applied block by block: within a block the output is the block
    convolved with the impulse response (by FFT) plus the decaying response to what the
    previous blocks left (the last N inputs and outputs). Exact to float rounding for any
    block length, as a sample-by-sample recursion would be."""

    CHUNK = 4096  # longer blocks are split (the responses are tabulated this far)

    def __init__(self, rate: int, channels: int) -> None:
        self.h, self.zir = _responses(rate, self.CHUNK)
        self.order = self.zir.shape[1] // 2
        self.past_x = np.zeros((channels, self.order))  # oldest first
        self.past_y = np.zeros((channels, self.order))
        self._spectra: dict[int, tuple[int, np.ndarray]] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(channels, n) samples -> the K-weighted (channels, n)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] != self.past_x.shape[0]:
            self.past_x = np.zeros((x.shape[0], self.order))
            self.past_y = np.zeros((x.shape[0], self.order))
        if x.shape[1] <= self.CHUNK:
            return self._chunk(x)
        parts = [self._chunk(x[:, i : i + self.CHUNK]) for i in range(0, x.shape[1], self.CHUNK)]
        return np.concatenate(parts, axis=1)

    def _chunk(self, x: np.ndarray) -> np.ndarray:
        m = x.shape[1]
        if m == 0:
            return x.copy()
        nfft, spectrum = self._spectrum(m)
        y = np.fft.irfft(np.fft.rfft(x, nfft, axis=1) * spectrum, nfft, axis=1)[:, :m]
        state = np.concatenate([self.past_x[:, ::-1], self.past_y[:, ::-1]], axis=1)
        y += state @ self.zir[:m].T
        k = self.order
        self.past_x = np.concatenate([self.past_x, x], axis=1)[:, -k:]
        self.past_y = np.concatenate([self.past_y, y], axis=1)[:, -k:]
        return y

    def _spectrum(self, m: int) -> tuple[int, np.ndarray]:
        if m not in self._spectra:
            if len(self._spectra) > 16:  # odd block lengths: keep the cache small
                self._spectra.clear()
            nfft = 1 << (2 * m - 1).bit_length()
            self._spectra[m] = (nfft, np.fft.rfft(self.h[:m], nfft))
        return self._spectra[m]


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
        hist = self.blocks
        return sum(hist[i] for i in range(len(hist) - n, len(hist))) / n

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
        arr = np.fromiter((hist[i] for i in range(len(hist) - n, len(hist))), float, n)
        return 10 * np.log10(np.maximum(arr, 1e-12))


OVERSAMPLE = 4  # BS.1770-4 Annex 2: true peak from a 4x oversampled signal (48 kHz in)
_TAPS_PER_PHASE = 24  # 97 taps: within 0.02 dB of FFmpeg even on full-band noise
_REACH = _TAPS_PER_PHASE // 2  # input samples the interpolator reaches either side


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
        self.taps = phases.shape[1]  # 2 x reach + 1: the windows span exactly the history
        # float32 like decoded audio: one single-precision product (error ~1e-7 of full scale).
        self.phases_reversed = np.ascontiguousarray(phases[:, ::-1].T, dtype=np.float32)
        self.history = np.zeros((channels, 2 * _REACH), np.float32)
        # The most the interpolator can lift the largest sample in its reach (+7.4 dB:
        # every tap's sign matched; programme audio overshoots by under ~3 dB).
        self.gain = float(np.abs(self.phases_reversed).sum(axis=0).max())

    @property
    def lag(self) -> int:
        return _REACH

    def feed(self, x: np.ndarray) -> np.ndarray:
        """``x`` (channels, n) -> n true peaks (linear), for the n samples ending
        ``lag`` samples before the end of ``x``."""
        return np.abs(self._interpolate(x)).max(axis=(0, 2))

    def _interpolate(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self.history.shape[0]:
            self.history = np.zeros((x.shape[0], 2 * _REACH), np.float32)
        xx = np.concatenate([self.history, x], axis=1, dtype=np.float32)
        self.history = xx[:, -2 * _REACH :]
        # Output 4q+p for the n samples measured: q runs over the positions where the
        # whole filter sits on input (the 2 x reach of history supplies the edges), so
        # each is one row of input windows times the phase filters (one matrix product).
        windows = np.lib.stride_tricks.sliding_window_view(xx, self.taps, axis=1)
        return windows @ self.phases_reversed  # (channels, n, 4)

    def feed_max(self, x: np.ndarray) -> float:
        """The highest true peak (linear) among what ``feed`` would return."""
        up = self._interpolate(x)
        return max(float(up.max()), -float(up.min()))

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
