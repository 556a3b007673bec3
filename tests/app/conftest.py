"""AppTest fixtures: the app as Streamlit runs it, from the repository root.

TensorFlow's import and the first model load take several seconds; the models and explainers are cached per
process (st.cache_resource), so only the first test pays for them.
"""

import io
import sys
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from brainml.examples import example_png

ROOT = Path(__file__).resolve().parents[2]
# `streamlit run` puts the app's folder on sys.path; AppTest runs pages from here, so do the same.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUN_TIMEOUT_S = 120
PAGES = {
    "detect": "pages/1_Detect.py",
    "explorer": "pages/2_Threshold_explorer.py",
    "batch": "pages/3_Batch.py",
    "model_card": "pages/4_Model_card.py",
    "lab": "pages/5_Lab.py",
}


def problems(at: AppTest) -> list[str]:
    """Exceptions on the page, and Streamlit's warnings about misused widgets, as text (an empty list is a page
    that rendered cleanly)."""
    found = [f"{element.message}\n{''.join(element.stack_trace)}" for element in at.exception]
    found += [element.value for element in at.warning if "Session State API" in element.value]
    return found


def markdown_text(at: AppTest) -> str:
    return "\n".join(element.value for element in at.markdown)


@pytest.fixture
def app() -> AppTest:
    """The app, its home page run once."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=RUN_TIMEOUT_S)
    at.run()
    assert problems(at) == []
    return at


@pytest.fixture
def open_page(app):
    """``open_page("detect")``: the app switched to a page and run."""

    def switch(name: str) -> AppTest:
        app.switch_page(PAGES[name]).run()
        assert problems(app) == []
        return app

    return switch


@pytest.fixture(scope="session")
def scan_png() -> bytes:
    """A real scan as a user would upload it: the meningioma example as an 8-bit PNG."""
    return example_png("meningioma")


@pytest.fixture(scope="session")
def text_as_png() -> bytes:
    return b"patient list\nthis is not an image, only text saved with a .png name\n" * 4


@pytest.fixture(scope="session")
def zip_of_scans() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("series/glioma.png", example_png("glioma"))
        archive.writestr("series/notumor.png", example_png("notumor"))
    return buffer.getvalue()
