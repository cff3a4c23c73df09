"""Small JPEGs of a frame (thumbnails, evidence) from the planes already in memory."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from service.media.frames import VideoFrame


def jpeg_thumbnail(frame: VideoFrame, width: int = 320) -> bytes | None:
    """Subsample the planes to about ``width`` pixels wide and encode a JPEG."""
    step = max(1, frame.width // width)
    y = frame.luma[::step, ::step]
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    if h < 2 or w < 2:
        return None
    shift = frame.bit_depth - 8
    yuv = np.empty((h * 3 // 2, w), np.uint8)
    yuv[:h] = (y[:h, :w] >> shift) if shift else y[:h, :w]
    if frame.chroma is not None and frame.chroma[0].shape[0] * 2 == frame.height:
        cstep = step
        u = frame.chroma[0][::cstep, ::cstep][: h // 2, : w // 2]
        v = frame.chroma[1][::cstep, ::cstep][: h // 2, : w // 2]
        if u.shape != (h // 2, w // 2):
            u = v = np.full((h // 2, w // 2), 128 << shift, frame.luma.dtype)
    else:
        u = v = np.full((h // 2, w // 2), 128 << shift, frame.luma.dtype)
    yuv[h : h + h // 4] = ((u >> shift) if shift else u).reshape(h // 4, w)
    yuv[h + h // 4 :] = ((v >> shift) if shift else v).reshape(h // 4, w)
    picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    if frame.black_level == 0:
        picture = picture.reformat(format="yuvj420p")
    else:  # limited range: JPEG wants full range
        picture = picture.reformat(format="yuvj420p", src_color_range=1, dst_color_range=2)
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"q:v": "5"}
    enc.open()
    packets = enc.encode(picture) + enc.encode(None)
    return b"".join(bytes(p) for p in packets) or None
