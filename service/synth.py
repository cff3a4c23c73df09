"""`avmon synth`: write an MPEG-TS test clip with known defects and a ground-truth sidecar.

The clip is H.264 + AAC stereo 48 kHz. Pictures move every frame (a panning textured
scene with a moving object), audio is a tone, noise or speech-like bursts, and the defects
listed in ``--inject`` are written in at exact times. The sidecar ``OUT.json`` lists them
in the same shape as ``avmon check --json`` defects, so tests compare one with the other.

Injection syntax: ``TYPE@START-END[:PARAM]``, comma separated, e.g.
``black@8-12,freeze@18-23,channel_silence@30-34:1,loudness@40-55:-20,av_sync@60-70:+200``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from service.detectors.bs1770 import LoudnessMeter

SAMPLE_RATE = 48_000
CONTENTS = ("scene", "noise", "lowlight", "lineup")
AUDIOS = ("tone", "noise", "speech", "lineup")

# Injectable defects and their parameter: (meaning, default).
INJECTABLE: dict[str, tuple[str | None, float | None]] = {
    "black": (None, None),
    "freeze": (None, None),
    "blockiness": (None, None),
    "block_corruption": (None, None),
    "silence": (None, None),
    "channel_silence": ("channel", 1),
    "loudness": ("gain_db", -20.0),
    "clipping": ("gain_db", 30.0),
    "av_sync": ("offset_ms", 200.0),
}
VIDEO_TYPES = frozenset({"black", "freeze", "blockiness", "block_corruption"})

TONE_AMPLITUDE = 10 ** (-23 / 20)  # a stereo 1 kHz sine at this peak reads -23 LUFS
LINEUP_BEEP_S = 0.05
LINEUP_AMPLITUDE = 0.4


class SynthError(ValueError):
    """Bad synth arguments (message names the problem)."""


@dataclass(frozen=True, slots=True)
class Injection:
    type: str
    start: float
    end: float
    param: float | None = None

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end

    def truth(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        name, _ = INJECTABLE[self.type]
        if name is not None and self.param is not None:
            details[name] = int(self.param) if name == "channel" else self.param
        return {"type": self.type, "start": self.start, "end": self.end, "details": details}


def parse_injections(text: str | None) -> list[Injection]:
    out: list[Injection] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        kind, sep, rest = item.partition("@")
        if not sep or kind not in INJECTABLE:
            raise SynthError(
                f"--inject {item!r}: expected TYPE@START-END[:PARAM] with TYPE one of "
                f"{', '.join(INJECTABLE)}"
            )
        span, _, param_text = rest.partition(":")
        try:
            a, b = (float(x) for x in span.split("-", 1))
            param = float(param_text.removesuffix("ms")) if param_text else INJECTABLE[kind][1]
        except ValueError:
            raise SynthError(f"--inject {item!r}: START-END and PARAM must be numbers") from None
        if not 0 <= a < b:
            raise SynthError(f"--inject {item!r}: need 0 <= START < END")
        out.append(Injection(kind, a, b, param))
    return out


@dataclass
class SynthSpec:
    out: Path
    duration: float = 30.0
    width: int = 1280
    height: int = 720
    fps: int = 30
    content: str = "scene"
    audio: str = "tone"
    injections: list[Injection] = field(default_factory=list)
    seed: int = 1
    gop_s: float = 2.0
    crf: int = 20

    def validate(self) -> None:
        if self.duration <= 0:
            raise SynthError("--duration must be > 0")
        if self.width % 2 or self.height % 4 or not 64 <= self.width <= 3840:
            raise SynthError("--size: width must be even (64-3840) and height a multiple of 4")
        if self.content not in CONTENTS:
            raise SynthError(f"--content must be one of {', '.join(CONTENTS)}")
        if self.audio not in AUDIOS:
            raise SynthError(f"--audio must be one of {', '.join(AUDIOS)}")
        for inj in self.injections:
            if inj.end > self.duration:
                raise SynthError(f"--inject {inj.type}: ends after --duration")
            if inj.type == "channel_silence" and inj.param not in (0, 1):
                raise SynthError("--inject channel_silence: channel must be 0 or 1")
        if any(i.type == "av_sync" for i in self.injections):
            # A/V offset is measured on the line-up signal (flash + beep each second).
            self.content = self.audio = "lineup"


# --------------------------------------------------------------------------- pictures


class Pictures:
    """Moving pictures as planar YUV 4:2:0 (limited range)."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        w, h = spec.width, spec.height
        # A textured canvas twice as wide as the picture; frames pan across it.
        texture = np.zeros((h, 2 * w), np.float32)
        for scale, weight in ((max(w // 8, 4), 1.0), (max(w // 40, 2), 0.6), (2, 0.25)):
            noise = self.rng.standard_normal((h // scale + 2, 2 * w // scale + 2))
            up = ndimage.zoom(noise, scale, order=3)[:h, : 2 * w]  # smooth: no kinks on a grid
            texture[: up.shape[0], : up.shape[1]] += weight * up.astype(np.float32)
        texture = (texture - texture.min()) / (np.ptp(texture) + 1e-9)
        # A few hard-edged shapes, like graphics and objects in real footage.
        for _ in range(12):
            x0, y0 = self.rng.integers(0, 2 * w - w // 6), self.rng.integers(0, h - h // 6)
            texture[y0 : y0 + h // 6, x0 : x0 + w // 6] = self.rng.random()
        texture = np.concatenate([texture, texture[:, :w]], axis=1)  # seamless wrap
        self.canvas = texture
        yy, xx = np.mgrid[0:h, 0:w]
        self.chroma_u = (128 + 40 * np.sin(xx[::2, ::2] / 97.0)).astype(np.uint8)
        self.chroma_v = (128 + 40 * np.cos(yy[::2, ::2] / 61.0)).astype(np.uint8)
        self.noise_bank = (
            [self.rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(7)]
            if spec.content == "noise"
            else []
        )

    def luma(self, i: int) -> npt.NDArray[np.float32]:
        spec = self.spec
        w, h = spec.width, spec.height
        x = (i * (2 * max(w // 320, 1) + 1)) % (2 * w)  # odd steps: edges off any grid
        frame = self.canvas[:, x : x + w].copy()
        # A moving disc gives local motion on top of the pan.
        cx = int((0.5 + 0.35 * math.sin(i / 23.0)) * w)
        cy = int((0.5 + 0.3 * math.cos(i / 17.0)) * h)
        r = max(h // 10, 4)
        frame[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = 0.95
        return frame

    def frame(self, i: int) -> npt.NDArray[np.uint8]:
        spec = self.spec
        w, h = spec.width, spec.height
        u, v = self.chroma_u, self.chroma_v
        if spec.content == "noise":
            y = self.noise_bank[i % len(self.noise_bank)]
            y = np.roll(y, (i * 7) % h, axis=0) if i >= len(self.noise_bank) else y
            y = (16 + y.astype(np.uint16) * 219 // 255).astype(np.uint8)
        elif spec.content == "lowlight":
            base = self.luma(i)
            grain = self.rng.normal(0.0, 1.5, (h, w)).astype(np.float32)
            y = np.clip(18 + 40 * base + grain, 16, 235).astype(np.uint8)
            u = np.full_like(u, 128)
            v = np.full_like(v, 128)
        elif spec.content == "lineup":
            base = self.luma(i)
            y = (40 + 60 * base).astype(np.uint8)
            if _is_flash_frame(i, spec.fps):
                y = np.full((h, w), 235, np.uint8)
        else:
            y = (16 + 219 * self.luma(i)).astype(np.uint8)
        out = np.empty((h * 3 // 2, w), np.uint8)
        out[:h] = y
        # 4:2:0 chroma planes stacked below luma, as PyAV's yuv420p ndarray layout wants.
        out[h : h + h // 4] = u.reshape(h // 4, w)
        out[h + h // 4 :] = v.reshape(h // 4, w)
        return out


def _is_flash_frame(i: int, fps: int) -> bool:
    """The line-up flash: one frame at each whole second from 1 s."""
    return i >= fps and i % fps == 0


def mpeg2_blocks(yuv: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Real block artefacts: one picture through MPEG-2 intra at the coarsest quantizer.

    Fresh codec contexts per picture: the decoder holds a picture back until the next
    one starts, so each round trip is flushed through on its own."""
    height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
    enc = av.CodecContext.create("mpeg2video", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, 25)  # any rate: the picture is coded on its own
    enc.framerate = Fraction(25)
    enc.options = {"qmin": "31", "qmax": "31", "g": "1", "bf": "0"}
    enc.open()
    dec = av.CodecContext.create("mpeg2video", "r")
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.pts = 0
    out: list[Any] = []
    for pkt in [*enc.encode(frame), *enc.encode(None)]:
        out += dec.decode(pkt)
    out += dec.decode(None)
    arr: npt.NDArray[np.uint8] = out[-1].to_ndarray(format="yuv420p")
    return arr


# ------------------------------------------------------------------------------ sound


class Sound:
    """Stereo float32 audio at 48 kHz, generated in blocks."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        n = round(spec.duration * SAMPLE_RATE)
        rng = np.random.default_rng(spec.seed + 1)
        t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
        if spec.audio == "tone":
            mono = TONE_AMPLITUDE * np.sin(2 * np.pi * 1000.0 * t)
            left = right = mono
        elif spec.audio == "noise":
            b, a = signal.butter(2, [200, 6000], btype="band", fs=SAMPLE_RATE)
            left = signal.lfilter(b, a, rng.standard_normal(n)) * 0.08
            right = signal.lfilter(b, a, rng.standard_normal(n)) * 0.08
        elif spec.audio == "speech":
            left = right = _speech_like(n, rng)
        else:  # lineup: a 50 ms 1 kHz beep at each whole second, offset where injected
            left = np.zeros(n)
            for k in range(1, int(spec.duration) + 1):
                shift = sum(
                    (i.param or 0.0) / 1000.0
                    for i in spec.injections
                    if i.type == "av_sync" and i.covers(float(k))
                )
                a = round((k + shift) * SAMPLE_RATE)
                b = min(a + int(LINEUP_BEEP_S * SAMPLE_RATE), n)
                if 0 <= a < n:
                    left[a:b] = LINEUP_AMPLITUDE * np.sin(2 * np.pi * 1000.0 * t[a:b])
            right = left
        self.samples = np.stack([left, right]).astype(np.float32)
        self._inject()

    def _inject(self) -> None:
        x = self.samples
        for inj in self.spec.injections:
            a, b = round(inj.start * SAMPLE_RATE), round(inj.end * SAMPLE_RATE)
            if inj.type == "silence":
                x[:, a:b] = 0.0
            elif inj.type == "channel_silence":
                x[int(inj.param or 0), a:b] = 0.0
            elif inj.type == "loudness":
                x[:, a:b] *= 10 ** ((inj.param or 0.0) / 20)
            elif inj.type == "clipping":
                # Hard clipping at full scale, as an overdriven PCM stage does.
                x[:, a:b] = np.clip(x[:, a:b] * 10 ** ((inj.param or 0.0) / 20), -1.0, 1.0)

    def blocks(self, size: int = 1024) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
        for start in range(0, self.samples.shape[1], size):
            yield start, self.samples[:, start : start + size]


def _speech_like(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Syllable-like bursts of band-limited noise and voiced buzz, with short pauses."""
    b, a = signal.butter(2, [250, 3500], btype="band", fs=SAMPLE_RATE)
    carrier = signal.lfilter(b, a, rng.standard_normal(n))
    t = np.arange(n) / SAMPLE_RATE
    pitch = 110 + 30 * np.sin(2 * np.pi * 0.3 * t)
    voiced = np.sign(np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)) * 0.3
    voiced = signal.lfilter(b, a, voiced)
    env = np.zeros(n)
    pos = 0
    while pos < n:
        for _ in range(int(rng.integers(2, 6))):  # a word: a few syllables
            length = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
            seg = np.hanning(length) * rng.uniform(0.6, 1.0)
            env[pos : pos + length] = seg[: max(0, min(length, n - pos))]
            pos += length + int(rng.uniform(0.0, 0.05) * SAMPLE_RATE)
        pos += int(rng.uniform(0.15, 0.9) * SAMPLE_RATE)  # a pause between words
    out = env * (0.6 * carrier / (np.std(carrier) + 1e-9) + 0.4 * voiced / (np.std(voiced) + 1e-9))
    # Programme level: -23 LUFS integrated, like speech mixed to EBU R128.
    meter = LoudnessMeter(SAMPLE_RATE, 2)
    meter.push(np.stack([out, out]))
    return out * 10 ** ((-23.0 - meter.integrated()) / 20)


# ------------------------------------------------------------------------------ write


def synthesize(spec: SynthSpec) -> dict[str, Any]:
    """Write the clip and its sidecar; return the ground truth written."""
    spec.validate()
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    pictures = Pictures(spec)
    sound = Sound(spec)
    fps = spec.fps
    frames = round(spec.duration * fps)
    injected = spec.injections
    freeze_spans = [i for i in injected if i.type == "freeze"]
    corrupt_spans = [i for i in injected if i.type == "block_corruption"]
    # Keyframes every gop_s, but none inside a freeze (an I-frame refresh of a frozen
    # picture changes it measurably, which FFmpeg's freezedetect sees as motion), and
    # one exactly where each corrupted span ends, so the damage ends there.
    keyint = max(int(10 * fps), int(spec.gop_s * fps) * 2)

    with av.open(str(spec.out), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        vs.options = {
            "preset": "superfast",
            "crf": str(spec.crf),
            "x264-params": f"keyint={keyint}:min-keyint=1:scenecut=0:bframes=0",
        }
        as_ = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        as_.bit_rate = 160_000
        audio_blocks = sound.blocks()
        next_audio: tuple[int, npt.NDArray[np.float32]] | None = next(audio_blocks, None)
        frozen: npt.NDArray[np.uint8] | None = None
        gop = max(int(spec.gop_s * fps), 1)
        for i in range(frames):
            t = i / fps
            freeze = next((f for f in freeze_spans if f.covers(t)), None)
            if freeze is not None and frozen is not None:
                yuv = frozen
            else:
                yuv = pictures.frame(i)
                if any(x.type == "black" and x.covers(t) for x in injected):
                    yuv = yuv.copy()
                    yuv[: spec.height] = 16
                    yuv[spec.height :] = 128
                if any(x.type == "blockiness" and x.covers(t) for x in injected):
                    yuv = mpeg2_blocks(yuv)
                frozen = yuv if freeze is not None else None
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            in_freeze = freeze is not None and i > round(freeze.start * fps)
            at_corrupt_end = any(i == round(c.end * fps) for c in corrupt_spans)
            if at_corrupt_end or (i % gop == 0 and not in_freeze):
                frame.pict_type = av.video.frame.PictureType.I
            for pkt in vs.encode(frame):
                out.mux(_maybe_corrupt(pkt, corrupt_spans, fps))
            # Interleave audio up to this video time.
            while next_audio is not None and next_audio[0] / SAMPLE_RATE <= t + 1.0 / fps:
                start, block = next_audio
                for pkt in as_.encode(_audio_frame(start, block)):
                    out.mux(pkt)
                next_audio = next(audio_blocks, None)
        for pkt in vs.encode(None):
            out.mux(_maybe_corrupt(pkt, corrupt_spans, fps))
        while next_audio is not None:
            start, block = next_audio
            for pkt in as_.encode(_audio_frame(start, block)):
                out.mux(pkt)
            next_audio = next(audio_blocks, None)
        for pkt in as_.encode(None):
            out.mux(pkt)

    truth = {
        "duration": spec.duration,
        "video": {"width": spec.width, "height": spec.height, "fps": fps},
        "audio": {"sample_rate": SAMPLE_RATE, "channels": 2},
        "content": spec.content,
        "audio_content": spec.audio,
        "defects": [i.truth() for i in sorted(injected, key=lambda i: i.start)],
    }
    Path(str(spec.out) + ".json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def _audio_frame(start: int, block: npt.NDArray[np.float32]) -> Any:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = start
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


def _maybe_corrupt(pkt: Any, spans: list[Injection], fps: int) -> Any:
    """Flip bytes in the payload of video packets inside a block_corruption span."""
    if pkt.pts is None or not spans:
        return pkt
    t = float(pkt.pts * pkt.time_base)
    if not any(s.start <= t < s.end - 0.5 / fps for s in spans):
        return pkt
    data = bytearray(bytes(pkt))
    rng = np.random.default_rng(int(pkt.pts))
    # Leave NAL headers alone (first 64 bytes) so the damage is in slice data.
    if len(data) > 128:
        for k in rng.integers(64, len(data), max(8, len(data) // 200)):
            data[int(k)] ^= 0xFF
    bad = av.Packet(bytes(data))
    bad.pts, bad.dts, bad.time_base = pkt.pts, pkt.dts, pkt.time_base
    bad.stream = pkt.stream
    bad.is_keyframe = pkt.is_keyframe
    return bad
