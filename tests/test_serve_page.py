"""The page in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python).

`.ci/run` installs Chromium when it is missing; here the test is skipped only when no Chromium
binary can be found. Set DEBAND_SERVE_SCREENSHOT=docs/serve.png to keep the screenshot.
"""

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn, python-multipart) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")

from helpers.server import start_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXAMPLE = Path(__file__).parent.parent / "examples" / "sunset-banded.png"
pytestmark = [pytest.mark.slow,  # Chromium
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                 reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")]


@pytest.fixture
def sunset(tmp_path) -> Path:
    """256x144 pixels of the bundled banded sunset, around the sun, as they are stored."""
    big = cv2.imread(str(EXAMPLE), cv2.IMREAD_UNCHANGED)
    path = tmp_path / "sunset.png"
    cv2.imwrite(str(path), big[200:344, 520:776])
    return path


@pytest.fixture
def served():
    proc, url = start_server("--weights", str(Path(__file__).parent.parent / "src/deband/weights/default.safetensors"))
    yield url
    proc.terminate()
    proc.wait(30)


def wait_until(page, expression: str, seconds: float = 30) -> None:
    """Poll a JavaScript expression (the page's CSP forbids wait_for_function's eval)."""
    end = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < end, f"timed out waiting for {expression}"
        time.sleep(0.05)


def split_state(page) -> tuple[int, str]:
    """(the slider's aria-valuenow, the before image's computed clip-path)."""
    return (int(page.get_attribute("#handle", "aria-valuenow")),
            page.evaluate("getComputedStyle(document.getElementById('before')).clipPath"))


def test_page_in_chromium(served, sunset, tmp_path):
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(served)
            page.locator("#steps").fill("1")
            page.set_input_files("#files", str(sunset))
            page.wait_for_selector("body[data-result]:not([data-result=''])", state="attached", timeout=60_000)
            wait_until(page, """['before', 'after', 'heat-before', 'heat-after'].every(
                id => { const im = document.getElementById(id); return im.complete && im.naturalWidth === 256; })""")
            assert "256×144" in page.inner_text("#info") and "1 step," in page.inner_text("#info")

            # the slider, by keyboard and by mouse
            start = split_state(page)
            assert start[0] == 50
            page.focus("#handle")
            page.keyboard.press("Home")
            assert split_state(page)[0] == 0 and split_state(page)[1] != start[1]
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            assert split_state(page)[0] == 4
            box = page.locator("#stage").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
            assert 73 <= split_state(page)[0] <= 77
            at_before = page.locator("#stage").screenshot()
            page.keyboard.press("End")  # all before
            assert split_state(page)[0] == 100 and page.locator("#stage").screenshot() != at_before

            # the 16-bit download
            with page.expect_download() as info:
                page.click("#dl16")
            download = info.value
            assert download.suggested_filename == "sunset-deband.png"
            got = cv2.imread(download.path(), cv2.IMREAD_UNCHANGED)
            assert got.dtype == np.uint16 and got.shape == (144, 256, 3)

            page.focus("#handle")
            for _ in range(25):
                page.keyboard.press("ArrowLeft")
            shot = tmp_path / "serve.png"
            page.screenshot(path=str(shot))
            stage = page.locator("#stage").bounding_box()
            heat_in, heat_out = (page.locator(f"#heat-{w}").bounding_box() for w in ("before", "after"))
            cambi_in, cambi_out = page.inner_text("#cambi-before"), page.inner_text("#cambi-after")

            # two more at once: a bad one is reported with the server's one-line error, the other is done
            (tmp_path / "notes.png").write_text("not a picture")
            page.set_input_files("#files", [str(tmp_path / "notes.png"), str(sunset)])
            page.wait_for_selector(".queue li:nth-child(3) .item.done", timeout=60_000)
            assert page.locator(".queue .item").count() == 3
            page.click(".queue .item.error")
            assert page.inner_text("#status") == "notes.png: not an image deband can read"
        finally:
            browser.close()
    assert all(url.startswith(served) for url in requests), requests  # nothing from outside

    picture = cv2.imread(str(shot))[..., ::-1]  # (800, 1280, 3) RGB
    assert picture.shape == (800, 1280, 3)

    def crop(b: dict) -> np.ndarray:  # a bounding box of the screenshot, less a 2-pixel border
        return picture[int(b["y"]) + 2 : int(b["y"] + b["height"]) - 2, int(b["x"]) + 2 : int(b["x"] + b["width"]) - 2]

    view = crop(stage).astype(np.float32)
    assert stage["width"] > 600  # shown large
    shown, given = view.mean(axis=(0, 1)), cv2.imread(str(sunset))[..., ::-1].mean(axis=(0, 1))
    assert np.abs(shown - given).max() < 10, (shown, given)  # the picture is what is on show
    warm = lambda b: ((crop(b)[..., 0] > 180) & (crop(b)[..., 2] < 120)).mean()  # noqa: E731 - inferno's oranges
    assert warm(heat_in) > 0.2 and warm(heat_out) < warm(heat_in) / 5  # the banding the model took away
    assert float(cambi_out) < float(cambi_in) / 10
    if os.environ.get("DEBAND_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DEBAND_SERVE_SCREENSHOT"])
