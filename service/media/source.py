"""Open a source with PyAV, with network options fitting its protocol."""

from __future__ import annotations

import http.client
import os
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import av

from service.media.errors import SourceError
from service.media.guard import PROTOCOLS, AddressPolicy, redact
from service.media.guarded_http import GuardedOpener

# Schemes avmon ingests. PyAV's FFmpeg has no libsrt, so no srt://.
LIVE_SCHEMES = frozenset({"udp", "rtp", "rtsp", "rtsps", "rtmp", "rtmps"})
HTTP_SCHEMES = frozenset({"http", "https"})
HLS_READ_TIMEOUT_S = 30.0
SUPPORTED_SCHEMES = LIVE_SCHEMES | HTTP_SCHEMES | {"file"}

# UDP buffering, per source: the kernel's receive buffer (capped by net.core.rmem_max)
# plus FFmpeg's FIFO, filled by its own reader thread so the GIL never starves the
# socket. The FIFO is a ring: every byte of it ends up resident once enough data has
# passed, so it is sized in seconds (~2.5 s at 13 Mbit/s), not "as large as possible"
# (fifo_size=1000000 meant 188 MB of RSS per source). Overflow drops and is counted.
UDP_SOCKET_BYTES = 4 * 1024 * 1024
UDP_FIFO_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceSpec:
    url: str  # what av.open receives (file:// stripped to a path)
    scheme: str  # "file" for local paths
    # Whether the URL serves an HLS playlist, found out by asking it (a playlist served
    # under a name without .m3u8); None until asked. Kept across reconnects by the caller.
    hls: bool | None = None

    @property
    def is_network(self) -> bool:
        return self.scheme != "file"

    @property
    def is_hls(self) -> bool:
        """An HLS playlist: media arrives a segment at a time, a target duration apart."""
        return self.scheme in HTTP_SCHEMES and (self.hls is True or _playlist_name(self.url))

    @property
    def is_live_protocol(self) -> bool:
        """Protocols that are live by nature; HTTP may be either (HLS live vs a file)."""
        return self.scheme in LIVE_SCHEMES


def parse_source(source: str) -> SourceSpec:
    """Classify a source string; raise SourceError for schemes we cannot ingest."""
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = parts.path if scheme == "file" else source
        return SourceSpec(url=path, scheme="file")
    if scheme not in SUPPORTED_SCHEMES:
        raise SourceError(
            f"unsupported source scheme {scheme!r} "
            f"(supported: {', '.join(sorted(SUPPORTED_SCHEMES))})"
        )
    return SourceSpec(url=source, scheme=scheme)


