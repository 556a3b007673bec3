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

from app_helpers import PAGES, RUN_TIMEOUT_S, problems
from brainml.examples import example_png

ROOT = Path(__file__).resolve().parents[2]
# `streamlit run` puts the app's folder on sys.path; AppTest runs pages from here, so do the same.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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


@pytest.fixture(scope="session")
def nifti_volume() -> bytes:
    """A small gzipped NIfTI volume: five example slices stacked along z."""
    import gzip

    import nibabel
    import numpy as np

    from brainml.examples import EXAMPLES, example_case

    slices = [example_case(example.key, size=96).image for example in (*EXAMPLES, EXAMPLES[0])]
    volume = np.stack(slices, axis=-1).astype(np.float32)
    image = nibabel.Nifti1Image(volume, affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    return gzip.compress(image.to_bytes())
