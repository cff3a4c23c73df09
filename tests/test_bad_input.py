"""Damaged, truncated, empty, garbage and unreachable sources: a clear one-line error or
a defect, a meaningful exit code, never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from service.media.decoder import MediaReader
from tests.conftest import ClipFactory, run_avmon

TS = 188


def _pes_pts(pkt: bytes) -> float | None:
    """PTS (seconds) of a PES header starting in this TS packet's payload, if any."""
    afc = (pkt[3] >> 4) & 3
    off = 4 + (1 + pkt[4] if afc & 2 else 0)
    pes = pkt[off:]
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not (pes[7] & 0x80):
        return None
    p = pes[9:14]
    value = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
    return value / 90000


def flip_payload(src: Path, dst: Path, start: float, end: float) -> int:
    """Flip bytes in the payload of the video PID's TS packets whose PES PTS (relative
    to the first) is in [start, end). Headers are left intact. Returns packets damaged."""
    with MediaReader(str(src)) as reader:
        pid = reader.video_stream.id
    data = bytearray(src.read_bytes())
    first: float | None = None
    current: float | None = None
    damaged = 0
    for i in range(0, len(data) - TS + 1, TS):
        pkt = data[i : i + TS]
        if ((pkt[1] & 0x1F) << 8 | pkt[2]) != pid:
            continue
        if pkt[1] & 0x40:  # payload unit start: a new PES (a new frame)
            pts = _pes_pts(bytes(pkt))
            if pts is not None:
                first = pts if first is None else first
                current = pts - first
                continue  # keep the PES header itself intact
        if current is not None and start <= current < end and damaged % 2 == 0:
            for k in range(40, TS, 13):
                data[i + k] ^= 0xFF
        if current is not None and start <= current < end:
            damaged += 1
    dst.write_bytes(bytes(data))
    return damaged


def check(path: Path) -> tuple[int, dict[str, Any] | None, str]:
    proc = run_avmon("check", str(path), "--json", timeout=120)
    doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, doc, proc.stderr


def test_flipped_payload_bytes_raise_block_corruption_over_the_damage(
    make_clip: ClipFactory, tmp_path: Path
) -> None:
    clean, _ = make_clip("", duration=12.0)
    bad = tmp_path / "flipped.ts"
    assert flip_payload(clean, bad, 5.2, 6.0) > 10
    code, doc, err = check(bad)
    assert code == 0, err
    assert doc is not None
    corrupt = [d for d in doc["defects"] if d["type"] == "block_corruption"]
    assert len(corrupt) == 1, doc["defects"]
    # Damage starts at the first damaged frame and lasts until the next keyframe
    # (synth puts one every 2 s), since predicted frames carry it on.
    assert abs(corrupt[0]["start"] - 5.2) <= 0.1
    assert abs(corrupt[0]["end"] - 6.0) <= 0.1
    assert "Traceback" not in err


def test_clean_clip_has_no_block_corruption(make_clip: ClipFactory) -> None:
    clean, _ = make_clip("", duration=12.0)
    code, doc, _ = check(clean)
    assert code == 0 and doc is not None
    assert doc["defects"] == []


def test_truncated_file_is_analysed_up_to_the_cut(make_clip: ClipFactory, tmp_path: Path) -> None:
    clean, _ = make_clip("", duration=12.0)
    cut = tmp_path / "cut.ts"
    data = clean.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 77])  # mid-packet, mid-frame
    code, doc, err = check(cut)
    assert code == 0, err
    assert doc is not None and 3.0 < doc["duration"] < 9.0
    assert "Traceback" not in err


def _one_line_error(code: int, err: str) -> str:
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avmon: error: "), err
    return lines[0]


def test_zero_length_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    code, _, err = check(empty)
    assert "empty file" in _one_line_error(code, err)


def test_garbage_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ts"
    junk.write_bytes(bytes(range(256)) * 4000)
    code, _, err = check(junk)
    assert "not a recognised audio/video stream" in _one_line_error(code, err)


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = check(tmp_path / "nope.ts")
    assert "no such file" in _one_line_error(code, err)


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connections are refused


def test_url_that_refuses_connections() -> None:
    for url in (
        f"http://127.0.0.1:{_refused_port()}/live.ts",
        f"rtsp://127.0.0.1:{_refused_port()}/x",
    ):
        proc = run_avmon("check", url, "--json", timeout=60)
        line = _one_line_error(proc.returncode, proc.stderr)
        assert "127.0.0.1" in line and "refused" in line.lower(), line


def test_unsupported_scheme() -> None:
    proc = run_avmon("check", "srt://127.0.0.1:9000", timeout=30)
    assert "unsupported source scheme 'srt'" in _one_line_error(proc.returncode, proc.stderr)
