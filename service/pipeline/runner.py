"""One live stream: decode once, analyse continuously, survive the source dying.

Two threads per stream. The *reader* opens the source (reconnecting with capped
exponential backoff), paces file sources, and puts frames on a bounded queue; when
analysis falls behind a live source the oldest video frames are dropped and counted,
so memory never grows. The *analyser* feeds the detectors, publishes defect events,
keeps a thumbnail, and runs the stall watchdog that raises ``no_signal``.

Media time is continuous for the life of the runner: after a reconnect or a file loop,
the new connection's timeline is shifted to follow the old one (plus the outage).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.detectors import registry
from service.media import decode_frames
from service.media.decoder import MediaItem, MediaReader
from service.media.errors import SourceError
from service.media.frames import AudioFrame, DecodeError, Gap, VideoFrame
from service.media.guard import AddressPolicy, SourceRefusedError, redact_text
from service.media.source import SourceSpec
from service.media.udp_drops import kernel_drops, udp_port
from service.observability import metrics
from service.observability.sampling import TIME_ONE_IN
from service.pipeline.analyzer import Analyzer
from service.pipeline.lifecycle import Defect, DefectEvent
from service.pipeline.thumbnail import jpeg_thumbnail

log = logging.getLogger(__name__)

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0
# While no_signal is open, a source that refuses is tried again every second at most,
# so the alarm clears within about a second of the source coming back.
NO_SIGNAL_RETRY_S = 1.0
# Video frames waiting for analysis: 1 s at 30 fps, the lag a live stream may have
# (12, 0.4 s, dropped frames on a core still 10 % idle: a moment's contention, not
# overload), bounded in bytes too (each holds its decoded picture: 1080p ~0.5 s, 4K ~4).
QUEUE_VIDEO_FRAMES = 30
QUEUE_VIDEO_BYTES = 48 << 20
# Items waiting, pictures and audio: a bound even if analysis stalls (~8.5 s of AAC frames
# alone). Counted in items, not hand-overs: an audio-only batch holds up to HAND_OVER_ITEMS.
QUEUE_MAX_ITEMS = 400
# The dashboard refreshes every 2 s; a JPEG costs ~0.9 ms at 1080p (the picture is read
# cold), as much as some detectors spend in that time.
THUMBNAIL_EVERY_S = 2.0
DETECTOR_TIME_EVERY_S = 1.0
LAG_METRIC_EVERY_S = 0.25
# A paced file releases what is due within this much at once: a wake-up of the reader
# (and of the analyser behind it) per ~40 ms of media, not per audio frame (21 ms) and
# picture. 12 paced 720p streams on one core: 285 -> 218 thread switches a stream per
# second, 7.48 -> 7.28 % of the core a stream (3 runs each). Items carry when they were
# due, not when released, so nothing is dated early.
PACE_SLACK_S = 0.04
# The reader hands the analyser what it read in batches, not item by item: each hand-over
# can wake the analyser thread, and a wake-up costs more than analysing the items (a
# thread switch on a busy core refills the caches). A batch goes at each picture (audio
# rides with the next one, <= a frame period late) -- not later: a picture held back
# keeps the decoder from reusing its buffer, and its pool grows (+2.5 MB a 720p stream
# when paced files handed over only before sleeping) -- or at this many items (audio only).
HAND_OVER_ITEMS = 8
READINGS_EVERY_S = 1.0  # loudness, true peak...: metrics and status per stream
KERNEL_DROPS_EVERY_S = 1.0
BURST_GAP_S = 0.5  # HLS: arrivals further apart than this start a new segment's burst
COVER_MAX_S = 12.0  # HLS: the most media one burst may vouch for (a 10 s target + slack)


@functools.lru_cache(maxsize=256)
def _groups_of(detectors: tuple[str, ...]) -> tuple[str, ...]:
    """The detectors' groups, in order (cached: the watchdog asks on every item)."""
    seen: list[str] = []
    for name in detectors:
        g = registry.DETECTORS[name].group
        if g not in seen:
            seen.append(g)
    return tuple(seen)


