"""Screenshots of every page of the app, for the README and for checking the layout by eye.

Starts ``streamlit run streamlit_app.py`` on a free local port, drives Debian's chromium through Playwright
(never a browser that Playwright downloads), opens each page, and writes ``docs/screenshots/NAME.png``. On the
Detect page it opens an example from the home page, so the verdict and the heatmap are on screen, and then the
example volume, so its slice chart is too.

    python scripts/screenshots.py [--out docs/screenshots] [--width 1400] [--only detect_volume ...]

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``pip install playwright``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# TensorFlow's import and the first model load take a while on a small CPU.
START_TIMEOUT_S = 180
RUN_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_app(port: int | None = None, log_path: Path | None = None):
    """``streamlit run streamlit_app.py`` on a free port; yields the base URL and stops the server afterwards."""
    port = port or free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {server.returncode} before serving the app")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"the app did not answer on {url} within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        if log_path:
            log.close()
        if log is not subprocess.DEVNULL:
            log.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


SCRIPT_STATE = ("() => { const app = document.querySelector(\"[data-testid='stApp']\");"
                " return app ? app.getAttribute('data-test-script-state') : null; }")


def wait_until_idle(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until the script run that the last action started has finished and its output is drawn.

    An action's rerun starts a moment after the action, so first give it up to a second to start (a run that is
    already over by then is fine), then wait for it to end.
    """
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    try:
        page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'running'", timeout=1000)
    except Exception:  # Playwright's TimeoutError: the run was quicker than the poll, or none was needed
        pass
    page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'notRunning'", timeout=timeout_ms)
    # Images, charts and fonts arrive a moment after the run ends.
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
    page.wait_for_timeout(800)


def capture(page, path: Path) -> None:
    """A full-length screenshot: Streamlit scrolls inside its main block, so grow the viewport to fit it first."""
    height = page.evaluate(
        "() => { const main = document.querySelector(\"[data-testid='stMain']\") || document.body;"
        " return Math.max(main.scrollHeight, document.body.scrollHeight); }"
    )
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 40, 900), 6000)})
    page.wait_for_timeout(600)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": 900})


def open_home(page, url: str) -> None:
    page.goto(url)
    wait_until_idle(page)


def open_detect(page, url: str) -> None:
    """Detect, opened the way a new user would: an example from the home page."""
    open_home(page, url)
    page.get_by_role("button", name="Open in Detect").first.click()
    page.wait_for_url("**/Detect", timeout=RUN_TIMEOUT_MS)
    wait_until_idle(page)
    page.get_by_text("P(tumor)").first.wait_for(timeout=RUN_TIMEOUT_MS)


def open_detect_volume(page, url: str) -> None:
    """Detect on the example volume: its verdict line and slice chart, on its most suspicious slice."""
    page.goto(f"{url}/Detect")
    wait_until_idle(page)
    page.locator(".st-key-detect_example").click()
    page.get_by_role("option", name=re.compile("volume")).click()  # the one example that is a whole volume
    # Every slice is scored before the page draws the chart.
    page.locator(".st-key-detect_strip .js-plotly-plot").wait_for(timeout=RUN_TIMEOUT_MS)
    wait_until_idle(page)
    page.evaluate("() => document.activeElement.blur()")  # no focus ring left on the example box


def page_opener(path: str):
    def open_page(page, url: str) -> None:
        page.goto(f"{url}/{path}")
        wait_until_idle(page)
    return open_page


def open_batch(page, url: str) -> None:
    """Batch on the built-in examples, with their thumbnails and heatmaps."""
    page_opener("Batch")(page, url)
    page.get_by_text("Try it on the built-in examples").click()
    wait_until_idle(page)
    page.get_by_text("Show thumbnails with heatmaps").click()
    wait_until_idle(page)


# Screenshot name -> how to bring its page on screen, in the order they are taken (one browser session for all).
SHOTS = {
    "home": open_home,
    "detect": open_detect,
    "detect_volume": open_detect_volume,
    "explorer": page_opener("Threshold_explorer"),
    "model_card": page_opener("Model_card"),
    "lab": page_opener("Lab"),
    "batch": open_batch,
}


def take_all(out: Path, width: int = 1400, names: list[str] | None = None) -> list[Path]:
    """Write ``out/NAME.png`` for each of ``names`` (default: every one of :data:`SHOTS`)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with running_app() as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": width, "height": 900})
        for name in names or SHOTS:
            SHOTS[name](page, url)
            written.append(out / f"{name}.png")
            capture(page, written[-1])
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=1400, help="browser width in pixels")
    parser.add_argument("--only", nargs="+", choices=list(SHOTS), metavar="NAME",
                        help=f"take only these screenshots ({', '.join(SHOTS)}); default: all of them")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).", file=sys.stderr)
        return 1
    for path in take_all(Path(args.out), args.width, args.only):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
