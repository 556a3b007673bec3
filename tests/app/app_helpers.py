"""What the app tests share: where the pages are, how to choose models, and how to read a page's state."""

from functools import lru_cache
from pathlib import Path

from streamlit.testing.v1 import AppTest

RUN_TIMEOUT_S = 120
ROOT = Path(__file__).resolve().parents[2]
# The pair trained on synthetic slices; tests that rely on how those models behave use it by name (the default
# pair in models/ learned from real MRI and may change).
SYNTHETIC = ROOT / "models" / "synthetic"
# The session-state key of the threshold every page shares, and the sidebar's "type a path" choice (ui/state.py).
THRESHOLD = "threshold"
OTHER_PATH = "other"
# A verdict line, or the line a slice the out-of-distribution guard refused gets instead: the default pair may
# refuse a synthetic example.
VERDICTS = ("Tumor likely", "No tumor found", "This does not look like a brain MRI slice")
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


def listed(radio, value) -> bool:
    """Whether a radio offers ``value`` (its options are the labels the user reads)."""
    return radio.format_func(value) in radio.options


def choose_detector(at, path) -> None:
    """Pick a detector by its card's path: from the sidebar's list when it is there, else by typing it."""
    if listed(at.radio(key="sidebar_detector"), str(path)):
        at.radio(key="sidebar_detector").set_value(str(path)).run()
        return
    at.radio(key="sidebar_detector").set_value(OTHER_PATH).run()
    at.text_input(key="sidebar_detector_path").set_value(str(path)).run()


def choose_classifier(at, path) -> None:
    """Pick a type classifier by its card's path: from the sidebar's list when it is there, else by typing it."""
    if listed(at.radio(key="sidebar_classifier"), str(path)):
        at.radio(key="sidebar_classifier").set_value(str(path)).run()
        return
    at.radio(key="sidebar_classifier").set_value(OTHER_PATH).run()
    at.text_input(key="sidebar_classifier_path").set_value(str(path)).run()


def use_synthetic_pair(at) -> None:
    """Choose the synthetic pair in the sidebar, for tests that rely on how those models behave."""
    choose_detector(at, SYNTHETIC / "detector.json")
    choose_classifier(at, SYNTHETIC / "classifier.json")


def captions(at) -> str:
    return "\n".join(element.value for element in at.caption)


def headlines(at) -> list[str]:
    return [element.value for element in at.main.markdown if element.value.startswith("### ")]


def verdict_of(at) -> str:
    shown = headlines(at)
    found = [verdict for verdict in VERDICTS if any(verdict in line for line in shown)]
    assert len(found) == 1, f"expected one verdict, got {shown}"
    return found[0]


def batch_table(at):
    """The Batch page's result table (the page also lists the uploaded files)."""
    return next(frame.value for frame in at.dataframe if "verdict" in frame.value.columns)


def images(at) -> list:
    return list(at.image)


@lru_cache(maxsize=4)
def _cascade(detector: str, classifier: str):
    from brainml.predict import Cascade

    return Cascade.from_paths(detector, classifier)


def expected_verdict(image, scan=None, detector=ROOT / "models" / "detector.json",
                     classifier=ROOT / "models" / "classifier.json") -> str:
    """The verdict line a page must show for ``image`` at the detector card's threshold, from the library itself
    (``scan``: the upload it came from, whose colour the guard weighs)."""
    from brainml.report import verdict_text

    saturation = scan.metadata.get("colour_saturation", 0.0) if scan is not None else 0.0
    diagnosis = _cascade(str(detector), str(classifier)).run([image], colour_saturations=[saturation])[0]
    return verdict_text(diagnosis)


def shown_verdict(at) -> str:
    """The verdict line on the page (exactly one must be there)."""
    verdict_of(at)
    return headlines(at)[0]
