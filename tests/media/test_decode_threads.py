"""Decoder threading chosen for CPU when busy: frame threads only while the process runs
fewer decoders than it has cores; AVMON_DECODE_THREADS forces either. Real PyAV decoders
on a real clip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.config import Settings
from service.media import decode_threads
from service.media.decoder import MediaReader
from tests.conftest import ClipFactory


@pytest.fixture
def policy() -> Iterator[decode_threads.DecodeThreads]:
    saved = (decode_threads.POLICY.mode, decode_threads.POLICY.share)
    yield decode_threads.POLICY
    decode_threads.POLICY.configure(*saved)


def test_auto_gives_frame_threads_until_the_decoders_fill_the_cores(
    make_clip: ClipFactory, policy: decode_threads.DecodeThreads
) -> None:
    clip, _ = make_clip(duration=2.0, size="320x180")
    cores = decode_threads.available_cores()
    policy.configure("auto")
    readers = [MediaReader(str(clip), threads=None) for _ in range(cores + 1)]
    try:
        types = [_kind(r) for r in readers]
        assert types[-1] == "NONE", types  # more decoders than cores: one thread each
        if cores > 1:
            assert types[0] != "NONE", types  # idle cores: frame threads
        frames = sum(1 for _ in readers[-1].frames())
        assert frames > 0  # a one-thread decoder decodes
    finally:
        for r in readers:
            r.close()
    assert policy.open == 0  # every close gave its slot back


@pytest.mark.parametrize(("mode", "expected"), [("single", "NONE"), ("frame", "AUTO")])
def test_the_knob_forces_either(
    make_clip: ClipFactory, policy: decode_threads.DecodeThreads, mode: str, expected: str
) -> None:
    clip, _ = make_clip(duration=2.0, size="320x180")
    policy.configure(Settings(decode_threads=mode).decode_threads)
    with MediaReader(str(clip), threads=None) as reader:
        assert _kind(reader) == expected


def test_a_bad_value_fails_at_start() -> None:
    with pytest.raises(ValueError, match="decode_threads"):
        Settings(decode_threads="many")  # type: ignore[arg-type]


def _kind(reader: MediaReader) -> str:
    assert reader.video_stream is not None
    return str(reader.video_stream.thread_type).rsplit(".", 1)[-1]
