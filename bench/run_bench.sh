#!/bin/sh
# CPU of avmon vs decode alone vs FFmpeg filters on a synthesized 1080p30 clip (see docs/benchmarks.md).
exec avmon bench --repeat 2 "$@"
