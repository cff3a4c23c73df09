"""`black` and `freeze` share one count of a picture's dark samples (counted once, kept on
the picture), each still at its own threshold: a held dark-grey picture that is black to
a `black` set to 30 % is not black to `freeze` (10 %), so both raise, in either order."""

from __future__ import annotations

import numpy as np
import pytest

from service.detectors import registry
from service.pipeline.analyzer import Analyzer
from tests.detectors.helpers import scene, vframe

FPS = 30
GREY = np.full((90, 160), 50, np.uint8)  # above 10 % of the range (37), below 30 % (81)


@pytest.mark.parametrize("freeze_first", [False, True])
def test_black_and_freeze_each_judge_dark_at_their_own_threshold(freeze_first: bool) -> None:
    detectors = registry.build(["black", "freeze"], {"black": {"pix_th": 0.3}})
    # The registry builds in its own order (black first); the other asks freeze first.
    analyzer = Analyzer(detectors[::-1] if freeze_first else detectors)
    pictures = [scene(i) for i in range(FPS)] + [GREY] * (3 * FPS)
    pictures += [scene(i + 100) for i in range(FPS)]
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
