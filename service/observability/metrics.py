"""Prometheus metrics: base units, ``_total`` counters, bounded labels (stream id at
most, never a URL). One process registry per pod (one uvicorn worker)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from service.observability.sampling import TIME_ONE_IN

STREAM_STATES = Gauge("avmon_streams", "Streams by state", ["state"])
UNITS_OWNED = Gauge("avmon_units_owned", "Work units (stream x detector group) this process runs")
FRAMES_DECODED = Counter("avmon_frames_decoded_total", "Video frames decoded", ["stream_id"])
FRAMES_DROPPED = Counter(
    "avmon_frames_dropped_total", "Frames dropped because analysis fell behind live", ["stream_id"]
)
UDP_KERNEL_DROPS = Counter(
    "avmon_udp_kernel_drops_total",
    "Datagrams the kernel dropped on a UDP source's socket (receive buffer full)",
    ["stream_id"],
)
DECODE_ERRORS = Counter("avmon_decode_errors_total", "Packets the decoder rejected", ["stream_id"])
RECONNECTS = Counter("avmon_reconnects_total", "Source (re)connection attempts", ["stream_id"])
ANALYSIS_LAG = Gauge(
    "avmon_analysis_lag_seconds", "Wall-clock delay of the newest analysed media", ["stream_id"]
)
DEFECTS_RAISED = Counter("avmon_defects_raised_total", "Defects raised", ["type"])
FRAME_ANALYSIS_SECONDS = Histogram(
    "avmon_frame_analysis_seconds",
    f"CPU time of all detectors on one video frame (one frame in {TIME_ONE_IN} is measured: "
    "the count is not a frame count)",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)
FRAME_DECODE_SECONDS = Histogram(
    "avmon_frame_decode_seconds",
    f"CPU time of the reader thread per video frame (demux + decode; one frame in {TIME_ONE_IN} "
    "is measured)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)
DETECTOR_SECONDS = Counter(
    "avmon_detector_cpu_seconds_total",
    f"CPU time spent in each detector (measured on one input in {TIME_ONE_IN}, counted "
    f"{TIME_ONE_IN} times)",
    ["detector"],
)
DETECTOR_ERRORS = Counter(
    "avmon_detector_errors_total",
    "Inputs on which a detector raised (it skipped them; the other detectors carried on)",
    ["detector"],
)
WEBHOOK_RESULTS = Counter(
    "avmon_webhook_deliveries_total",
    "Webhook delivery attempts: delivered, rejected (4xx), failed (retried), expired",
    ["result"],
)
WEBHOOK_LAG = Gauge(
    "avmon_webhook_lag_seconds",
    "Age of the oldest event not yet delivered to a receiver (0: caught up)",
    ["receiver"],  # the receiver's index in AVMON_WEBHOOK_URLS, never the URL
)
WEBHOOK_BACKLOG = Gauge(
    "avmon_webhook_backlog_events", "Events committed but not yet delivered", ["receiver"]
)

LOUDNESS = Gauge(
    "avmon_loudness_lufs",
    "EBU R128 loudness (window: momentary 0.4 s, short_term 3 s, integrated: gated, so far)",
    ["stream_id", "window"],
)
LOUDNESS_RANGE = Gauge("avmon_loudness_range_lu", "EBU R128 loudness range so far", ["stream_id"])
TRUE_PEAK = Gauge(
    "avmon_true_peak_dbtp", "Highest true peak so far (4x oversampled)", ["stream_id"]
)
READING_GAUGES = {
    "momentary_lufs": (LOUDNESS, "momentary"),
    "short_term_lufs": (LOUDNESS, "short_term"),
    "integrated_lufs": (LOUDNESS, "integrated"),
    "range_lu": (LOUDNESS_RANGE, None),
    "true_peak_dbtp": (TRUE_PEAK, None),
}

_PER_STREAM = (
    FRAMES_DECODED,
    FRAMES_DROPPED,
    UDP_KERNEL_DROPS,
    DECODE_ERRORS,
    RECONNECTS,
    ANALYSIS_LAG,
)


# Labelled children per (metric, stream), looked up per frame: ``labels()`` builds and
# locks on every call, a dict lookup does not.
_children: dict[tuple[int, str], Any] = {}


def for_stream(metric: Any, stream_id: str) -> Any:
    """``metric.labels(stream_id=...)`` for a per-stream metric, cached."""
    key = (id(metric), stream_id)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(stream_id=stream_id)
    return child


def forget_stream(stream_id: str) -> None:
    """Drop a deleted stream's series so label sets stay bounded."""
    for key in [k for k in _children if k[1] == stream_id]:
        _children.pop(key, None)
    for metric in (*_PER_STREAM, LOUDNESS_RANGE, TRUE_PEAK):
        with contextlib.suppress(KeyError):
            metric.remove(stream_id)
    for window in ("momentary", "short_term", "integrated"):
        with contextlib.suppress(KeyError):
            LOUDNESS.remove(stream_id, window)


DUPLICATE_EVENTS_DROPPED = Counter(
    "avmon_duplicate_defect_events_dropped_total",
    "A defect's open or close committed a second time (a retried write, a handoff race):"
    " acknowledged without a second event",
)
STALE_WRITES_REJECTED = Counter(
    "avmon_stale_writes_rejected_total", "Writes refused because the unit's epoch was stale"
)
LEASE_RENEW_FAILURES = Counter(
    "avmon_lease_renew_failures_total", "Lease renewals that failed or found the lease lost"
)
REBALANCES = Counter("avmon_rebalances_total", "Units moved by this member (claims + releases)")
REDIS_LATENCY = Histogram(
    "avmon_redis_latency_seconds",
    "Round trip of the coordinator's Redis calls",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
WORKER_RESTARTS = Counter(
    "avmon_worker_restarts_total", "Stream worker processes that died and were restarted"
)
OUTBOX_DROPPED = Counter(
    "avmon_outbox_dropped_total",
    "Queued defect writes dropped because the outbox was full during a Redis outage",
)
EVENTS_KEPT = Gauge(
    "avmon_events_kept",
    "Events this member committed that some webhook receiver has not had yet (kept in "
    "case Redis restarts empty)",
)
EVENTS_KEPT_DROPPED = Counter(
    "avmon_events_kept_dropped_total",
    "Kept copies of committed events dropped because the member kept too many",
)
UNITS_UNOWNED = Gauge(
    "avmon_units_unowned", "Registered work units without a live owner, as this member sees them"
)


def set_reading(stream_id: str, name: str, value: float) -> None:
    """A detector's per-stream measurement (``Detector.readings``) -> its gauge."""
    if name not in READING_GAUGES:
        return
    gauge, window = READING_GAUGES[name]
    if window is None:
        gauge.labels(stream_id=stream_id).set(value)
    else:
        gauge.labels(stream_id=stream_id, window=window).set(value)
