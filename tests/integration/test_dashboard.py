"""The dashboard in a real browser (issue 3): `avmon serve` in a child process, a clip with
a black stretch registered as a live file source, and the page opened in headless Chromium
(Debian's `chromium`, driven by Playwright). The screenshot is kept as a CI artifact."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.synth import SynthSpec, parse_injections, synthesize
from tests.integration.service_proc import Service, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
STREAM = "lobby cam"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} missing: install Debian's chromium package (scripts/setup does)",
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, AVMON_ALLOW_FILE_SOURCES="true", AVMON_NO_SIGNAL_S="5")
    try:
        yield svc
    finally:
        svc.stop()


def _open_black(service: Service) -> list[dict[str, Any]]:
    status, defects = service.request("GET", "/api/v1/defects?open=true")
    assert status == 200, defects
    return [d for d in defects if d["type"] == "black" and d["stream_name"] == STREAM]


def test_dashboard_shows_stream_and_open_defect(service: Service, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    clip = tmp_path / "lobby.ts"
    synthesize(
        SynthSpec(
            out=clip,
            duration=20,
            width=640,
            height=360,
            injections=parse_injections("black@1-12"),
        )
    )
    status, stream = service.request(
        "POST",
        "/api/v1/streams",
        {"name": STREAM, "url": str(clip), "pace": "live", "loop": True},
    )
    assert status == 201, stream
    assert wait_for(lambda: _open_black(service), timeout=20), service.log.read_text()

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(service.base + "/")

            tile = page.locator(f'.tile[data-stream="{stream["id"]}"]')
            expect(tile).to_contain_text(STREAM, timeout=15_000)
            expect(tile.locator(".open")).to_contain_text("black", timeout=15_000)
            # Loudness per stream (EBU R128): integrated level and true peak on the tile.
            expect(tile.locator(".loud")).to_contain_text("LUFS", timeout=15_000)
            expect(tile.locator(".loud")).to_contain_text("dBTP")

            row = page.locator("#defects tr", has_text=STREAM).filter(has_text="black")
            expect(row.first).to_be_visible(timeout=15_000)
            expect(row.first).to_contain_text("open")

            thumb = tile.locator("img")
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0",
                arg=thumb.element_handle(),
                timeout=15_000,
            )
            assert thumb.evaluate("img => img.naturalWidth") > 0
            expect(page.locator("#feed")).to_have_text("feed: live", timeout=10_000)

            page.screenshot(path=str(shot), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert shot.stat().st_size > 0
    assert os.access(shot, os.R_OK)
