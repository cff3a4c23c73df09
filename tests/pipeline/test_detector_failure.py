"""One detector's failure blinds no other: a detector that raises on some inputs is
skipped for them (counted, reported), and the rest of the stream's detectors, and the
rest of its inputs, are analysed as before. Real detectors and lifecycle beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service import cli
from service.detectors import registry
from service.detectors.base import Change, Detector, Params
from service.media.frames import VideoFrame
from service.pipeline.analyzer import Analyzer
from service.synth import SynthSpec, parse_injections, synthesize
from tests.detectors.helpers import scene, vframe

FPS = 30
BLACK = np.full((90, 160), 16, np.uint8)


class _Brittle(Detector[Params]):
    """Raises on every other picture and when the input ends, as a bug would."""

    name = "brittle"
    group = "video"
    wants_video = True

    def on_video(self, frame: VideoFrame) -> list[Change]:
        if frame.index % 2:
            raise ValueError("ndarray is not C-contiguous")
        return []

    def finish(self, t: float) -> list[Change]:
        raise RuntimeError("state lost")


def test_a_failing_detector_is_skipped_and_the_others_carry_on() -> None:
    detectors: list[Detector[Any]] = [_Brittle(Params()), *registry.build(["black"])]
    analyzer = Analyzer(detectors)
    pictures = [scene(i) for i in range(FPS)] + [BLACK] * (3 * FPS) + [scene(i) for i in range(FPS)]
    events = []
    for i, luma in enumerate(pictures):
        events += analyzer.feed(vframe(i / FPS, luma, index=i))
    events += analyzer.finish()
    assert [(e.kind, e.defect.type) for e in events] == [("open", "black"), ("close", "black")]
    assert (events[1].defect.start, events[1].defect.end) == (1.0, 4.0)
    # Every odd picture, and the end of input: counted, the first one kept for the report.
    assert analyzer.detector_errors == {"brittle": len(pictures) // 2 + 1, "black": 0}
    assert analyzer.first_error == {"brittle": "ValueError: ndarray is not C-contiguous"}


def test_avmon_check_warns_of_a_failing_detector_and_still_reports_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`avmon check` on real encoded media with a detector that fails: exit 0, the other
    detectors' defects in the one JSON document, and a warning that names the failure."""
    clip = tmp_path / "black.ts"
    spec = SynthSpec(clip, 6.0, 320, 180, injections=parse_injections("black@2-5"))
    synthesize(spec)
    monkeypatch.setitem(registry.DETECTORS, "brittle", _Brittle)
    rc = cli.main(["check", str(clip), "--detectors", "brittle,black", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    found = [(d["type"], d["start"], d["end"]) for d in json.loads(out)["defects"]]
    assert found == [("black", 2.0, 5.0)]
    assert "detector brittle failed on" in err
    assert "ValueError: ndarray is not C-contiguous" in err
