"""Video detectors and the lifecycle on frames built from numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from service.detectors.blockiness import grid_score
from tests.detectors.helpers import run, vframe

FPS = 25
RNG = np.random.default_rng(4)


def moving(i: int, h: int = 144, w: int = 256) -> np.ndarray:
    return RNG.integers(40, 220, (h, w), dtype=np.uint8) if i >= 0 else np.zeros((h, w), np.uint8)


def black(h: int = 144, w: int = 256) -> np.ndarray:
    return np.full((h, w), 16, np.uint8)


def frames(spec: list[tuple[str, int]]) -> list:
    """[("moving", n), ("black", n), ...] -> VideoFrames at FPS."""
    out, i = [], 0
    for kind, n in spec:
        for _ in range(n):
            luma = black() if kind == "black" else moving(i)
            out.append(vframe(i / FPS, luma, index=i))
            i += 1
    return out


def test_black_raised_after_d_with_start_dated_back_and_end_at_first_good_frame() -> None:
    events, defects = run(["black"], frames([("moving", 25), ("black", 75), ("moving", 25)]))
    assert defects == [{"type": "black", "start": 1.0, "end": 4.0, "details": {"black_ratio": 1.0}}]
    opened = next(e for e in events if e.kind == "open")
    assert opened.at == pytest.approx(3.0)  # raised once 2 s had passed, not before


def test_black_shorter_than_d_is_not_raised_and_one_good_frame_ends_a_run() -> None:
    # 1.6 s + 1 good frame + 1.6 s: never bridged, so never 2 s long.
    seq = [("moving", 10), ("black", 40), ("moving", 1), ("black", 40), ("moving", 10)]
    assert run(["black"], frames(seq))[1] == []


def test_dark_but_not_black_picture() -> None:
    # Luma just above FFmpeg's threshold (16 + 0.1 * 219 = 37.9 -> 37) is not black.
    dark = [vframe(i / FPS, np.full((144, 256), 38, np.uint8), index=i) for i in range(100)]
    assert run(["black"], dark)[1] == []
    darker = [vframe(i / FPS, np.full((144, 256), 37, np.uint8), index=i) for i in range(100)]
    assert [d["type"] for d in run(["black"], darker)[1]] == ["black"]


def test_open_defect_closed_at_end_of_input() -> None:
    _, defects = run(["black"], frames([("moving", 10), ("black", 90)]))
    assert defects[0]["start"] == 0.4 and defects[0]["end"] == 4.0


def test_freeze_dated_to_reference_frame_and_tolerates_sub_threshold_noise() -> None:
    still = moving(0)
    items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
    for i in range(25, 100):
        # +-1 code value on 10% of pixels: mean abs diff 0.1 / 256, below -60 dB.
        noisy = still.copy()
        mask = RNG.random(still.shape) < 0.1
        noisy[mask] += 1
        items.append(vframe(i / FPS, still if i == 25 else noisy, index=i))
    items += [vframe(i / FPS, moving(i), index=i) for i in range(100, 125)]
    _, defects = run(["freeze"], items)
    assert [(d["type"], d["start"], d["end"]) for d in defects] == [("freeze", 1.0, 4.0)]


def test_small_motion_in_a_still_shot_is_no_freeze() -> None:
    """A wide still shot where only a small patch moves (a presenter's face): every frame
    differs from the one before by more than ``noise`` (~0.0015), but never by more than
    ``drift`` from the first. Not a freeze -- FFmpeg's rule agrees -- however long."""
    background = moving(0)
    patches = [RNG.integers(40, 220, (24, 24), dtype=np.uint8) for _ in range(4)]
    items = []
    for i in range(150):
        luma = background.copy()
        luma[60:84, 100:124] = patches[i % 4]
        items.append(vframe(i / FPS, luma, index=i, key=i % 25 == 0))
    assert run(["freeze"], items)[1] == []


def test_a_slow_fade_is_no_freeze() -> None:
    """A fade too slow to pass ``noise`` from one frame to the next (a fifth of the pixels
    one code value brighter each frame: ~0.0008) passes ``drift`` from where it started
    within a few frames: not frozen, however still each step looks."""
    luma = np.clip(moving(0), 40, 180)
    items = []
    for i in range(150):
        if i:
            luma = luma + (RNG.random(luma.shape) < 0.2).astype(np.uint8)
        items.append(vframe(i / FPS, luma, index=i, key=i % 25 == 0))
    assert run(["freeze"], items)[1] == []


def _shimmering(still: np.ndarray, frames: int) -> list[np.ndarray]:
    """A held picture as a starved encoder sends it: re-coded on every frame, +-6 code
    values on half the pixels (each frame 0.012 of full scale from the one before, past
    ``drift``), the 16x16 block means all but unchanged."""
    out = []
    for _ in range(frames):
        noise = RNG.choice(np.array([-6, 0, 0, 6], np.int16), still.shape)
        out.append(np.clip(still.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def test_a_raised_freeze_goes_on_while_a_starved_encoder_shimmers() -> None:
    """Held 1-5 s: still (by FFmpeg's rule) for 2.5 s, then re-coded every frame past
    ``drift`` with its coarse picture where it was: one freeze, to the frame. The same
    shimmer ends it when, with it, a 32x32 patch changes (a caption, a cut-in), the
    picture brightens as a whole by 2 code values, or it starts a fade too slow to pass
    ``coarse_drift`` from one frame to the next: the coarse picture moved from the frozen
    one's."""
    still = np.clip(moving(0), 20, 230)
    patched = still.copy()
    patched[40:72, 80:112] = 230  # a caption box
    fade = [still]
    for _ in range(24):  # 0.4 code values brighter a frame on average
        fade.append(fade[-1] + (RNG.random(still.shape) < 0.4).astype(np.uint8))

    def clip(later: list[np.ndarray]) -> list:
        items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
        items += [vframe(i / FPS, still, index=i) for i in range(25, 88)]
        shimmer = _shimmering(still, 12) + [_shimmering(luma, 1)[0] for luma in later]
        items += [vframe((88 + k) / FPS, luma, index=88 + k) for k, luma in enumerate(shimmer)]
        return items + [vframe(i / FPS, moving(i), index=i) for i in range(125, 150)]

    def spans(items: list, **freeze: float) -> list[tuple[float, float]]:
        found = run(["freeze"], items, {"freeze": freeze} if freeze else None)[1]
        return [(d["start"], d["end"]) for d in found]

    assert spans(clip([still] * 25)) == [(1.0, 5.0)]
    assert spans(clip([patched] * 25)) == [(1.0, 4.0)]
    assert spans(clip([still + 2] * 25)) == [(1.0, 4.0)]
    assert spans(clip(fade)) == [(1.0, 4.16)]
    assert spans(clip([still] * 25), coarse_drift=0.0) == [(1.0, 3.52)]  # FFmpeg's end


def test_a_step_within_drift_continues_a_freeze_and_a_larger_one_ends_it() -> None:
    """A frozen picture re-encoded steps by ~0.003 (more than ``noise``, less than
    ``drift``), then holds: one freeze, whether the step is a key frame's or not (libvpx
    steps at its golden-frame refreshes too). At a key frame it is still on the spot;
    elsewhere the step is judged ``return_s`` later. With ``return_s`` = 0 (and
    ``coarse_drift`` = 0) a step on a frame that is not key (nor the one after) is a
    change, and so is a step past ``drift`` anywhere -- here the whole picture brightens
    by 2.8 code values: the freeze ends there."""
    still = moving(0)
    small, large = still.copy(), still.copy()
    chosen = RNG.random(still.shape) < 0.35
    small[chosen] += 2  # mean abs diff 0.7 / 256 ~ 0.0027
    large[chosen] += 8  # ~ 0.011, past drift

    def clip(stepped: np.ndarray, step_is_key: bool) -> list:
        items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
        for i in range(25, 125):
            luma = still if i < 75 else stepped
            items.append(vframe(i / FPS, luma, index=i, key=i == 75 and step_is_key))
        return items + [vframe(i / FPS, moving(i), index=i) for i in range(125, 150)]

    def spans(items: list, **freeze: float) -> list[tuple[float, float]]:
        found = run(["freeze"], items, {"freeze": freeze} if freeze else None)[1]
        return [(d["start"], d["end"]) for d in found]

    assert spans(clip(small, True)) == [(1.0, 5.0)]
    assert spans(clip(small, False)) == [(1.0, 5.0)]
    assert spans(clip(small, True), return_s=0.0) == [(1.0, 5.0)]
    assert spans(clip(small, False), return_s=0.0, coarse_drift=0.0) == [(1.0, 3.0), (3.0, 5.0)]
    assert spans(clip(large, False)) == [(1.0, 3.0), (3.0, 5.0)]
    assert spans(clip(large, True)) == [(1.0, 3.0), (3.0, 5.0)]
    # Two such steps a second apart, together past drift: each is judged against the
    # picture as it came back from the one before (an encoder refines it further).
    twice = clip(small, False)
    further = small.copy()
    further[RNG.random(still.shape) < 0.35] += 2
    for item in twice[100:125]:
        item.luma = further
    assert spans(twice) == [(1.0, 5.0)]


def test_a_step_before_missing_frames_is_one_freeze() -> None:
    """An encoder that drops still pictures (GStreamer's theoraenc): a short still run, a
    step within drift, one frame after it, then nothing for 2.6 s. The frame after the
    step is back (still, within drift of the frozen picture), so the freeze goes on
    through the step: one freeze from the first still picture -- not a raised run from
    the step closed 2.6 s later and the older one opened again after it."""
    still = moving(0)
    stepped = still.copy()
    stepped[RNG.random(still.shape) < 0.35] += 2  # ~0.0027: within drift
    items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
    items += [vframe(i / FPS, still, index=i) for i in range(25, 40)]  # 1.0-1.56 s: < d
    items += [vframe(i / FPS, stepped, index=i) for i in (40, 41)]  # the step at 1.6 s
    items += [vframe(i / FPS, stepped, index=i) for i in range(108, 125)]  # from 4.32 s
    items += [vframe(i / FPS, moving(i), index=i) for i in range(125, 150)]
    found = [(d["start"], d["end"]) for d in run(["freeze"], items)[1]]
    assert found == [(25 / FPS, 125 / FPS)], found


def test_a_key_frame_step_judged_after_missing_frames_leaves_a_long_still_run_as_it_is() -> None:
    """As above, but the frame after the step is a key frame that refines it (within
    drift, past noise: still only by the key-frame tolerance), so it is not back; then
    nothing for 2.6 s. When the step is judged, the run since it has lasted d: it stands
    (one freeze from the step), rather than being closed as raised and the older run
    opened again after it."""
    still = moving(0)
    stepped = still.copy()
    stepped[RNG.random(still.shape) < 0.35] += 2  # ~0.0027 from still: within drift
    refined = stepped.copy()
    refined[RNG.random(still.shape) < 0.4] += 1  # ~0.0016 from stepped, 0.0043 from still
    items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
    items += [vframe(i / FPS, still, index=i) for i in range(25, 40)]  # 1.0-1.56 s: < d
    items += [vframe(40 / FPS, stepped, index=40)]  # the step at 1.6 s
    items += [vframe(41 / FPS, refined, index=41, key=True)]
    items += [vframe(i / FPS, refined, index=i) for i in range(108, 125)]
    items += [vframe(i / FPS, moving(i), index=i) for i in range(125, 150)]
    found = [(d["start"], d["end"]) for d in run(["freeze"], items)[1]]
    assert found == [(40 / FPS, 125 / FPS)], found


def test_a_freeze_that_comes_back_black_is_left_to_black() -> None:
    """A still picture 97 % dark (not black), then a step to 99 % dark -- black, within
    drift of it -- which stays: the picture comes back at once, and a run found on from
    its first frame must still leave a frozen black picture to ``black`` (one alert)."""
    dim = np.full((144, 256), 16, np.uint8)
    dim[RNG.random(dim.shape) < 0.03] = 60  # 3 % bright: not black
    darker = dim.copy()
    darker[(dim == 60) & (RNG.random(dim.shape) < 0.67)] = 16  # ~1 % left: black
    items = [vframe(i / FPS, moving(i), index=i) for i in range(25)]
    items += [vframe(i / FPS, dim, index=i) for i in range(25, 40)]  # 1.0-1.56 s: < d
    items += [vframe(i / FPS, darker, index=i) for i in range(40, 125)]  # 1.6-5.0 s
    items += [vframe(i / FPS, moving(i), index=i) for i in range(125, 150)]
    _, defects = run(["black", "freeze"], items)
    assert [d["type"] for d in defects] == ["black"], defects


def test_freeze_of_black_picture_is_reported_as_black_only() -> None:
    _, defects = run(["black", "freeze"], frames([("moving", 25), ("black", 100), ("moving", 25)]))
    assert [d["type"] for d in defects] == ["black"]


def test_block_corruption_runs_until_the_next_clean_keyframe() -> None:
    items = []
    for i in range(100):
        t = i / FPS
        items.append(vframe(t, moving(i), index=i, corrupt=20 <= i < 25, key=i % 50 == 0))
    _, defects = run(["block_corruption"], items)
    assert [(d["start"], d["end"]) for d in defects] == [(0.8, 2.0)]


def _texture(h: int, w: int) -> np.ndarray:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(RNG.normal(0, 1, (h, w)), 3)
    return (128 + 40 * smooth / smooth.std()).clip(0, 255)


def _blocky(img: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = img.shape
    means = img.reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    return np.repeat(np.repeat(means, block, 0), block, 1).astype(np.uint8)


def test_grid_score_separates_blocks_from_natural_texture_and_grid_aligned_edges() -> None:
    from scipy import ndimage

    smooth = (
        ndimage.gaussian_filter(RNG.normal(128, 40, (288, 512)), 3).clip(0, 255).astype(np.uint8)
    )
    assert grid_score(smooth) == pytest.approx(0.0, abs=0.02)
    blocky = (0.5 * smooth + 0.5 * _blocky(smooth)).astype(np.uint8)
    assert grid_score(blocky) > 0.15
    # Interlace-like alternation of rows must not read as blocking.
    combed = smooth.copy()
    combed[1::2] = np.clip(combed[1::2].astype(int) + 12, 0, 255)
    assert grid_score(combed) < 0.03
    # Bars with every edge on the 8-pixel grid (a test pattern): a bar edge is one
    # boundary among many on a line, not blocking.
    bars = np.repeat((np.arange(512) // 64 * 30 % 256).astype(np.uint8)[None, :], 288, 0)
    noisy = (bars + RNG.normal(0, 2, bars.shape)).clip(0, 255).astype(np.uint8)
    assert grid_score(noisy) <= 1 / 8 + 0.01  # 8 of 64 boundaries per line are bar edges
    assert grid_score(np.full((288, 512), 100, np.uint8)) is None  # flat: no evidence


def test_blockiness_raised_relative_to_the_stream_baseline() -> None:
    base = _texture(288, 1024)
    items = []
    for i in range(30 * FPS):
        img = base[:, (i * 3) % 512 : (i * 3) % 512 + 512].astype(np.uint8)
        if 20 * FPS <= i < 24 * FPS:
            img = _blocky(img)
        items.append(vframe(i / FPS, img, index=i))
    _, defects = run(["blockiness"], items)
    assert len(defects) == 1
    assert abs(defects[0]["start"] - 20.0) <= 0.1 and abs(defects[0]["end"] - 24.0) <= 0.1


def test_a_plain_field_and_camera_noise_are_not_test_patterns() -> None:
    """The pattern rule needs bands constant along one axis *and* some spread: a held
    blue screen (a receiver without input) is a fault to raise, not a line-up signal."""
    from service.detectors._pixels import is_test_pattern

    rng = np.random.default_rng(0)
    field = np.full((90, 160), 41, np.uint8)
    bars = np.repeat(np.linspace(16, 235, 8).astype(np.uint8), 20)[None, :].repeat(90, axis=0)
    ramp = np.linspace(16, 235, 160).astype(np.uint8)[None, :].repeat(90, axis=0)
    noisy = np.clip(bars + rng.normal(0, 3, bars.shape), 0, 255).astype(np.uint8)
    assert not is_test_pattern(field)
    assert is_test_pattern(bars) and is_test_pattern(ramp) and is_test_pattern(bars.T.copy())
    assert not is_test_pattern(noisy)  # a camera's grain on the same picture
    assert is_test_pattern(bars.astype(np.uint16) << 2, bit_depth=10)


def test_mean_abs_diff_of_whole_planes_in_chunks_is_exact() -> None:
    """Freeze measures near-threshold pictures on every pixel, a whole plane in chunks of
    rows: the same sum as one widened pass, 8-bit and 10-bit, rows left over included."""
    from service.detectors._pixels import CHUNK, mean_abs_diff

    rng = np.random.default_rng(7)
    for dtype, top in ((np.uint8, 256), (np.uint16, 1024)):
        for shape in ((1080, 1920), (721, 1283), (40, 4000)):
            a = rng.integers(0, top, shape, dtype=dtype)
            b = rng.integers(0, top, shape, dtype=dtype)
            assert a.size > CHUNK
            exact = float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())
            assert mean_abs_diff(a, b) == pytest.approx(exact, rel=1e-12)
            assert mean_abs_diff(a[:, 1:], b[:, 1:]) == pytest.approx(
                float(np.abs(a[:, 1:].astype(np.int64) - b[:, 1:].astype(np.int64)).mean()),
                rel=1e-12,
            )
