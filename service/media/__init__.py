"""Media converter: open a source, decode it once, hand out frames in memory."""

from service.media.errors import SourceError
from service.media.frames import AudioFrame, StreamInfo, VideoFrame

__all__ = ["AudioFrame", "SourceError", "StreamInfo", "VideoFrame"]
