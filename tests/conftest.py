"""Shared fixtures: test media is synthesized once per session by `avmon synth`'s code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.synth import SynthSpec, parse_injections, synthesize

ClipFactory = Callable[..., tuple[Path, dict[str, Any]]]


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFactory:
    """Build (once per session) a clip with known defects; returns (path, ground truth)."""
    root = tmp_path_factory.mktemp("media")
    cache: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}

    def make(
        inject: str = "",
        duration: float = 20.0,
        size: str = "640x360",
        content: str = "scene",
        audio: str = "tone",
        seed: int = 1,
    ) -> tuple[Path, dict[str, Any]]:
        key = (inject, duration, size, content, audio, seed)
        if key not in cache:
            w, h = (int(x) for x in size.split("x"))
            out = root / f"clip{len(cache)}.ts"
            spec = SynthSpec(
                out=out,
                duration=duration,
                width=w,
                height=h,
                content=content,
                audio=audio,
                injections=parse_injections(inject),
                seed=seed,
            )
            synthesize(spec)
            cache[key] = (out, json.loads(Path(str(out) + ".json").read_text()))
        return cache[key]

    return make


def run_avmon(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run the real `avmon` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
