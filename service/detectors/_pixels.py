"""Pixel sampling shared by the video detectors (views only: no copies on the hot path)."""

from __future__ import annotations

import math

import numpy as np

# About this many luma samples are enough to estimate frame-level statistics (black
# ratio, mean absolute difference) to well under 1%; a 1080p frame has 2 million.
TARGET_SAMPLES = 65_536


def sample_step(height: int, width: int) -> int:
    return max(1, round(math.sqrt(height * width / TARGET_SAMPLES)))


def sampled(luma: np.ndarray) -> np.ndarray:
    """A regular grid of luma samples (a strided view)."""
    s = sample_step(luma.shape[0], luma.shape[1])
    # Offset by half a step so the grid does not sit on block or picture edges.
    return luma[s // 2 :: s, s // 2 :: s]


def black_threshold(black_level: int, white_level: int, pix_th: float) -> int:
    """FFmpeg blackdetect's pixel threshold: black + pix_th * range, truncated."""
    return int(black_level + pix_th * (white_level - black_level))
