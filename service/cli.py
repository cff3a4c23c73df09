"""The `avmon` command: serve | check | synth | bench | demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOURCE = 3


def _fail(message: str, code: int) -> int:
    print(f"avmon: error: {message}", file=sys.stderr)
    return code


def _parse_thresholds(values: list[str]) -> dict[str, dict[str, Any]]:
    """``--threshold freeze.d=5`` pairs into {"freeze": {"d": 5.0}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        det, dot, param = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--threshold {item!r}: expected DETECTOR.PARAM=VALUE")
        value: Any
        try:
            value = float(raw)
        except ValueError:
            value = raw
        out.setdefault(det, {})[param] = value
    return out


class _ProgressBar:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: float, total: float | None) -> None:
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"\r[{bar:<30}] {done:7.1f}/{total:.1f} s"
        else:
            line = f"\r{done:7.1f} s analysed"
        sys.stderr.write(line)
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def cmd_check(args: argparse.Namespace) -> int:
    from service.detectors.registry import DetectorConfigError
    from service.media.errors import SourceError
    from service.pipeline.check import check

    try:
        thresholds = _parse_thresholds(args.threshold or [])
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    selection = args.detectors.split(",") if args.detectors else None
    bar = _ProgressBar() if (sys.stderr.isatty() and not args.json) else None
    try:
        report = check(
            args.source,
            detectors=selection,
            thresholds=thresholds,
            duration=args.duration,
            progress=bar,
            reference_only=args.decode_frames == "reference",
        )
    except DetectorConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SourceError as exc:
        return _fail(str(exc), EXIT_SOURCE)
    finally:
        if bar is not None:
            bar.close()
    if report.ended_by:
        print(f"avmon: warning: input ended early: {report.ended_by}", file=sys.stderr)
    for name, (count, first) in report.detector_errors.items():
        print(
            f"avmon: warning: detector {name} failed on {count} inputs and skipped them "
            f"(first: {first}); its results are incomplete",
            file=sys.stderr,
        )
    if report.udp_drops:
        print(
            f"avmon: warning: the kernel dropped {report.udp_drops} UDP datagrams "
            "(receive buffer full: the analysis fell behind the stream)",
            file=sys.stderr,
        )
    if args.json:
        json.dump(report.as_json(), sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    _print_table(report.as_json(), report.decode_errors)
    return EXIT_OK


def _print_table(doc: dict[str, Any], decode_errors: int) -> None:
    v, a = doc["video"], doc["audio"]
    print(f"source    {doc['source']}")
    print(f"duration  {doc['duration']:.2f} s")
    if v:
        print(
            f"video     {v['codec']} {v['width']}x{v['height']} {v['fps']:g} fps, "
            f"{v['frames']} frames"
        )
    if a:
        print(f"audio     {a['codec']} {a['sample_rate']} Hz, {a['channels']} ch")
    if decode_errors:
        print(f"errors    {decode_errors} damaged packets")
    defects = doc["defects"]
    if not defects:
        print("defects   none")
        return
    print(f"defects   {len(defects)}")
    print(f"  {'type':<18}{'start':>9}{'end':>9}{'length':>9}  details")
    for d in defects:
        length = d["end"] - d["start"]
        details = " ".join(f"{k}={v}" for k, v in d["details"].items())
        print(f"  {d['type']:<18}{d['start']:>9.2f}{d['end']:>9.2f}{length:>9.2f}  {details}")


def cmd_synth(args: argparse.Namespace) -> int:
    from service.synth import SynthSpec, parse_injections, synthesize

    try:
        w, _, h = args.size.partition("x")
        spec = SynthSpec(
            out=Path(args.out),
            duration=args.duration,
            width=int(w),
            height=int(h),
            fps=args.fps,
            content=args.content,
            audio=args.audio,
            injections=parse_injections(args.inject),
            seed=args.seed,
        )
        truth = synthesize(spec)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    print(f"wrote {args.out} ({len(truth['defects'])} defects, truth in {args.out}.json)")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from service.benchmark import run_bench

    return run_bench(args)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from service.api.app import create_app
    from service.config import Settings

    try:
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "AVMON_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        return _fail(f"{field}: {err['msg']}", EXIT_USAGE)
    if not args.verbose:  # AVMON_LOG_LEVEL, as under `uvicorn --factory` (the pods)
        logging.getLogger().setLevel(settings.log_level.upper())
    # One worker per process: metrics stay per pod, the HPA scales pods. SIGTERM starts
    # the cluster handoff at once (see service.api.app); open event-feed connections get
    # one second to close.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level="info" if args.verbose else "warning",
        timeout_graceful_shutdown=1,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avmon", description="Monitor live audio/video streams.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="analyse a file (or the first seconds of a live source)")
    c.add_argument("source", help="file path or URL (udp://, rtp://, rtsp://, rtmp://, http(s)://)")
    c.add_argument("--json", action="store_true", help="print one JSON document")
    c.add_argument("--detectors", help="comma-separated detector or group names")
    c.add_argument("--duration", type=float, help="analyse only the first S seconds")
    c.add_argument(
        "--threshold", action="append", metavar="DET.PARAM=VALUE", help="override a threshold"
    )
    c.add_argument(
        "--decode-frames",
        choices=["all", "reference"],
        default=os.environ.get("AVMON_DECODE_FRAMES", "all"),
        help="reference: skip non-reference pictures (default: $AVMON_DECODE_FRAMES or all)",
    )
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("synth", help="write a test clip with known defects")
    s.add_argument("out", help="output .ts path (ground truth goes to OUT.json)")
    s.add_argument("--duration", type=float, default=30.0)
    s.add_argument("--inject", default="", help="e.g. black@8-12,freeze@18-23,silence@30-33")
    s.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--content", default="scene", help="scene | noise | lowlight | lineup")
    s.add_argument("--audio", default="tone", help="tone | noise | speech | lineup")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_synth)

    b = sub.add_parser("bench", help="pipeline CPU cost vs decode alone vs FFmpeg filters")
    b.add_argument("--source", help="clip to use (default: synthesize 1080p30)")
    b.add_argument("--duration", type=float, default=20.0, help="synthesized clip length")
    b.add_argument("--size", default="1920x1080")
    b.add_argument("--repeat", type=int, default=1, help="measure each variant N times")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser("serve", help="run the service (embedded unless AVMON_REDIS_URL is set)")
    v.add_argument("--host", help="listen address (default AVMON_HOST or 0.0.0.0)")
    v.add_argument("--port", type=int, help="listen port (default AVMON_PORT or 8080)")
    v.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="serve, feed a synthetic live stream with defects, watch")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: never)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
