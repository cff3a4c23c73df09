"""The test and demo sender (``service.demo.send_udp``) loops a clip as one live stream:
each loop's audio starts exactly where the last one ended, so a receiver sees no drift
however long it runs (a gap of ~12 ms a loop added up to an `av_sync` alarm)."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av

from service.demo import send_udp
from service.pipeline.check import check
from service.synth import SynthSpec, synthesize

LOOPS = 8


def _looped(tmp_path: Path) -> Path:
    clip = tmp_path / "clip.ts"
    synthesize(SynthSpec(out=clip, duration=1.0, width=160, height=92, audio="tone"))
    out = tmp_path / "looped.ts"
    stop = threading.Event()
    sender = threading.Thread(target=send_udp, args=(str(clip), str(out), stop), daemon=True)
    sender.start()
    sender.join(LOOPS + 0.2)  # paced at real time, half a second ahead
    stop.set()
    sender.join(5)
    assert not sender.is_alive()
    return out


def test_a_looped_clip_is_one_gapless_audio_timeline(tmp_path: Path) -> None:
    looped = _looped(tmp_path)
    gaps: list[Fraction] = []
    with av.open(str(looped)) as container:
        expected: Fraction | None = None
        for pkt in container.demux(audio=0):
            if pkt.pts is None:
                continue
            t = pkt.pts * pkt.time_base
            if expected is not None and t != expected:
                gaps.append(t - expected)
            expected = t + pkt.duration * pkt.time_base
        assert expected is not None and expected >= LOOPS  # every loop was sent
    assert gaps == [], [float(g) for g in gaps]
    # And as a receiver reads it: no drift between the audio's timestamps and samples.
    report = check(str(looped), detectors=["av_sync"])
    assert [d for d in report.defects if d.type == "av_sync"] == []