def network_options(spec: SourceSpec, timeout_s: float) -> dict[str, str]:
    """FFmpeg options per protocol: bounded I/O waits, TCP for RTSP, lossy UDP tolerated."""
    us = str(int(timeout_s * 1_000_000))
    opts: dict[str, str] = {}
    if spec.scheme in ("udp", "rtp"):
        # 'timeout' makes a silent UDP socket return instead of blocking forever;
        # a large FIFO absorbs bursts while we decode; overruns drop, never abort.
        opts.update(
            timeout=us,
            fifo_size=str(UDP_FIFO_BYTES // 188),
            overrun_nonfatal="1",
            buffer_size=str(UDP_SOCKET_BYTES),
        )
    elif spec.scheme in ("rtsp", "rtsps"):
        opts.update(rtsp_transport="tcp", timeout=us)
    elif spec.scheme in ("rtmp", "rtmps"):
        opts.update(rw_timeout=us)
    elif spec.scheme in HTTP_SCHEMES:
        opts.update(rw_timeout=us, reconnect="1", reconnect_streamed="1", reconnect_delay_max="4")
    if spec.is_network:
        # Start quickly on live sources: a second of probing is plenty for TS/RTSP.
        opts.update(analyzeduration="2000000", probesize="2000000")
        # FFmpeg opens only what this scheme needs (no file:, no data:, no concat:).
        opts["protocol_whitelist"] = PROTOCOLS[spec.scheme]
    return opts


def read_timeout_s(spec: SourceSpec, timeout_s: float) -> float:
    """What one read may wait. HLS: at least ``HLS_READ_TIMEOUT_S`` -- FFmpeg's client
    blocks in a read while it waits for the next segment (6 s is the usual target, 10
    common), so a shorter timeout reconnected every segment and re-read the last ones."""
    return max(timeout_s, HLS_READ_TIMEOUT_S) if spec.is_hls else timeout_s


def open_source(
    spec: SourceSpec, timeout_s: float = 5.0, policy: AddressPolicy | None = None
) -> tuple[SourceSpec, Any]:
    """``open_container``, after finding out whether an http(s) URL without ``.m3u8`` in
    its path serves an HLS playlist: HLS needs a longer read timeout, which cannot be
    changed once opened (a short one reconnected at every segment), and FFmpeg will not
    take a playlist under such a name for HLS without the server's content type, which
    it does not see through avmon's own HTTP opener. The answer comes back in the
    returned spec: pass that spec to the next open (a reconnect) and it is not asked again."""
    if (
        spec.scheme in HTTP_SCHEMES
        and spec.hls is None
        and not _playlist_name(spec.url)
        and not _media_file_name(spec.url)
    ):
        spec = replace(spec, hls=_serves_playlist(spec, timeout_s, policy))
    return spec, open_container(spec, timeout_s, policy)


# Paths named as what they are -- a playlist or a media file -- are taken at their word,
# as FFmpeg takes them: no extra request before a progressive file or a live TS relay.
MEDIA_EXTENSIONS: tuple[str, ...] = (
    *(".ts", ".m2ts", ".mts", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".flv"),
    *(".aac", ".mp3", ".ac3", ".wav", ".mpg", ".mpeg", ".avi", ".m4a", ".ogg"),
)


def _media_file_name(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(MEDIA_EXTENSIONS)


def _playlist_name(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(".m3u8")


def _serves_playlist(
    spec: SourceSpec, timeout_s: float, policy: AddressPolicy | None
) -> bool | None:
    """Whether the URL's body starts as a playlist does (one request, 7 bytes read);
    None when it could not be asked (the open itself will say what is wrong, and the
    next attempt asks again). Without a policy (``avmon check``: the operator's own URL)
    every address is allowed, but the request is still avmon's one client: http(s) only,
    redirects included."""
    try:
        body = GuardedOpener(policy or AddressPolicy(), timeout_s).fetch(spec.url)
        try:
            return body.read(7) == b"#EXTM3U"
        finally:
            body.close()
    except (OSError, ValueError, http.client.HTTPException, SourceError):
        return None


def open_container(
    spec: SourceSpec, timeout_s: float = 5.0, policy: AddressPolicy | None = None
) -> Any:
    """Open ``spec`` for reading; every failure becomes a one-line SourceError.

    With a ``policy`` (the service: URLs come from callers), every address is checked
    when the connection is made: http(s) through avmon's own opener (each request,
    redirect, playlist and segment), other schemes resolved now and pinned to the
    checked address, so FFmpeg never resolves the name itself."""
    if spec.scheme == "file":
        if not os.path.exists(spec.url):
            raise SourceError(f"{spec.url}: no such file")
        if os.path.isdir(spec.url):
            raise SourceError(f"{spec.url}: is a directory")
        # A named pipe (or device) reads as 0 bytes until its writer sends: a stream.
        if os.path.isfile(spec.url) and os.path.getsize(spec.url) == 0:
            raise SourceError(f"{spec.url}: empty file (0 bytes)")
    shown = redact(spec.url)
    url, options, io_open = spec.url, network_options(spec, timeout_s), None
    if policy is not None and spec.is_network:
        if spec.scheme in HTTP_SCHEMES:
            io_open = GuardedOpener(policy, timeout_s)
            options["http_persistent"] = "0"
        else:
            url = policy.pin(spec.url)
    try:
        return av.open(
            url,
            mode="r",
            format="hls" if spec.hls else None,  # known by its content, not its name
            options=options,
            timeout=(timeout_s, read_timeout_s(spec, timeout_s)) if spec.is_network else None,
            io_open=io_open,
        )
    except SourceError:
        raise
    except av.error.InvalidDataError:
        raise SourceError(f"{shown}: not a recognised audio/video stream") from None
    except av.error.ExitError:
        # FFmpeg's interrupt callback fired: our timeout, nothing arrived.
        raise SourceError(f"{shown}: no data received within {timeout_s:g} s") from None
    except av.error.FFmpegError as exc:
        raise SourceError(f"{shown}: {_reason(exc)}") from None
    except OSError as exc:
        raise SourceError(f"{shown}: {exc.strerror or exc}") from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(";")[0].strip() or type(exc).__name__
