"""The app served by `streamlit run` on a free local port, and Debian's chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Without it the browser tests skip and
say why; everything else they need is in requirements-dev.txt.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from scripts.screenshots import CHROMIUM_ARGS, running_app  # noqa: E402 - the one way the project starts the app

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed: the browser tests drive Debian's chromium "
                    "(apt-get install chromium); Playwright's own browser download is not used.")
    return CHROMIUM


@pytest.fixture(scope="session")
def app_url(chromium_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    try:
        with running_app(log_path=log_path) as url:
            yield url
    except RuntimeError as error:
        pytest.fail(f"{error}:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    yield page
    context.close()
