"""What the app tests share: where the pages are, and how to read a page's state."""

from streamlit.testing.v1 import AppTest

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
