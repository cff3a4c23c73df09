"""The input surface of a source: URL syntax, the address policy, and secrets in URLs.

A source URL is a request the process will make, inside the cluster network, again on
every reconnect (DESIGN.md section 8). So:
- ``clean_url`` refuses anything that could smuggle bytes into a protocol (control
  characters and whitespace, raw or percent-encoded) and re-serialises the URL from its
  parsed parts, so FFmpeg receives exactly what was checked.
- ``AddressPolicy`` decides which resolved addresses may be contacted; ``pin`` resolves a
  host *now*, checks every address, and returns one to connect to, so a name that
  re-resolves (DNS rebinding) cannot move a checked connection elsewhere.
- ``redact`` hides credentials (user-info, token-like query parameters) wherever a URL is
  shown: API, defect details, logs.
"""

from __future__ import annotations

import fcntl
import ipaddress
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from service.media.errors import SourceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What each scheme may make FFmpeg open underneath it (its protocol_whitelist).
PROTOCOLS = {
    "udp": "udp",
    "rtp": "rtp,udp",
    "rtsp": "rtsp,rtp,udp,tcp",
    "rtsps": "rtsps,rtsp,rtp,udp,tcp,tls",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
    # http(s) goes through avmon's own guarded opener (io_open); FFmpeg opens nothing.
    "http": "http,tcp",
    "https": "https,http,tcp,tls",
}
# FFmpeg reads options from a udp:// URL's query (fifo_size=, buffer_size=, localaddr=,
# connect=...): a caller could size buffers or pick interfaces. Only these pass.
UDP_QUERY_OPTIONS = frozenset({"pkt_size", "sources", "block"})
# Query parameters whose values are credentials (case-insensitive, substring match).
SECRET_PARAMS = re.compile(r"token|key|secret|pass|auth|sig|credential", re.IGNORECASE)
# Control characters, whitespace and their percent-encodings (%00-%20, %7F).
_RAW_BAD = re.compile(r"[\x00-\x20\x7f]")
_ENCODED_BAD = re.compile(r"%(?:[01][0-9a-fA-F]|20|7[fF])")


class UrlError(ValueError):
    """A URL refused for its form; the message is safe to show the caller."""


class SourceRefusedError(SourceError):
    """The address policy refused a connection (said the same way whatever the cause,
    so refusals do not tell a caller which internal hosts or ports exist)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("source address refused by policy")
        self.detail = detail  # for logs only


def clean_url(url: str) -> str:
    """The URL re-serialised from its parts; UrlError if it could inject anything."""
    if _RAW_BAD.search(url):
        raise UrlError("URL contains whitespace or control characters")
    if _ENCODED_BAD.search(url):
        raise UrlError("URL contains percent-encoded whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or scheme == "file":
        return url  # a local path: nothing goes on a wire
    host = parts.hostname
    if not host:
        raise UrlError("URL has no host")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host):
        raise UrlError("host name has characters a host name cannot have")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None:
        userinfo = quote(unquote(parts.username), safe="")
        if parts.password is not None:
            userinfo += ":" + quote(unquote(parts.password), safe="")
        netloc = f"{userinfo}@{netloc}"
    query = parts.query
    if scheme in ("udp", "rtp"):
        pairs = parse_qsl(query, keep_blank_values=True)
        unknown = sorted({k for k, _ in pairs} - UDP_QUERY_OPTIONS)
        if unknown:
            raise UrlError(f"URL options not allowed for {scheme}: {', '.join(unknown)}")
        query = urlencode(pairs)
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=-._~")
    return urlunsplit((scheme, netloc, path, query, ""))


def redact(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "<malformed URL>"
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}=***" if SECRET_PARAMS.search(k) else f"{k}={v}" if v else k for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, say) with every appearance of ``url``'s secrets hidden."""
    out = text.replace(url, redact(url))
    parts = urlsplit(url) if "://" in url else None
    if parts is not None:
        if parts.password:
            out = out.replace(parts.password, "***")
        for k, v in parse_qsl(parts.query):
            if v and SECRET_PARAMS.search(k):
                out = out.replace(v, "***")
    return out


def normalise(addr: Address) -> Address:
    """IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms judged as the IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr


def own_addresses() -> set[Address]:
    """This host's interface addresses (a pod calling itself is a loop or an SSRF)."""
    found: set[Address] = set()
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                req = struct.pack("256s", name.encode()[:15])
                raw = fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
                found.add(ipaddress.IPv4Address(raw[20:24]))
            except OSError:
                pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    except (OSError, ValueError, IndexError):
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    except (OSError, ValueError):
        pass
    # Loopback is the default denylist's to refuse, so an allowlist can opt back in.
    return {a for a in found if not a.is_loopback}


def _networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a source may contact. The most specific matching entry decides, as
    in a routing table: the allowlist opts back in to what a broader deny entry refuses
    (allow ``127.0.0.1/32`` under the default ``127.0.0.0/8`` deny), and a deny entry inside
    an allowed range carves it out. This host's own addresses are deny entries of their
    own (/32, /128). With an allowlist, an address it does not cover is refused; ties go
    to the allowlist."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    own: frozenset[Address] = field(default_factory=frozenset)

    @classmethod
    def from_lists(
        cls, allow: Iterable[str], deny: Iterable[str], deny_own: bool = True
    ) -> AddressPolicy:
        own = frozenset(own_addresses()) if deny_own else frozenset()
        return cls(_networks(allow), _networks(deny), own)

    def permits(self, addr: Address) -> bool:
        addr = normalise(addr)
        allowed = max((n.prefixlen for n in self.allow if addr in n), default=-1)
        denied = max((n.prefixlen for n in self.deny if addr in n), default=-1)
        if addr in self.own or addr.is_unspecified:
            denied = addr.max_prefixlen
        if allowed < 0 and (self.allow or denied >= 0):
            return False
        return allowed >= denied

    def resolve(self, host: str, port: int | None = None) -> list[Address]:
        """Every address ``host`` resolves to now; SourceRefusedError if any is refused (a
        name answering with one allowed and one internal address is not trusted)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise SourceRefusedError(f"{host!r} does not resolve") from None
        addrs = [normalise(ipaddress.ip_address(str(i[4][0]).split("%")[0])) for i in infos]
        refused = [a for a in addrs if not self.permits(a)]
        if refused or not addrs:
            raise SourceRefusedError(f"{host!r} -> {refused[0] if refused else 'nothing'}")
        return addrs

    def pin(self, url: str) -> str:
        """``url`` with its host replaced by a checked address (resolved now)."""
        parts = urlsplit(url)
        if not parts.scheme or parts.scheme.lower() == "file" or not parts.hostname:
            return url
        addr = self.resolve(parts.hostname, parts.port)[0]
        host = f"[{addr}]" if addr.version == 6 else str(addr)
        netloc = parts.netloc.rpartition("@")
        hostport = host + (f":{parts.port}" if parts.port is not None else "")
        new = f"{netloc[0]}@{hostport}" if netloc[1] else hostport
        return urlunsplit((parts.scheme, new, parts.path, parts.query, parts.fragment))
