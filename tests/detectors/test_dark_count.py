"""`black` and `freeze` share one count of a picture's dark samples (counted once, kept on
the picture), each still at its own threshold: a held dark-grey picture that is black to
a `black` set to 30 % is not black to `freeze` (10 %), so both raise, in either order."""

from __future__ import annotations

import numpy as np
import pytest

from service.detectors import registry
from service.pipeline.analyzer import Analyzer
from tests.detectors.helpers import vframe

FPS = 30
GREY = np.full((90, 160), 50, np.uint8)  # above 10 % of the range (37), below 30 % (81)


def _scene(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(40, 220, (90, 160), dtype=np.uint8)


@pytest.mark.parametrize("order", [["black", "freeze"], ["freeze", "black"]])
def test_black_and_freeze_each_judge_dark_at_their_own_threshold(order: list[str]) -> None:
    analyzer = Analyzer(registry.build(order, {"black": {"pix_th": 0.3}}))
    pictures = [_scene(i) for i in range(FPS)] + [GREY] * (3 * FPS)
    pictures += [_scene(i + 100) for i in range(FPS)]
    events = []
    for i, luma in enumerate(pictures):
        events += analyzer.feed(vframe(i / FPS, luma, index=i))
    events += analyzer.finish()
    opened = sorted((e.defect.type, round(e.defect.start, 2)) for e in events if e.kind == "open")
    assert opened == [("black", 1.0), ("freeze", 1.0)]
    # Asked at another threshold, the picture counts again.
    frame = vframe(0.0, GREY)
    assert frame.dark_samples(81) == frame.grid().size
    assert frame.dark_samples(37) == 0
    assert frame.dark_samples(81) == frame.grid().size
