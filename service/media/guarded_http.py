"""HTTP(S) sources fetched by avmon itself, so the address policy sees every request.

PyAV's ``io_open`` hook receives every resource FFmpeg opens for an input: the source
itself, each HLS playlist reload and segment, keys. Each is fetched here on a connection
to an address checked by the policy *at that moment* (no re-resolution by FFmpeg, so no
DNS rebinding), following redirects only to allowed addresses. A refused nested resource
yields an empty body and is recorded: an exception inside the hook would end the decode
loop for the whole stream. (FFmpeg's HLS demuxer needs ``http_persistent=0`` with it.)
"""

from __future__ import annotations

import base64
import http.client
import io
import logging
import socket
import ssl
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from service.media.errors import SourceError
from service.media.guard import Address, AddressPolicy, SourceRefusedError, redact

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, addr: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addr = addr

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.addr), self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, addr: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.addr = addr

    def connect(self) -> None:
        raw = socket.create_connection((str(self.addr), self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class _Body:
    """A response body as the non-seekable file PyAV reads from."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self.conn, self.resp = conn, resp

    def read(self, n: int = -1) -> bytes:
        return self.resp.read(n if n >= 0 else None)

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


class GuardedOpener:
    """The ``io_open`` hook for one connection to an http(s) source."""

    def __init__(self, policy: AddressPolicy, timeout_s: float) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.opened = 0
        self.refused: list[str] = []  # nested resources refused (redacted URLs)

    def __call__(self, url: str, flags: int, options: dict[str, Any]) -> Any:
        first = self.opened == 0
        self.opened += 1
        try:
            return self.fetch(url)
        except SourceRefusedError as exc:
            log.warning("refused %s: %s", redact(url), exc.detail)
            if first:
                raise
            self.refused.append(redact(url))
            return io.BytesIO(b"")
        except (OSError, http.client.HTTPException, SourceError) as exc:
            if first:
                raise SourceError(f"{redact(url)}: {exc}") from None
            log.info("could not fetch %s: %s", redact(url), exc)
            return io.BytesIO(b"")

    def fetch(self, url: str) -> _Body:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https") or not parts.hostname:
                raise SourceRefusedError(f"scheme {scheme!r} inside an http source")
            addr = self.policy.resolve(parts.hostname, parts.port)[0]
            kind = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
            conn = kind(parts.hostname, parts.port, addr, self.timeout_s)
            headers = {"User-Agent": "avmon", "Connection": "close", "Accept": "*/*"}
            if parts.username is not None:
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            if resp.status in REDIRECTS:
                location = resp.getheader("Location") or ""
                resp.close()
                conn.close()
                url = urljoin(url, location)  # checked like the first at the next turn
                continue
            if resp.status >= 400:
                resp.close()
                conn.close()
                raise SourceError(f"HTTP {resp.status}")
            return _Body(conn, resp)
        raise SourceError("too many redirects")
