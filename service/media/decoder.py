"""Decode a source once and yield frames on one media timeline.

Video reaches detectors as a zero-copy numpy view of the luma plane; audio as float32
(channels, samples). Times are media seconds from the stream's first video frame (or
first audio frame for audio-only streams), continuous across timestamp jumps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from service.media import decode_threads
from service.media.errors import SourceError
from service.media.frames import (
    AudioFrame,
    AudioInfo,
    DecodeError,
    StreamInfo,
    VideoFrame,
    VideoInfo,
)
from service.media.guard import AddressPolicy, redact
from service.media.source import SourceSpec, open_source, parse_source, read_timeout_s

log = logging.getLogger(__name__)

MediaItem = VideoFrame | AudioFrame | DecodeError

# A timestamp step outside this window (seconds) is a discontinuity (encoder restart,
# splice, wrap), not a gap: the timeline continues where it was instead of jumping.
MAX_FORWARD_GAP = 5.0
MAX_BACKWARD_STEP = 0.5
# A demuxer read that blocked this share of the read timeout may have ended by the
# timeout: MPEG-TS hands out a stream's last PES only when the next one starts, or when
# reading fails -- so a source whose encoder died (its multiplexer still sending tables
# and padding) releases its last, usually truncated, pictures a timeout later.
TIMED_OUT_SHARE = 0.9
MAX_LEFTOVER_PACKETS = 16
# Video packets the decoder rejects before its first picture are a join (no parameter
# sets or key frame yet: a source reopened while its encoder was down), not damage --
# unless this many come and no picture (~10 s at 30 fps): video that never decodes.
MAX_ERRORS_BEFORE_VIDEO = 300
# Audio decoded before the first video frame waits for it (media time 0) up to this
# many frames (~10 s of AAC); a video track that never decodes must not stall audio.
MAX_AUDIO_BEFORE_VIDEO = 480
# Decoding reference pictures only, a picture stands for the non-reference pictures
# dropped before it (its distance from the one before, in frame periods), up to this many
# (x264 sends at most 16 B-frames in a row): a gap in the stream is not pictures.
MAX_DROPPED_RUN = 16


class _Splices:
    """The offset chosen at the latest discontinuity, shared by the audio and video
    tracks so that both jump together and stay in sync across a splice. Video decides
    (times are counted from video); audio that jumps first uses a provisional offset and
    adopts video's once video has jumped too."""

    __slots__ = ("by_video", "offset")

    def __init__(self) -> None:
        self.offset: float | None = None
        self.by_video = False


class _Track:
    """Maps one stream's raw timestamps onto the shared, continuous media timeline."""

    __slots__ = (
        "expected",
        "is_video",
        "last_raw",
        "offset",
        "provisional",
        "splices",
        "time_base",
    )

    def __init__(self, time_base: Any, splices: _Splices, is_video: bool) -> None:
        self.splices = splices
        self.is_video = is_video
        self.provisional = False
        self.time_base = float(time_base) if time_base else 0.0
        self.offset: float | None = None  # added to raw seconds
        self.last_raw: float | None = None
        self.expected: float | None = None  # media time the next frame should have

    def place(self, pts: int | None, duration: float, origin: float) -> float:
        if pts is None:
            t = self.expected if self.expected is not None else 0.0
            self.expected = t + duration
            return t
        raw = pts * self.time_base
        offset = self._offset_for(raw, origin)
        self.last_raw = raw
        t = round(raw + offset, 9)  # no float dust: the first frame is exactly 0
        self.expected = t + duration
        return t

    def _offset_for(self, raw: float, origin: float) -> float:
        splices = self.splices
        if self.offset is None or self.last_raw is None or self.expected is None:
            self.offset = -origin
            return self.offset
        step = raw - self.last_raw
        own = self.expected - raw
        if step > MAX_FORWARD_GAP or step < -MAX_BACKWARD_STEP:
            log.info("timestamp discontinuity of %+.3f s; timeline kept continuous", step)
            if self.is_video:
                self.offset = splices.offset = own
                splices.by_video = True
            elif splices.by_video and splices.offset is not None and abs(splices.offset - own) < 1:
                self.offset = splices.offset  # video already jumped: follow it
            else:
                self.offset = splices.offset = own
                splices.by_video = False
                self.provisional = True
        elif self.provisional and splices.by_video and splices.offset is not None:
            if abs(splices.offset - self.offset) < 1.0:
                self.offset = splices.offset
            self.provisional = False
        return self.offset


