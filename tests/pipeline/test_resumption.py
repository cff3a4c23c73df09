"""A defect belongs to its unit: a runner that takes a unit over inherits its open defects
and continues them (same defect, no second open) while the condition holds, or closes
them at its first input when it does not. Real detectors, real lifecycle."""

from __future__ import annotations

import numpy as np

from service.detectors import registry
from service.pipeline.analyzer import Analyzer
from service.pipeline.lifecycle import Defect, DefectEvent
from tests.detectors.helpers import audio_frames, scene, vframe

FPS = 30
BLACK = np.full((90, 160), 16, np.uint8)


def _inherited(type_: str, group: str = "video", key: str = "") -> Defect:
    return Defect(type=type_, group=group, key=key, start=0.0, severity="critical")


def _feed(analyzer: Analyzer, frames: list[np.ndarray], t0: float = 0.0) -> list[DefectEvent]:
    events: list[DefectEvent] = []
    for i, luma in enumerate(frames):
        events += analyzer.feed(vframe(t0 + i / FPS, luma, index=i))
    return events


def test_a_condition_still_on_continues_the_inherited_defect() -> None:
    analyzer = Analyzer(registry.build(["black", "freeze"]))
    old = _inherited("black")
    assert analyzer.inherit(old)
    events = _feed(analyzer, [BLACK] * (3 * FPS) + [scene(i) for i in range(FPS)])
    assert [(e.kind, e.defect) for e in events] == [("close", old)]  # no second open
    assert old.end is not None and abs(old.end - 3.0) < 1e-6  # the first good frame


def test_a_condition_gone_closes_the_inherited_defect_at_the_first_input() -> None:
    analyzer = Analyzer(registry.build(["black"]))
    old = _inherited("black")
    analyzer.inherit(old)
    events = _feed(analyzer, [scene(i) for i in range(FPS)], t0=7.0)
    assert [(e.kind, e.defect) for e in events] == [("close", old)]
    assert old.end == 7.0


def test_a_condition_that_returns_later_is_a_new_defect() -> None:
    analyzer = Analyzer(registry.build(["black"]))
    old = _inherited("black")
    analyzer.inherit(old)
    frames = [scene(i) for i in range(FPS)] + [BLACK] * (3 * FPS) + [scene(99)]
    events = _feed(analyzer, frames)
    kinds = [(e.kind, e.defect is old) for e in events]
    assert kinds == [("close", True), ("open", False), ("close", False)]
    assert old.end == 0.0 and abs(events[1].defect.start - 1.0) < 1e-6


def test_a_frozen_picture_continues_across_the_handoff() -> None:
    analyzer = Analyzer(registry.build(["freeze"]))
    old = _inherited("freeze")
    analyzer.inherit(old)
    still = scene(5)
    # A raised freeze's end is known return_s (0.5 s) after the picture left: 1 s of motion.
    events = _feed(analyzer, [still] * (2 * FPS) + [scene(i) for i in range(FPS)])
    assert [(e.kind, e.defect) for e in events] == [("close", old)]
    assert old.end is not None and abs(old.end - 2.0) < 1e-6


def test_audio_defects_resume_per_key() -> None:
    rate = 48000
    t = np.arange(4 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    # Channel 1 silent for the first 3 s, then back; channel 0 plays throughout. (This
    # detector reports a channel's run once it has lasted d, so a run ending sooner after
    # a handoff closes the inherited defect at the first input: its end is early, but it
    # is still one open and one close.)
    right = tone.copy()
    right[: 3 * rate] = 0.0
    analyzer = Analyzer(registry.build(["channel_silence", "silence"]))
    ch1 = _inherited("channel_silence", "audio", key="1")
    silent_all = _inherited("silence", "audio")
    assert analyzer.inherit(ch1) and analyzer.inherit(silent_all)
    events: list[DefectEvent] = []
    for frame in audio_frames(np.stack([tone, right])):
        events += analyzer.feed(frame)
    events += analyzer.finish()
    closes = {e.defect.type: e.defect.end for e in events if e.kind == "close"}
    assert [e.kind for e in events] == ["close", "close"]
    assert closes["silence"] == 0.0  # sound from the first sample: it had ended
    end = closes["channel_silence"]
    assert end is not None and abs(end - 3.0) < 0.01  # continued, closed when it came back


def test_an_inherited_defect_no_detector_here_raises_is_refused() -> None:
    analyzer = Analyzer(registry.build(["black"]))
    assert not analyzer.inherit(_inherited("silence", "audio"))


def test_end_of_input_closes_what_was_inherited() -> None:
    analyzer = Analyzer(registry.build(["black"]))
    old = _inherited("black")
    analyzer.inherit(old)
    events = _feed(analyzer, [BLACK] * 10) + analyzer.finish()
    assert [(e.kind, e.defect) for e in events] == [("close", old)]
