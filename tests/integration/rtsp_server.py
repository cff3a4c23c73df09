"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0, through python3-gi) serving an MPEG-TS file at
``rtsp://127.0.0.1:PORT/live``, as RTP/MP2T paced at real time by the file's own
timestamps, looping. Run by the system Python (which has ``gi``), not the project's venv:

    /usr/bin/python3 tests/integration/rtsp_server.py CLIP.ts PORT

Prints ``ready`` once it listens.
"""

from __future__ import annotations

import sys

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402


def main(port: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # multifilesrc loops the file; tsparse timestamps it from the PCR, so the RTP sink's
    # clock sync paces it as a live feed.
    # A live source (is-live): the server does not preroll the stream ahead of real
    # time, and a stopped server process sends nothing, as a dead camera.
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,"
        "height=180,framerate=30/1 ! openh264enc gop-size=30 ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1])
