"""Cross-check avmon's black, freeze and silence detectors against FFmpeg's own.

The same synthesized clips go through `service.pipeline.check.check` and through
libavfilter's blackdetect / freezedetect / silencedetect (PyAV filter graphs, see
tests/ffmpeg_ref.py), both with d = 2 s. Every window must have a partner on the other
side within one video frame (silence: within 1 ms, well under a frame), and FFmpeg must
have found the injected defects, so a broken filter hookup cannot pass vacuously.

Policy difference taken into account (not a tolerance): FFmpeg's freezedetect reports a
frozen black picture as a freeze; avmon reports it as black only, so FFmpeg freezes whose
reference frame is black are left out (tests/ffmpeg_ref.py: Reference.windows).

avmon's freeze by default also follows a frozen picture through its re-encoding (the
``drift``, ``return_s`` and ``coarse_drift`` tolerances, service/detectors/freeze.py); with
``drift`` = ``noise`` and the other two 0 it is FFmpeg's rule, and that is what the
window-by-window comparison runs. With the default, each FFmpeg freeze window is matched,
starting no later than FFmpeg's and no earlier than the injected freeze.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.pipeline.check import Report, check
from service.synth import SynthSpec, parse_injections, synthesize
from tests.ffmpeg_ref import Reference, Window, run_reference

D = 2.0  # minimum duration on both sides (avmon's default and FFmpeg's)
FPS = 30
FRAME = 1.0 / FPS
EPS = 1e-6  # float noise on times that are whole frames apart
TOLERANCE = {"black": FRAME + EPS, "freeze": FRAME + EPS, "silence": 0.001}
TYPES = ("black", "freeze", "silence")
# FFmpeg's freezedetect
FFMPEG_RULE = {"freeze": {"drift": 0.001, "return_s": 0.0, "coarse_drift": 0.0}}


@dataclass(frozen=True)
class Clip:
    width: int
    height: int
    duration: float
    inject: str
    content: str = "scene"
    audio: str = "tone"
    crf: int = 20


CLIPS: dict[str, Clip] = {
    # Several of each, >= 2.5 s; one shorter than d of each (found by neither side);
    # black and silence still open at the end of the input.
    "scene360": Clip(
        640,
        360,
        28.0,
        "black@1-4,silence@2-5,freeze@5-8,silence@7-10,black@9.5-12,silence@12-14.5,"
        "freeze@13-16.5,silence@16-17.5,black@17-18.5,freeze@19.5-20.8,silence@21-28,"
        "freeze@21.5-24.5,black@25.5-28",
    ),
    "scene720": Clip(
        1280,
        720,
        14.0,
        "black@1-3.5,freeze@5-8,silence@6-9,black@9-11.5,freeze@11.5-14",
        audio="speech",
    ),
    "lowlight": Clip(
        640,
        360,
        15.0,
        "black@1-3.5,freeze@4.5-7.5,black@8-11,silence@9-12,freeze@12-14.5",
        content="lowlight",
    ),
    "noise": Clip(
        640,
        360,
        14.0,
        "black@1-3.5,freeze@4.5-7.5,silence@5-8,black@9-11.5,freeze@11.5-14",
        content="noise",
        audio="noise",
    ),
    # Boundaries of the minimum duration, on a lossless encode (a frozen picture stays
    # bit-exact): runs of exactly d (60 frames) are reported by FFmpeg (integer pts,
    # `>=`), runs one frame shorter are not. Runs of exactly d start at frames whose
    # float times differ by exactly 2.0 (3.0, 9.5) and by a hair under it (0.3, 6.7).
    "exact_d": Clip(
        640,
        360,
        16.0,
        "black@0.3-2.3,black@3-5,freeze@6.7-8.7,freeze@9.5-11.5,black@12-13.95,freeze@14-15.95",
        crf=0,
    ),
    # A black run of exactly d still open at the end of the input. 16 s of 48 kHz audio
    # is a whole number of AAC frames, so audio and video both end at 16.0.
    "exact_d_eof": Clip(320, 184, 16.0, "black@14-16"),
}


@dataclass
class Result:
    path: Path
    truth: list[dict[str, Any]]
    ours: Report  # FFMPEG_RULE
    default: Report  # avmon's defaults
    ffmpeg: Reference


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Build and analyse each clip once (on first use), on both sides."""
    root = tmp_path_factory.mktemp("crosscheck")
    cache: dict[str, Result] = {}

    def get(name: str) -> Result:
        if name not in cache:
            c = CLIPS[name]
            out = root / f"{name}.ts"
            truth = synthesize(
                SynthSpec(
                    out=out,
                    duration=c.duration,
                    width=c.width,
                    height=c.height,
                    fps=FPS,
                    content=c.content,
                    audio=c.audio,
                    crf=c.crf,
                    injections=parse_injections(c.inject),
                )
            )
            ours = check(str(out), detectors=list(TYPES), thresholds=FFMPEG_RULE)
            default = check(str(out), detectors=list(TYPES))
            ref = run_reference(out, d=D)
            cache[name] = Result(out, truth["defects"], ours, default, ref)
        return cache[name]

    return get