def _plane_view(plane: Any, dtype: Any, item: int) -> np.ndarray:
    buf = np.frombuffer(plane, dtype=dtype)
    return buf.reshape(plane.height, plane.line_size // item)[:, : plane.width]


def _luma_view(
    frame: Any,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, int, int, int]:
    """Zero-copy views of the luma plane (and the chroma planes, for planar YUV), plus
    black/white levels and bit depth."""
    fmt = frame.format
    comp = fmt.components[0]
    bits = int(comp.bits)
    if fmt.is_rgb or fmt.has_palette or comp.plane != 0 or fmt.name.startswith(("uyvy", "yuyv")):
        # Rare packed/RGB formats: convert (slow path, not taken for broadcast codecs).
        frame = frame.reformat(format="gray")
        bits = 8
        full = True
    else:
        full = fmt.name.startswith("yuvj") or frame.color_range == 2 or fmt.name.startswith("gray")
    dtype = np.uint8 if bits <= 8 else np.uint16
    item = 1 if bits <= 8 else 2
    luma = _plane_view(frame.planes[0], dtype, item)
    chroma = None
    comps = frame.format.components
    if len(comps) >= 3 and comps[1].plane == 1 and comps[2].plane == 2:
        chroma = (
            _plane_view(frame.planes[1], dtype, item),
            _plane_view(frame.planes[2], dtype, item),
        )
    scale = 1 << (bits - 8)
    if full:
        black, white = 0, (1 << bits) - 1
    else:
        black, white = 16 * scale, 235 * scale
    return luma, chroma, black, white, bits


class MediaReader:
    """Open a source and iterate its decoded frames (video and audio interleaved)."""

    def __init__(
        self,
        source: str | SourceSpec,
        *,
        timeout_s: float = 5.0,
        threads: str | None = "AUTO",
        reference_only: bool = False,
        want_video: bool = True,
        want_audio: bool = True,
        policy: AddressPolicy | None = None,
    ) -> None:
        self.ended_by: str | None = None  # why reading stopped early, if it did
        # Wall clock of the newest packet read: the signal itself. (With frame threading
        # the decoder holds the last frames until the read times out and it is flushed,
        # so decoded frames are not when the source went quiet.)
        self.last_packet_wall: float | None = None
        self.spec: SourceSpec
        # A SourceSpec from an earlier reader carries what that open found out (HLS or not).
        spec = parse_source(source) if isinstance(source, str) else source
        self.spec, self.container = open_source(spec, timeout_s, policy)
        self.timeout_s = read_timeout_s(self.spec, timeout_s)  # what a read waits, at most
        # None: as the process-wide policy says (service.media.decode_threads).
        self._counted = threads is None
        try:
            self._setup(threads or decode_threads.acquire(), want_video, want_audio)
            self._reference_only = reference_only and self.video_stream is not None
            self._every_frame = True  # as opened; dropping them if asked to
            self.decode_every_frame(False)
        except Exception:
            self.close()
            raise

    def _setup(self, threads: str, want_video: bool, want_audio: bool) -> None:
        c = self.container
        self.video_stream = c.streams.video[0] if c.streams.video else None
        self.audio_stream = c.streams.audio[0] if c.streams.audio else None
        if self.video_stream is None and self.audio_stream is None:
            raise SourceError(f"{redact(self.spec.url)}: no audio or video stream found")
        if self.video_stream is not None:
            self.video_stream.thread_type = threads
            if threads == "NONE":
                self.video_stream.codec_context.thread_count = 1
            # H.264 only flags concealed (damaged) frames when error resilience is on.
            self.video_stream.codec_context.options = {"enable_er": "1"}
        origin_stream = self.video_stream or self.audio_stream
        assert origin_stream is not None
        # Media time 0 is the first *decoded* video frame. The probed start time is the
        # first packet's, which on a live join mid-GOP is a picture nobody can decode:
        # counting from it shifted every time by up to a GOP.
        self.origin: float | None = (
            None
            if self.video_stream is not None and want_video
            else self._stream_start(origin_stream)
        )
        self.live = self.spec.is_live_protocol or not c.duration
        vinfo = ainfo = None
        if self.video_stream is not None:
            cc = self.video_stream.codec_context
            rate = self.video_stream.average_rate or self.video_stream.guessed_rate
            self.fps = float(rate) if rate else 25.0
            vinfo = VideoInfo(cc.name, cc.width, cc.height, round(self.fps, 3))
        else:
            self.fps = 25.0
        if self.audio_stream is not None:
            acc = self.audio_stream.codec_context
            ainfo = AudioInfo(acc.name, acc.sample_rate, acc.channels)
        self.info = StreamInfo(vinfo, ainfo, self.live)
        self._decode: list[Any] = []
        if self.video_stream is not None and want_video:
            self._decode.append(self.video_stream)
        if self.audio_stream is not None and want_audio:
            self._decode.append(self.audio_stream)
        splices = _Splices()
        vs, as_ = self.video_stream, self.audio_stream
        self._vtrack = _Track(vs.time_base if vs else None, splices, is_video=True)
        self._atrack = _Track(as_.time_base if as_ else None, splices, is_video=vs is None)
        self.video_frames = 0
        self._last_video_t: float | None = None
        self.decode_errors = 0
        self.corrupt_packets = 0

    @property
    def reference_only(self) -> bool:
        """Opened to drop non-reference pictures (unless asked for every one)."""
        return self._reference_only

    def decode_every_frame(self, every: bool) -> None:
        """On a reader opened ``reference_only``: decode every picture from here on, or
        reference pictures only again (FFmpeg then drops the pictures nothing predicts
        from before decoding them). Cheap to call on every picture."""
        if every != self._every_frame and self._reference_only:
            self._every_frame = every
            assert self.video_stream is not None
            self.video_stream.codec_context.skip_frame = "DEFAULT" if every else "NONREF"

    def _stream_start(self, stream: Any) -> float:
        if stream.start_time is not None and stream.time_base:
            return float(stream.start_time * stream.time_base)
        if self.container.start_time is not None:
            return float(self.container.start_time) / 1_000_000
        return 0.0

    def close(self) -> None:
        self.container.close()
        if self._counted:
            self._counted = False
            decode_threads.release()

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _packet_time(self, packet: Any, track: _Track) -> float:
        if self.origin is None:
            return 0.0
        if packet.pts is not None and packet.stream.time_base:
            offset = track.offset if track.offset is not None else -self.origin
            return float(packet.pts * packet.stream.time_base) + offset
        return track.expected if track.expected is not None else 0.0

    def _packets(self) -> Iterator[Any]:
        """Demuxed packets until the end; a read failure ends the input, noted in
        ``self.ended_by`` (a live source that stops sending times out here)."""
        demux = self.container.demux(self._decode)
        # After a read that blocked for about the timeout: its packet and those right
        # behind it (the pending PES, a few per stream) are held. If the timeout
        # follows, they were the demuxer's leftovers from before the source went quiet:
        # dropped, so neither counted as signal (no_signal dated from them) nor decoded
        # as damage (the last picture is usually cut short). More than that: the source
        # is sending again (a pause just short of the timeout).
        held: list[Any] = []
        while True:
            asked = time.monotonic()
            try:
                packet = next(demux)
            except StopIteration:
                yield from held
                return
            except av.error.ExitError:
                self.ended_by = f"no data for {self.timeout_s:g} s"
                return
            except (av.error.FFmpegError, OSError) as exc:
                self.ended_by = _short(exc)
                return
            if held or time.monotonic() - asked >= TIMED_OUT_SHARE * self.timeout_s:
                held.append(packet)
                if len(held) <= MAX_LEFTOVER_PACKETS:
                    continue
                self.last_packet_wall = time.time()
                yield from held
                held = []
                continue
            self.last_packet_wall = time.time()
            yield packet

    def frames(self) -> Iterator[MediaItem]:
        """Yield frames until the source ends; decode errors are yielded, not raised."""
        vs, as_ = self.video_stream, self.audio_stream
        vdur = 1.0 / self.fps
        early_audio: list[Any] = []  # decoded before media time 0 was known
        joining = 0  # video packets rejected before the first picture
        for packet in self._packets():
            stream = packet.stream
            if packet.is_corrupt:
                # A TS continuity error: lost data shows up as concealed frames, which
                # the decoder flags; a clean splice also trips it, so only count it.
                self.corrupt_packets += 1
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self.decode_errors += 1
                track = self._vtrack if stream is vs else self._atrack
                kind = "video" if stream is vs else "audio"
                if kind == "video" and self.video_frames == 0:
                    joining += 1
                    if joining < MAX_ERRORS_BEFORE_VIDEO:
                        continue  # waiting for parameter sets and a key frame
                yield DecodeError(self._packet_time(packet, track), kind, _short(exc))
                continue
            for frame in decoded:
                if stream is vs:
                    if self.origin is None:
                        self.origin = _seconds(frame.pts, vs.time_base)
                        self._adopt_size(frame)
                        yield from self._audio_items(early_audio)
                        early_audio.clear()
                    yield self._video_item(frame, vdur)
                elif stream is as_:
                    if self.origin is None:
                        early_audio.append(frame)
                        if len(early_audio) >= MAX_AUDIO_BEFORE_VIDEO:
                            self.origin = _seconds(early_audio[0].pts, as_.time_base)
                            yield from self._audio_items(early_audio)
                            early_audio.clear()
                        continue
                    yield from self._audio_items([frame])

    def _video_item(self, frame: Any, vdur: float) -> VideoFrame:
        assert self.origin is not None
        luma, chroma, black, white, bits = _luma_view(frame)
        t = self._vtrack.place(frame.pts, vdur, self.origin)
        pictures = 1
        if self._reference_only and self._last_video_t is not None:
            # Decoding reference pictures only: this one stands for those dropped before it.
            gap = round((t - self._last_video_t) / vdur)
            pictures = min(max(gap, 1), MAX_DROPPED_RUN + 1)
        self._last_video_t = t
        item = VideoFrame(
            t=t,
            luma=luma,
            chroma=chroma,
            black_level=black,
            white_level=white,
            bit_depth=bits,
            corrupt=bool(frame.is_corrupt),
            key=bool(frame.key_frame),
            index=self.video_frames,
            pictures=pictures,
        )
        self.video_frames += 1
        return item

    def _audio_items(self, frames: list[Any]) -> Iterator[AudioFrame]:
        """Audio frames on the timeline; those wholly before media time 0 are skipped."""
        assert self.origin is not None
        for frame in frames:
            samples = _audio_array(frame)
            rate = frame.sample_rate or 48000
            t = self._atrack.place(frame.pts, samples.shape[1] / rate, self.origin)
            if t + samples.shape[1] / rate > 0:
                yield AudioFrame(
                    t=t, samples=samples, sample_rate=rate, layout=_names(frame.layout)
                )

    def _adopt_size(self, frame: Any) -> None:
        """The probe may end before it saw a keyframe's parameters (a live join mid-GOP):
        take the picture size from the first decoded frame then."""
        v = self.info.video
        if v is not None and (v.width, v.height) != (frame.width, frame.height):
            v.width, v.height = int(frame.width), int(frame.height)


def _seconds(pts: int | None, time_base: Any) -> float:
    return float(pts * time_base) if pts is not None and time_base else 0.0


_NAMES: dict[str, tuple[str, ...] | None] = {}  # layout name -> its channels' names
# FFmpeg's names of positioned channels (an unspecified order names none of these).
# fmt: off
_STANDARD = frozenset((
    "FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC", "BC", "SL", "SR", "TC", "TFL", "TFC",
    "TFR", "TBL", "TBC", "TBR", "DL", "DR", "WL", "WR", "SDL", "SDR", "LFE2", "TSL", "TSR",
    "BFC", "BFL", "BFR",
))
# fmt: on


def _names(layout: Any) -> tuple[str, ...] | None:
    """The layout's channel names in order (5.1 is FL FR FC LFE BL BR), worked out once
    per layout rather than per audio frame; None for an unspecified order."""
    name = layout.name
    if name not in _NAMES:
        names = tuple(channel.name for channel in layout.channels)
        _NAMES[name] = names if all(n in _STANDARD for n in names) else None
    return _NAMES[name]


def _audio_array(frame: Any) -> np.ndarray:
    """float32 (channels, samples) from any sample format, without copies for fltp."""
    name = frame.format.name
    arr = frame.to_ndarray()
    if not frame.format.is_planar:
        arr = arr.reshape(-1, len(frame.layout.channels)).T
    if name.startswith("flt"):
        return arr.astype(np.float32, copy=False)
    if name.startswith("dbl"):
        return arr.astype(np.float32)
    if name.startswith("s16"):
        return arr.astype(np.float32) / 32768.0
    if name.startswith("s32"):
        return arr.astype(np.float32) / 2147483648.0
    if name.startswith("u8"):
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32)


def _short(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc).split(";")[0]
