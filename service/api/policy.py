"""Which sources may be registered: schemes we ingest, file access, address lists."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from service.config import Settings
from service.media.source import SUPPORTED_SCHEMES


class PolicyError(ValueError):
    """A source refused by policy; ``field`` names the request field."""

    def __init__(self, message: str, field: str = "url") -> None:
        super().__init__(message)
        self.field = field


def _networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(i, strict=False) for i in items]


def check_source(url: str, settings: Settings) -> None:
    """Raise PolicyError unless ``url`` may be monitored under ``settings``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"", "file"}:
        if not settings.allow_file_sources:
            raise PolicyError("file sources are disabled (set AVMON_ALLOW_FILE_SOURCES=true)")
        return
    if scheme not in SUPPORTED_SCHEMES:
        known = ", ".join(sorted(SUPPORTED_SCHEMES - {"file"}))
        raise PolicyError(f"unsupported scheme {scheme!r} (supported: {known})")
    host = parts.hostname
    if not host:
        raise PolicyError("URL has no host")
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise PolicyError(f"host {host!r} does not resolve") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    deny = _networks(settings.source_denylist)
    allow = _networks(settings.source_allowlist)
    for addr in addresses:
        if any(addr in net for net in deny):
            raise PolicyError(f"address {addr} of {host!r} is denied by policy")
        if allow and not any(addr in net for net in allow):
            raise PolicyError(f"address {addr} of {host!r} is not in the allowlist")
