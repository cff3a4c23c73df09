"""Errors the media layer raises; each carries a one-line message for operators."""


class SourceError(Exception):
    """A source could not be opened or read (unreachable, unsupported, not media)."""
