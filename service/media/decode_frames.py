"""Which pictures a video decoder decodes: all of them, or reference frames only.

``reference`` makes FFmpeg drop the pictures no other picture predicts from
(AVDISCARD_NONREF: typically the unreferenced B-frames) before decoding them. Picture
detectors then see every reference frame, enough for conditions that last (black,
freeze, blocking: start and end within a frame or two), for less CPU where the encoder
uses such B-frames (0.60x of a full decode on real camera footage from x264, ~0.99x on
content it coded with few; bench/decode_less.py). A detector that needs every picture
for a while says until when (``Detector.every_frame_until``: ``av_sync`` after a line-up
signal, whose flashes can be one picture; ``freeze`` while a still run is open), and the
reader decodes every picture till then. Set with ``AVMON_DECODE_FRAMES`` (``all`` is the
default) or ``avmon check --decode-frames``. Not the default: under it the suite's
blockiness tests on two moving patterns fail (a scroll's blocking at 25 fps missed,
zoneplate's found 0.7 s late: their scores depend on the pictures being evenly spaced).
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["all", "reference"]
MODES: tuple[Mode, ...] = ("all", "reference")


class DecodeFrames:
    def __init__(self) -> None:
        self.mode: Mode = "all"

    def configure(self, mode: Mode) -> None:
        self.mode = mode

    def reference_only(self) -> bool:
        """Whether a decoder opened now drops non-reference pictures (unless a detector
        asks for every picture: ``MediaReader.decode_every_frame``)."""
        return self.mode == "reference"


POLICY = DecodeFrames()  # one per process: worker processes configure their own
configure = POLICY.configure
reference_only = POLICY.reference_only
