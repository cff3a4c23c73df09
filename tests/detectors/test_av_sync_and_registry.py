"""A/V offset on a numpy line-up signal; the registry's validation messages."""

from __future__ import annotations

import numpy as np
import pytest

from service.detectors import registry
from service.detectors.registry import DetectorConfigError
from tests.detectors.helpers import audio_frames, run, vframe

FPS, RATE = 25, 48000


def lineup(
    seconds: int, offset_ms: dict[int, float], flash_frames: int = 1, fps: int = FPS
) -> list:
    """A flash of ``flash_frames`` pictures + a 50 ms beep each second; offset_ms[k]
    shifts the k-th beep."""
    audio = np.zeros((2, seconds * RATE))
    t = np.arange(int(0.05 * RATE)) / RATE
    for k in range(1, seconds):
        a = int((k + offset_ms.get(k, 0.0) / 1000) * RATE)
        audio[:, a : a + t.size] = 0.4 * np.sin(2 * np.pi * 1000 * t)
    video = [
        vframe(
            i / fps,
            np.full((72, 128), 235 if i % fps < flash_frames and i >= fps else 60, np.uint8),
            index=i,
        )
        for i in range(seconds * fps)
    ]
    items: list = []
    afr = audio_frames(audio)
    # Interleave roughly as a demuxer would.
    j = 0
    for v in video:
        while j < len(afr) and afr[j].t <= v.t:
            items.append(afr[j])
            j += 1
        items.append(v)
    return items + afr[j:]


def test_av_offset_measured_and_run_dated_to_first_late_pair() -> None:
    offsets = {k: 160.0 for k in range(5, 10)}
    _, defects = run(["av_sync"], lineup(14, offsets))
    assert len(defects) == 1
    d = defects[0]
    assert d["start"] == 5.0 and d["end"] == 10.0
    assert d["details"]["offset_ms"] == pytest.approx(160.0, abs=1000 / FPS)


def test_av_offset_within_tolerance_or_single_outlier_is_not_raised() -> None:
    offsets = {5: -30.0, 6: 100.0, 7: 300.0}  # in range, in range, one outlier
    assert run(["av_sync"], lineup(12, offsets))[1] == []


@pytest.mark.parametrize(("flash_frames", "fps"), [(2, 25), (3, 30), (6, 60)])
def test_a_flash_of_several_pictures_is_timed_by_its_first(flash_frames: int, fps: int) -> None:
    """Line-up generators flash two or three frames too, and a 25 -> 50 fps conversion
    doubles a one-frame flash: each is one flash, dated to its first picture."""
    offsets = {k: 200.0 for k in range(4, 9)}
    _, defects = run(["av_sync"], lineup(12, offsets, flash_frames, fps))
    assert [(d["start"], d["end"]) for d in defects] == [(4.0, 9.0)]
    assert defects[0]["details"]["offset_ms"] == pytest.approx(200.0, abs=1000 / fps)


def test_a_bright_scene_longer_than_a_flash_is_no_flash() -> None:
    """A cut to a bright scene with a beep near it measures nothing: pictures bright for
    more than ``max_flash_s`` are not a flash."""
    items = lineup(12, {k: 200.0 for k in range(1, 12)}, flash_frames=4)  # 0.12 s at 25
    assert run(["av_sync"], items)[1] == []
    longer = {"av_sync": {"max_flash_s": 0.2}}  # the same pictures, allowed as a flash
    assert len(run(["av_sync"], items, longer)[1]) == 1


def test_registry_expands_groups_and_names_bad_fields() -> None:
    assert registry.resolve_names(["audio"]) == [
        "silence",
        "channel_silence",
        "loudness",
        "clipping",
    ]
    with pytest.raises(DetectorConfigError) as err:
        registry.resolve_names(["blak"])
    assert err.value.field == "detectors" and "blak" in err.value.message
    with pytest.raises(DetectorConfigError) as err:
        registry.validate_thresholds({"freeze": {"dd": 3}})
    assert err.value.field == "thresholds.freeze.dd"
    with pytest.raises(DetectorConfigError) as err:
        registry.validate_thresholds({"black": {"d": -1}})
    assert err.value.field == "thresholds.black.d"
