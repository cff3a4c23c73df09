"""Pixel helpers shared by the video detectors."""

from __future__ import annotations


def black_threshold(black_level: int, white_level: int, pix_th: float) -> int:
    """FFmpeg blackdetect's pixel threshold: black + pix_th * range, truncated."""
    return int(black_level + pix_th * (white_level - black_level))
