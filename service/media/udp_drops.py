"""The kernel's count of datagrams it dropped for a UDP port (receive buffer full).

FFmpeg's UDP reader drains the socket on a thread of its own into a FIFO; when either
that thread or the decode behind the FIFO falls behind, datagrams are lost in the
kernel before avmon ever sees them. Only the kernel counts those: /proc/net/udp has a
``drops`` column per socket. Linux only; elsewhere the count is unknown (None).
"""

from __future__ import annotations

from urllib.parse import urlsplit

TABLES = ("/proc/net/udp", "/proc/net/udp6")


def udp_port(url: str) -> int | None:
    """The local port a udp:// or rtp:// source listens on."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("udp", "rtp"):
        return None
    try:
        return parts.port
    except ValueError:
        return None


def kernel_drops(port: int) -> int | None:
    """Datagrams dropped on sockets bound to ``port``; None if none is bound."""
    suffix = f":{port:04X}"
    total, found = 0, False
    for table in TABLES:
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) >= 13 and cols[1].endswith(suffix):
                found = True
                total += int(cols[-1])
    return total if found else None