def _ours(report: Report, kind: str) -> list[Window]:
    out = []
    for d in report.defects:
        if d.type == kind:
            assert d.end is not None, f"open defect in a finished report: {d}"
            out.append(Window(kind, d.start, d.end))
    return sorted(out, key=lambda w: w.start)


def _fmt(windows: list[Window]) -> str:
    return ", ".join(str(w) for w in windows) or "none"


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("name", list(CLIPS))
def test_windows_agree_with_ffmpeg(analysed: Any, name: str, kind: str) -> None:
    r: Result = analysed(name)
    theirs = r.ffmpeg.windows(kind, D)
    ours = _ours(r.ours, kind)
    tol = TOLERANCE[kind]
    where = f"{name} {kind}: avmon {_fmt(ours)} | FFmpeg {_fmt(theirs)}"
    assert len(ours) == len(theirs), f"different number of windows; {where}"
    for a, b in zip(ours, theirs, strict=True):
        ds, de = a.start - b.start, a.end - b.end
        assert abs(ds) <= tol and abs(de) <= tol, (
            f"{a} vs {b}: start {ds * 1000:+.1f} ms, end {de * 1000:+.1f} ms "
            f"(tolerance {tol * 1000:.1f} ms); {where}"
        )


@pytest.mark.parametrize("name", list(CLIPS))
def test_default_freeze_holds_through_reencoding(analysed: Any, name: str) -> None:
    """The default rule finds the same freezes, from no later than FFmpeg's start (x264
    refines a still picture for a few frames, which FFmpeg's rule counts as motion) and
    no earlier than the injection, to FFmpeg's end; black and silence are unchanged."""
    r: Result = analysed(name)
    for kind in ("black", "silence"):
        assert _ours(r.default, kind) == _ours(r.ours, kind)
    theirs = r.ffmpeg.windows("freeze", D)
    ours = _ours(r.default, "freeze")
    where = f"{name}: avmon {_fmt(ours)} | FFmpeg {_fmt(theirs)}"
    assert len(ours) == len(theirs), where
    injected = [t for t in r.truth if t["type"] == "freeze"]
    for a, b in zip(ours, theirs, strict=True):
        truth = min(injected, key=lambda t: abs(t["start"] - a.start))
        assert truth["start"] - FRAME - EPS <= a.start <= b.start + FRAME + EPS, where
        assert abs(a.end - b.end) <= FRAME + EPS, where


@pytest.mark.parametrize("name", list(CLIPS))
def test_ffmpeg_found_the_injected_defects(analysed: Any, name: str) -> None:
    """The reference is live: each injection of >= d is one FFmpeg window, and nothing
    else is (shorter injections are not reported)."""
    r: Result = analysed(name)
    ref = r.ffmpeg
    assert ref.video_frames == round(CLIPS[name].duration * FPS)
    assert abs(ref.video_end - CLIPS[name].duration) < EPS
    for kind in TYPES:
        wanted = [t for t in r.truth if t["type"] == kind and t["end"] - t["start"] >= D - EPS]
        found = ref.windows(kind, D)
        assert len(found) == len(wanted), f"{name} {kind}: injected {wanted}, FFmpeg {found}"
        for t in wanted:
            span = t["end"] - t["start"]
            # Overlap, not exact times: x264 keeps refining a just-frozen picture for a
            # few frames, so freezes begin a little late; AAC smears silence edges by ms.
            hits = [w for w in found if _overlap(w, t) >= 0.75 * span]
            assert len(hits) == 1, f"{name}: injected {t} not found by FFmpeg in {found}"
    # The freeze-inside-black rule is exercised: FFmpeg did report those freezes.
    for t in r.truth:
        if t["type"] == "black" and t["end"] - t["start"] >= D + FRAME:
            frozen = ref.raw["freeze"]
            assert any(_overlap(w, t) >= 0.75 * (t["end"] - t["start"]) for w in frozen), (
                f"{name}: FFmpeg reported no freeze inside black {t}: {_fmt(frozen)}"
            )


def _overlap(w: Window, t: dict[str, Any]) -> float:
    return float(min(w.end, t["end"]) - max(w.start, t["start"]))


def test_timeline_origin_matches_avmon(analysed: Any) -> None:
    """Both sides are on one timeline: same origin, same end of input."""
    r: Result = analysed("scene360")
    assert r.ffmpeg.origin > 0  # MPEG-TS: the video starts after 0; a real shift to undo
    assert abs(r.ours.duration - r.ffmpeg.end) <= EPS, (r.ours.duration, r.ffmpeg.end)
