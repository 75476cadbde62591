"""Tested as a person would: `framewire demo` running, its preview open in headless Chromium.

The test reads what the page shows (the stream list's figures, and which
boxes it drew where), freezes it, takes a screenshot, and checks the pixels
of the screenshot: the box colour must be on the box's edge where the
server's detection says the object is. FRAMEWIRE_SAVE_PREVIEW=PATH keeps the
screenshot (docs/preview.png comes from here).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.harness import Process, framewire_command, running, wait_until
from tests.preview.browser import Chromium, chromium, find_chromium

pytestmark = pytest.mark.slow

CHROMIUM = find_chromium()


def box_edge_pixels(image: np.ndarray, state: dict[str, Any], detection: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The screenshot's pixels along the left edge of a detection's box (a band 7 px wide)."""
    canvas = state["canvas"]
    x_min, y_min, _, y_max = detection["box"]
    x = round(canvas["left"] + x_min * canvas["width"])
    top = round(canvas["top"] + y_min * canvas["height"])
    bottom = round(canvas["top"] + y_max * canvas["height"])
    # The middle half of the edge: clear of the label drawn at the top.
    rows = slice(top + (bottom - top) // 4, bottom - (bottom - top) // 4 + 1)
    return image[rows, max(0, x - 3) : x + 4]


def hex_bgr(colour: str) -> np.ndarray:
    value = int(colour.lstrip("#"), 16)
    return np.array([value & 0xFF, (value >> 8) & 0xFF, value >> 16])


def page_ready(browser: Chromium) -> dict[str, Any] | None:
    state: dict[str, Any] | None = browser.evaluate(
        "window.framewirePreview ? window.framewirePreview.state() : null"
    )
    if not state or not state["rows"] or state["drawn"] is None:
        return None
    row = dict(zip(state["header"], state["rows"][0], strict=True))
    figures_in = re.fullmatch(r"\d+\.\d", row["fps in"]) and float(row["fps in"]) > 0
    latency = re.fullmatch(r"\d+ ms", row["e2e p50"])
    tall = [d for d in state["drawn"]["detections"] if (d["box"][3] - d["box"][1]) > 0.08]
    if figures_in and latency and tall:
        return state
    return None


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/setup.sh installs it where apt works)",
)
def test_the_demo_preview_in_a_browser(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    demo = Process(framewire_command("demo", "--frames", "600", "--quiet"))
    with running(demo):
        url = demo.wait_for_line(r"preview: (http://\S+)", timeout=180)[1]
        demo.wait_for_line(r"agent: streaming", timeout=60)
        with chromium(CHROMIUM) as browser:
            browser.open(url)
            ready: list[dict[str, Any]] = []

            def shown() -> bool:
                state = page_ready(browser)
                if state is not None:
                    ready.append(state)
                return state is not None

            wait_until(shown, 120, "the page to show figures and a frame with boxes", step=0.5)
            # Freeze the page so the screenshot shows exactly what state() describes.
            state = browser.evaluate("window.framewirePreview.pause()")
            png = browser.screenshot()
        demo.signal(signal.SIGINT)
        assert demo.wait(120) == 0, demo.text()

    row = dict(zip(state["header"], state["rows"][0], strict=True))
    assert row["stream"] == "demo"
    assert float(row["fps in"]) > 0
    assert float(row["fps processed"]) > 0
    assert int(row["e2e p50"].removesuffix(" ms")) > 0
    assert int(row["e2e p95"].removesuffix(" ms")) >= int(row["e2e p50"].removesuffix(" ms"))
    assert row["tracking"] == "on"

    drawn = state["drawn"]
    assert (drawn["width"], drawn["height"]) == (640, 480)
    assert any(d["track_id"] is not None for d in drawn["detections"])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    checked = 0
    for detection in drawn["detections"]:
        if detection["box"][3] - detection["box"][1] <= 0.08:
            continue  # too short to have an edge clear of labels
        band = box_edge_pixels(image, state, detection).astype(int)
        close = np.abs(band - hex_bgr(detection["colour"])).max(axis=2) <= 40
        # Most rows of the edge carry the box's colour (others may be covered
        # by an overlapping box or label).
        rows_with_colour = close.any(axis=1).mean()
        assert rows_with_colour >= 0.6, (detection, rows_with_colour)
        checked += 1
    assert checked >= 1
    # And the colour is the drawing's, not the video's: away from every box it is rare.
    canvas = state["canvas"]
    video = image[
        int(canvas["top"]) : int(canvas["top"] + canvas["height"]),
        int(canvas["left"]) : int(canvas["left"] + canvas["width"]),
    ].astype(int)
    colour = hex_bgr(drawn["detections"][0]["colour"])
    share = (np.abs(video - colour).max(axis=2) <= 40).mean()
    assert share < 0.05, share

    saved = os.environ.get("FRAMEWIRE_SAVE_PREVIEW")
    if saved:
        Path(saved).write_bytes(png)
    (tmp_path / "preview.png").write_bytes(png)
