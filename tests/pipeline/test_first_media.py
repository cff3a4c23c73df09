"""A runner says when it analysed its first media, picture or sound: cluster mode logs a
unit as running from then (what G1 and G2 measure a handoff by). A runner of a stream's
audio units alone decodes no picture, and once said nothing at all -- its units ran
without ever saying so, and G2 failed whenever a successor took only a stream's audio
unit. Real PyAV decoding of a real clip."""

from __future__ import annotations

import threading

import pytest

from service.pipeline.runner import StreamRunner, StreamSpec
from tests.conftest import ClipFactory
from tests.pipeline.runners import run_to_the_end


@pytest.mark.parametrize(
    "detectors", [["silence"], ["black"], ["black", "silence"]], ids=["sound", "picture", "both"]
)
def test_a_runner_says_it_analysed_its_first_media(
    make_clip: ClipFactory, detectors: list[str]
) -> None:
    clip, _ = make_clip("black@0-1", duration=2.0, size="320x180")  # picture and tone
    said: list[str] = []
    lock = threading.Lock()

    def on_stats(_: StreamRunner, kind: str, __: float) -> None:
        with lock:
            said.append(kind)

    spec = StreamSpec(id="s1", name="cam", url=str(clip), detectors=detectors)
    runner = StreamRunner(spec, lambda *_: None, on_frame_stats=on_stats)
    run_to_the_end(runner)
    with lock:
        assert said.count("first_frame") == 1, said
    assert runner.has_media
