"""Sample-level helpers shared by the audio detectors."""

from __future__ import annotations

import numpy as np


def transitions(mask: np.ndarray, prev: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices where a boolean series changes value (given the value before it) and the
    new values there."""
    m = mask.view(np.int8) if mask.dtype == np.bool_ else mask.astype(np.int8)
    d = np.diff(m, prepend=np.int8(prev))
    idx = np.flatnonzero(d)
    return idx, mask[idx]


def db_to_amplitude(db: float) -> float:
    return float(10.0 ** (db / 20.0))
