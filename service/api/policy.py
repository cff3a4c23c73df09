"""Which sources may be registered: URL form, schemes, file access, addresses.

The same ``AddressPolicy`` is applied again by the media layer at every (re)connect, to
every address and request a source makes; this is the early refusal with a 422.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from service.config import Settings
from service.media.guard import AddressPolicy, SourceRefusedError, UrlError, clean_url
from service.media.source import SUPPORTED_SCHEMES


class PolicyError(ValueError):
    """A source refused by policy; ``field`` names the request field."""

    def __init__(self, message: str, field: str = "url") -> None:
        super().__init__(message)
        self.field = field


def check_source(url: str, settings: Settings, policy: AddressPolicy) -> str:
    """The URL to store (validated and re-serialised); PolicyError if refused."""
    try:
        cleaned = clean_url(url)
    except UrlError as exc:
        raise PolicyError(str(exc)) from None
    parts = urlsplit(cleaned)
    scheme = parts.scheme.lower()
    if scheme in {"", "file"}:
        if not settings.allow_file_sources:
            raise PolicyError("file sources are disabled (set AVMON_ALLOW_FILE_SOURCES=true)")
        return cleaned
    if scheme not in SUPPORTED_SCHEMES:
        known = ", ".join(sorted(SUPPORTED_SCHEMES - {"file"}))
        raise PolicyError(f"unsupported scheme {scheme!r} (supported: {known})")
    try:
        policy.resolve(parts.hostname or "", parts.port)
    except SourceRefusedError as exc:
        # One message whatever the reason (denied, unresolvable): no oracle for callers.
        raise PolicyError(str(exc)) from None
    return cleaned