@dataclass
class StreamSpec:
    id: str
    name: str
    url: str
    detectors: list[str]
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    pace: str = "live"  # files only: "live" (real time) or "asap"
    loop: bool = False
    # The unit ``no_signal`` belongs to: the stream's first group (cluster mode runs a
    # stream's groups on several members; only this group's owner watches the signal).
    signal_group: str | None = None

    @property
    def watch_group(self) -> str | None:
        """The group whose ``no_signal`` this runner raises, None if another member's."""
        groups = self.groups
        if self.signal_group is None:
            return groups[0] if groups else "stream"
        return self.signal_group if self.signal_group in groups else None

    @property
    def groups(self) -> list[str]:
        return list(_groups_of(tuple(self.detectors)))


@dataclass
class RunnerStats:
    frames: int = 0
    dropped: int = 0
    udp_drops: int = 0  # datagrams the kernel dropped before FFmpeg read them
    decode_errors: int = 0
    reconnects: int = 0
    lag_s: float = 0.0


class StreamRunner:
    def __init__(
        self,
        spec: StreamSpec,
        on_event: Callable[[StreamRunner, DefectEvent, bytes | None], None],
        *,
        no_signal_s: float = 5.0,
        timeout_s: float = 3.0,
        on_frame_stats: Callable[[StreamRunner, str, float], None] | None = None,
        policy: AddressPolicy | None = None,
        inherited: list[Defect] | None = None,
        handed: list[tuple[str, str, float]] | None = None,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.on_event = on_event
        self.on_stats = on_frame_stats or (lambda runner, kind, value: None)
        self.no_signal_s = no_signal_s
        self.timeout_s = timeout_s
        self.state = "pending"
        self.started_wall = time.time()
        self.stats = RunnerStats()
        self.last_frame_wall: float | None = None  # wall clock of the newest frame analysed
        self.last_packet_wall: float | None = None  # ... of the newest packet (the signal)
        self.media_since_wall: float | None = None  # ... of the first media analysed
        self._reader: MediaReader | None = None  # the open source, while one is
        self.readings: dict[str, float] = {}  # the detectors' measurements, by name
        self._readings_at = 0.0
        self._lag_at = 0.0
        self._no_signal_since = 0.0  # wall clock when the open no_signal was raised
        self.thumbnail: bytes | None = None
        self.open_defects: dict[tuple[str, str], Defect] = {}
        self._closed_for_good = False  # close_open ran: emit nothing more
        self.last_error: str | None = None
        # Bounded by the counts below (pictures, bytes, items), so the C queue serves:
        # queue.Queue's put and get run ~20 lines of Python and a Condition each.
        self._queue: queue.SimpleQueue[list[MediaItem | Gap] | None] = queue.SimpleQueue()
        # HLS: the wall clock until which the media received lasts (see ``_cover``), and
        # the current burst (its first arrival, its first media time, its last arrival).
        self.covered_until = 0.0
        self._burst: tuple[float, float, float] | None = None
        self._video_queued = 0
        self._video_bytes = 0
        self._queue_lock = threading.Lock()
        # Other items (audio, decode errors) queued and taken: each counter has one writer
        # (the reader, the analyser), so no lock; their difference is what waits.
        self._others_in = 0
        self._others_out = 0
        self._stop = threading.Event()
        self._fps_window: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic, pictures)
        self._last_thumb = 0.0
        self._last_detector_time = 0.0
        self._latest_video: VideoFrame | None = None
        self._threads: list[threading.Thread] = []
        # Media timeline bookkeeping, shared by the two threads.
        self._media_end = 0.0  # end of the newest media fed to the analyser
        self._wall_of_media0: float | None = None  # wall clock of media time 0
        self._real_time = False  # the input comes at the pace of its clock (live, paced)
        self.first_media0: float | None = None  # the mapping its first frame gave (logs)
        self._no_signal: Defect | None = None
        self._exported: dict[str, float] = {}  # detector CPU seconds already in metrics
        self._exported_errors: dict[str, int] = {}  # detector errors already in metrics
        self.analyzer = Analyzer(registry.build(spec.detectors, spec.thresholds))
        self._unresolvable: list[Defect] = []  # inherited, but nothing here can end them
        for defect in inherited or []:
            self._inherit(defect)
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # Runs the previous runner saw begin (wall clock): placed on the first media.
        self._handed = list(handed or [])
        # A runner warming up to replace another: called on the analyser thread once it
        # has media (or ``warm_deadline`` passed: a dead source will not give any).
        self.on_warm: Callable[[], None] | None = None
        self.warm_deadline = 0.0

    def _inherit(self, defect: Defect) -> None:
        """Take over an open defect of this stream's units from their previous owner."""
        if defect.type == "no_signal" and self.spec.watch_group == defect.group:
            self._no_signal = defect  # closed by the first media, like one raised here
        elif defect.type == "no_signal" or not self.analyzer.inherit(defect):
            self._unresolvable.append(defect)
            return
        self.open_defects[(defect.type, defect.key)] = defect

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        for target, name in ((self._read_loop, "read"), (self._analyse_loop, "analyse")):
            t = threading.Thread(target=target, name=f"{name}-{self.spec.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, wait: float = 0.0) -> None:
        self._stop.set()
        self.state = "stopped"
        self._queue.put(None)
        deadline = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def quiesce(self, timeout: float = 0.5) -> None:
        """Stop, and wait only for the analyser (the thread that emits events): it ends
        within a frame, while the reader may sit in a network read for seconds."""
        self.stop()
        for t in self._threads:
            if t.name.startswith("analyse-"):
                t.join(timeout)

    @property
    def running(self) -> bool:
        return self.state == "running" and not self._stop.is_set()

    @property
    def fps(self) -> float:
        """The stream's pictures a second, the non-reference ones dropped undecoded
        included (``VideoFrame.pictures``)."""
        w = list(self._fps_window)
        if len(w) < 2 or time.monotonic() - w[-1][0] > 2.0:
            return 0.0
        return sum(n for _, n in w[1:]) / max(w[-1][0] - w[0][0], 1e-6)

    def wall_of(self, media_t: float) -> float:
        base = self._wall_of_media0 if self._wall_of_media0 is not None else self.started_wall
        return base + media_t

    def media_of(self, wall: float) -> float:
        return wall - self.wall_of(0.0)

    @property
    def has_media(self) -> bool:
        """Analysed a frame of picture or sound (a warmed-up runner can take over)."""
        return self.last_frame_wall is not None

    def analysed_to(self, wall: float) -> bool:
        """Has this runner analysed the media that arrived by ``wall`` (its own media
        timeline mapped to the wall clock)? A runner handing its unit over stops only
        then: a successor that has media from ``wall`` on sees everything after it."""
        if not self.running or not self.has_media:
            return True  # nothing here that it could still analyse
        return self.wall_of(self._media_end) >= wall

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the analyser thread, between two inputs (within 0.25 s when the
        source is quiet): the detectors' state is touched only there."""
        self._calls.put(fn)

    def on_analyser(self, fn: Callable[[], Any], timeout: float = 0.5) -> Any:
        """``fn()`` run on the analyser thread; None if it did not run within ``timeout``
        (the thread ended, or is stuck in a detector)."""
        done = threading.Event()
        out: list[Any] = []

        def call() -> None:
            out.append(fn())
            done.set()

        if not any(t.is_alive() for t in self._threads if t.name.startswith("analyse-")):
            return fn()  # no analyser (not started, or ended): nothing races with us
        self.call_soon(call)
        done.wait(timeout)
        return out[0] if out else None

    def close_open(self, reason: str) -> None:
        """On the analyser thread: close every open defect now, saying why (the stream
        was deleted: receivers must not be left with alarms that never end)."""
        now = self._media_end
        self._no_signal = None
        for defect in list(self.open_defects.values()):
            defect.end = max(now, defect.start)
            defect.details["closed_because"] = reason
            self._emit(DefectEvent("close", defect, now))
        # Its last word: frames analysed until the runner stops (a moment later) would
        # close the same defects again when their condition ends.
        self._closed_for_good = True

    def pending_runs(self) -> list[tuple[str, str, float]]:
        """(detector, key, wall clock start) of the runs on here not raised yet: handed to
        the unit's next runner (a snapshot: any thread)."""
        return [(n, k, self.wall_of(t)) for n, k, t in self.analyzer.lifecycle.pending()]

    def take_over(
        self,
        committed: list[Defect],
        ended: dict[tuple[str, str], float],
        handed: list[tuple[str, str, float]],
    ) -> None:
        """On the analyser thread: this runner, warmed up while another ran the units,
        becomes theirs (see ``Lifecycle.take_over``); emits what that decides."""
        now = self._media_end
        life = self.analyzer.lifecycle
        for name, key, start_wall in handed:
            life.hand(name, key, self.media_of(start_wall))
        signal = [d for d in committed if d.type == "no_signal"]
        events = life.take_over([d for d in committed if d.type != "no_signal"], ended, now)
        self.open_defects = {(d.type, d.key): d for d in life.open_defects()}
        mine = self._no_signal
        for defect in signal:
            if mine is not None and defect.group == mine.group:
                self._no_signal, mine = defect, None  # the same outage, still on
                self.open_defects[("no_signal", "")] = defect
            else:
                events.append(DefectEvent("close", defect, now))
                defect.end = max(now, defect.start)
        if mine is not None:
            events.append(DefectEvent("open", mine, now))
        log.info(
            "%s: took over %s at %.2f (committed open %d, handed %d): %s",
            self.spec.id, ",".join(self.spec.groups), now, len(committed), len(handed),
            [(ev.kind, ev.defect.type, round(ev.defect.start, 2)) for ev in events],
        )  # fmt: skip
        for ev in events:
            self._emit(ev)

    # ------------------------------------------------------------------ reader thread
    def _read_loop(self) -> None:
        attempt = 0
        offset = 0.0
        # After the first open, the reader's spec: what opening found out (an HTTP URL
        # serving a playlist) is not asked again at every reconnect.
        source: str | SourceSpec = self.spec.url
        while not self._stop.is_set():
            try:
                reader = MediaReader(
                    source,
                    timeout_s=self.timeout_s,
                    threads=None,  # frame threads only while this process has idle cores
                    reference_only=decode_frames.reference_only(),
                    want_video=self.analyzer.wants_video,
                    want_audio=self.analyzer.wants_audio,
                    policy=self.policy,
                )
            except SourceError as exc:
                self.last_error = self._public_error(exc)
                self.state = "reconnecting" if attempt < 8 else "down"
                attempt += 1
                self.stats.reconnects += 1
                self.on_stats(self, "reconnect", 1)
                delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(attempt, 10))
                if self._no_signal is not None:
                    delay = min(delay, NO_SIGNAL_RETRY_S)
                log.info(
                    "stream %s: %s; retry in %.1f s",
                    self.spec.id,
                    redact_text(f"{exc} {getattr(exc, 'detail', '')}".strip(), self.spec.url),
                    delay,
                )
                self._stop.wait(delay)
                continue
            attempt = 0
            source = reader.spec
            self._reader = reader  # the watchdog sees its packets before any frame
            self.last_error = None
            self.state = "running"
            is_file = not reader.spec.is_network
            # Continue the timeline: a reconnect counts the outage, a loop does not.
            if self.last_frame_wall is not None:
                gap = 0.0 if is_file else max(0.0, time.time() - self.last_frame_wall)
                offset = self._media_end + gap
                if not is_file:
                    self._queue.put([Gap(offset)])  # nothing was seen in between
            try:
                self._pump(reader, offset, paced=is_file and self.spec.pace == "live")
            except Exception as exc:  # never let one bad stream end its monitoring
                log.exception("stream %s: reader failed", self.spec.id)
                reader.ended_by = f"reader error: {exc}"
                is_file = False  # retry like a live source
            finally:
                self._reader = None
                reader.close()
            if self._stop.is_set():
                break
            if is_file and not self.spec.loop:
                # End of input: the analyser closes what is open and then reports
                # "stopped" -- not before, while frames are still queued for it.
                self._queue.put(None)
                return
            if not is_file:
                self.last_error = redact_text(reader.ended_by or "source ended", self.spec.url)
                self.state = "reconnecting"
                self.stats.reconnects += 1
                self.on_stats(self, "reconnect", 1)
                self._stop.wait(BACKOFF_MIN_S)

    def _public_error(self, exc: SourceError) -> str:
        """What the API, SSE and webhooks may say about a failed open. Under a policy
        (the service) every failure reads the same: "refused", "timed out" and "not
        media" would tell a caller which internal hosts and ports exist."""
        if self.policy is None:
            return redact_text(str(exc), self.spec.url)
        if isinstance(exc, SourceRefusedError):
            return str(exc)
        return f"source unavailable (no audio/video within {self.timeout_s:g} s)"

    def _pump(self, reader: MediaReader, offset: float, paced: bool) -> None:
        self._real_time = paced or reader.spec.is_network
        batch: list[MediaItem | Gap] = []  # read, not handed to the analyser yet
        try:
            self._pump_into(reader, offset, paced, batch)
        finally:
            self._hand_over(batch)  # before a Gap or the end of input follows it

    def _pump_into(
        self, reader: MediaReader, offset: float, paced: bool, batch: list[MediaItem | Gap]
    ) -> None:
        wall0: float | None = None
        t0 = 0.0
        cpu: float | None = None  # thread CPU clock at the picture before a sampled one
        pictures = 0
        port = udp_port(self.spec.url)
        seen_drops = 0  # this connection's socket starts at zero
        next_drops = time.monotonic()
        hls = reader.spec.is_hls
        # HLS hands out a whole segment at once, seconds ahead of real time: waiting for
        # the analyser loses nothing (dropping did: 5 s of every 6 s segment).
        live = (paced or reader.spec.is_network) and not hls
        for item in reader.frames():
            if self._stop.is_set():
                return
            if port is not None and time.monotonic() >= next_drops:
                next_drops = time.monotonic() + KERNEL_DROPS_EVERY_S
                seen_drops = self._count_kernel_drops(port, seen_drops)
            item.t += offset
            self.last_packet_wall = reader.last_packet_wall
            if isinstance(item, VideoFrame):
                if reader.reference_only:
                    reader.decode_every_frame(item.t < self.analyzer.every_frame_until())
                # Decode CPU per picture, sampled (see sampling.TIME_ONE_IN): from the
                # picture before a sampled one to it.
                pictures += 1
                if cpu is not None:
                    metrics.FRAME_DECODE_SECONDS.observe(time.thread_time() - cpu)
                    cpu = None
                elif pictures % TIME_ONE_IN == 0:
                    cpu = time.thread_time()
            early = 0.0  # a paced item released before it is due: by this much
            if paced:
                if wall0 is None:
                    wall0, t0 = time.monotonic(), item.t
                ahead = (item.t - t0) - (time.monotonic() - wall0)
                if ahead > PACE_SLACK_S:
                    if self._stop.wait(ahead):
                        return
                else:
                    early = max(0.0, ahead)
            if isinstance(item, VideoFrame | AudioFrame):
                # A paced file's media "arrives" when it is due; a live source's when
                # its packet was read.
                if paced:
                    item.arrived = time.time() + early
                else:
                    item.arrived = self.last_packet_wall or time.time()
                if hls:
                    self._cover(item)
            self._enqueue(item, live, batch)
            if isinstance(item, VideoFrame) or len(batch) >= HAND_OVER_ITEMS:
                self._hand_over(batch)

    def _hand_over(self, batch: list[MediaItem | Gap]) -> None:
        if batch:
            self._queue.put(batch.copy())
            batch.clear()

    def _cover(self, item: VideoFrame | AudioFrame) -> None:
        """HLS delivers a segment's media at once, then nothing for its duration: the
        signal is present while the media received covers the wall clock -- a burst of
        T seconds of media covers T seconds from its arrival (at most ``COVER_MAX_S``:
        a client joining reads several segments at once)."""
        arrived = item.arrived
        if self._burst is None or arrived - self._burst[2] > BURST_GAP_S:
            self._burst = (arrived, item.t, arrived)  # a new segment's burst
        start_wall, start_t, _ = self._burst
        self._burst = (start_wall, start_t, arrived)
        end = item.end if isinstance(item, AudioFrame) else item.t
        cover = min(start_wall + (end - start_t), arrived + COVER_MAX_S)
        self.covered_until = max(self.covered_until, cover)

    def _count_kernel_drops(self, port: int, seen: int) -> int:
        now = kernel_drops(port)
        if now is not None and now > seen:
            self.stats.udp_drops += now - seen
            self.on_stats(self, "udp_drops", now - seen)
            return now
        return seen

    def _enqueue(self, item: MediaItem, live: bool, batch: list[MediaItem | Gap]) -> None:
        """Add ``item`` to the batch for the analyser. Live: drop the newest video frame
        when analysis is behind (counted). A file read as fast as possible waits instead
        (backpressure), its batch handed over first: the analyser frees the room."""
        if isinstance(item, VideoFrame):
            size = item.nbytes
            while True:
                with self._queue_lock:
                    if self._video_queued == 0 or (
                        self._video_queued < QUEUE_VIDEO_FRAMES
                        and self._video_bytes + size <= QUEUE_VIDEO_BYTES
                    ):
                        self._video_queued += 1
                        self._video_bytes += size
                        break
                if live:
                    self.stats.dropped += 1
                    self.on_stats(self, "dropped", 1)
                    return
                self._hand_over(batch)
                if self._stop.wait(0.005):
                    return
        elif live and (self._video_queued + self._others_in - self._others_out >= QUEUE_MAX_ITEMS):
            self.stats.dropped += 1  # analysis is stuck: audio must not pile up either
            return
        else:
            self._others_in += 1
        batch.append(item)

    # ------------------------------------------------------------------ analyser thread
    def _analyse_loop(self) -> None:
        for defect in self._unresolvable:  # no detector of its type runs here any more
            if self._stop.is_set():
                return
            defect.end = max(0.0, defect.start)
            self.on_event(self, DefectEvent("close", defect, 0.0), None)
        while True:
            while not self._calls.empty():
                self._calls.get()()
            warm = self.on_warm
            if warm is not None and (self.has_media or time.monotonic() > self.warm_deadline):
                self.on_warm = None
                warm()
            try:
                batch = self._queue.get(timeout=0.25)
            except queue.Empty:
                self._watchdog()
                continue
            if batch is None:
                if not self._stop.is_set():  # a file ended: close what is open
                    self._close_no_signal(self._media_end, end_of_input=True)
                    for ev in self.analyzer.finish():
                        self._emit(ev)
                    self._publish_readings()
                    self._export_detector_time()  # the last second's too
                    self.state = "stopped"  # every frame analysed, every defect closed
                return
            for item in batch:
                if self._stop.is_set():
                    return  # stopped (handed over, deleted): queued frames emit nothing more
                try:
                    self._analyse(item)
                except Exception:  # a detector bug must not kill monitoring of the stream
                    log.exception("stream %s: analysis failed on a frame", self.spec.id)
            del batch  # its pictures go now, not once the next batch has come
            self._watchdog()

    def _analyse(self, item: MediaItem | Gap) -> None:
        if isinstance(item, Gap):
            for ev in self.analyzer.gap(item.t):
                self._emit(ev)
            return
        now = time.time()
        if isinstance(item, VideoFrame):
            with self._queue_lock:
                self._video_queued -= 1
                self._video_bytes -= item.nbytes
            self._latest_video = item
            self._fps_window.append((time.monotonic(), item.pictures))
            self.stats.frames += 1
            self.on_stats(self, "frame", 1)
            if now - self._last_thumb >= THUMBNAIL_EVERY_S:
                self._last_thumb = now
                self.thumbnail = jpeg_thumbnail(item)
        else:
            self._others_out += 1  # audio, a decode error: no longer waiting
            if isinstance(item, DecodeError):
                self.stats.decode_errors += 1
                self.on_stats(self, "decode_error", 1)
        # Any input, not only pictures: an audio-only stream's detectors count too.
        if now - self._last_detector_time >= DETECTOR_TIME_EVERY_S:
            self._last_detector_time = now
            self._export_detector_time()
        if isinstance(item, VideoFrame | AudioFrame):
            if self.last_frame_wall is None:
                # Picture or sound: a runner of a stream's audio units only decodes no
                # picture, and its units ran without ever saying so (cluster G2 failed).
                self.on_stats(self, "first_frame", now)
            end = item.end if isinstance(item, AudioFrame) else item.t
            arrived = item.arrived or now
            if self._wall_of_media0 is None:
                self._wall_of_media0 = self.first_media0 = arrived - item.t
                self.media_since_wall = now
                log.info(
                    "stream %s: first media %.2f s after its runner started (media %.3f)",
                    self.spec.id, now - self.started_wall, item.t,
                )  # fmt: skip
                for name, key, start_wall in self._handed:
                    self.analyzer.lifecycle.hand(name, key, self.media_of(start_wall))
                self._handed = []
            elif self._real_time and arrived - item.t < self._wall_of_media0:
                # Media time on the wall clock: as the item with the least delay says.
                # The first one waited for the source to be probed (a second or two on
                # a busy member), so a runner dated everything that much late -- and a
                # defect two runners date (a handoff) came out that much too long.
                # By when the reader had it: time queued for a starved analyser is not
                # the media's delay.
                self._wall_of_media0 = arrived - item.t
            self.stats.lag_s = max(0.0, now - self.wall_of(end))
            if now - self._lag_at >= LAG_METRIC_EVERY_S:  # a gauge: a few times a second
                self._lag_at = now
                self.on_stats(self, "lag", self.stats.lag_s)
            self._close_no_signal(item.t)
            self._media_end = max(self._media_end, end)
            self.last_frame_wall = now
        if isinstance(item, VideoFrame) and self.stats.frames % TIME_ONE_IN == 0:  # sampled
            cpu = time.thread_time()
            events = self.analyzer.feed(item)
            metrics.FRAME_ANALYSIS_SECONDS.observe(time.thread_time() - cpu)
        else:
            events = self.analyzer.feed(item)
        for ev in events:
            self._emit(ev)
        # Every second of media (a file read "asap" too), and at its end.
        if abs(item.t - self._readings_at) >= READINGS_EVERY_S:
            self._readings_at = item.t
            self._publish_readings()

    def _publish_readings(self) -> None:
        self.readings = self.analyzer.readings()
        for name, value in self.readings.items():
            self.on_stats(self, f"reading:{name}", value)

    def _export_detector_time(self) -> None:
        spent = self.analyzer.detector_seconds
        for name, total in spent.items():
            delta = total - self._exported.get(name, 0.0)
            if delta > 0:
                metrics.DETECTOR_SECONDS.labels(detector=name).inc(delta)
                self._exported[name] = total
        for name, count in self.analyzer.detector_errors.items():
            new = count - self._exported_errors.get(name, 0)
            if new > 0:
                metrics.DETECTOR_ERRORS.labels(detector=name).inc(new)
                self._exported_errors[name] = count

    def _emit(self, ev: DefectEvent) -> None:
        # Stopped (handed over, superseded, deleted): the successor owns the stream's
        # defects now, even if this analyser was still inside a detector when ``quiesce``
        # gave up waiting for it.
        if self._closed_for_good or self._stop.is_set():
            return
        key = (ev.defect.type, ev.defect.key)
        evidence = None
        if ev.kind == "open":
            self.open_defects[key] = ev.defect
            if self._latest_video is not None:
                evidence = jpeg_thumbnail(self._latest_video, width=640)
        else:
            self.open_defects.pop(key, None)
        self.on_event(self, ev, evidence)

    # ------------------------------------------------------------------ watchdog
    def _watchdog(self) -> None:
        """Raise ``no_signal`` when no media has arrived for ``no_signal_s`` of wall time;
        close it as soon as packets flow again (a decoder may need a keyframe, up to a
        GOP, before it gives a frame: that is not a missing signal)."""
        if self._stop.is_set() or self.state == "stopped":
            return
        reader = self._reader
        if reader is not None and reader.last_packet_wall is not None:
            self.last_packet_wall = max(self.last_packet_wall or 0.0, reader.last_packet_wall)
        if self._no_signal is not None:
            if self.last_packet_wall is not None and self.last_packet_wall > self._no_signal_since:
                # On the timeline the next frame will have: the outage counts.
                gap = max(0.0, time.time() - (self.last_frame_wall or time.time()))
                self._close_no_signal(self._media_end + gap)
            return
        group = self.spec.watch_group
        if group is None:
            return  # another member owns the stream's first unit and watches the signal
        # Measured from the last packet: frames the decoder flushes after the source went
        # quiet (when the read times out) are not signal. (HLS: from the end of what the
        # last segments cover.)
        last = max(
            self.last_packet_wall or self.last_frame_wall or self.started_wall,
            self.covered_until,
        )
        if time.time() - last < self.no_signal_s:
            return
        defect = Defect(
            type="no_signal",
            group=group,
            key="",
            start=self._media_end,
            severity="critical",
            details={"reason": self.last_error or "no media received"},
        )
        self._no_signal = defect
        self._no_signal_since = time.time()
        self._emit(DefectEvent("open", defect, self._media_end))

    def _close_no_signal(self, media_t: float, end_of_input: bool = False) -> None:
        if self._no_signal is None:
            return
        stale = self.last_packet_wall is not None and self.last_packet_wall <= self._no_signal_since
        if stale and not end_of_input:
            return  # a frame flushed from before the silence: the signal is not back
        defect, self._no_signal = self._no_signal, None
        defect.end = max(media_t, defect.start)
        self._emit(DefectEvent("close", defect, media_t))
