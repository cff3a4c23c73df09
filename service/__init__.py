"""avmon: a real-time monitor for live audio/video streams."""

__version__ = "0.1.0"
