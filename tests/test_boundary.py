"""The architecture's boundary: the library never imports streamlit; pages never import tensorflow or keras, not
even through what they import (TensorFlow loads when a model is first run, not when a page is opened)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").glob("*.py"))]
HEAVY = ("tensorflow", "keras", "tf_keras_vis")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def page_imports(path: Path) -> str:
    """The page's own top-level import statements, as source."""
    text = path.read_text()
    return "\n".join(ast.get_source_segment(text, node) for node in ast.parse(text).body
                     if isinstance(node, (ast.Import, ast.ImportFrom)))


def heavy_modules_after(code: str) -> list[str]:
    """Which of :data:`HEAVY` are loaded after running ``code`` in a fresh interpreter at the repository root."""
    probe = f"{code}\nimport sys\nprint(','.join(name for name in {HEAVY!r} if name in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    return [name for name in completed.stdout.strip().split(",") if name]


def test_library_does_not_import_streamlit():
    offenders = [p.name for p in (ROOT / "brainml").rglob("*.py") if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_pages_do_not_import_tensorflow_or_keras():
    offenders = [p.name for p in PAGES if imported_modules(p) & set(HEAVY)]
    assert offenders == []


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_what_a_page_imports_loads_no_tensorflow(page):
    assert heavy_modules_after(page_imports(page)) == []


def test_the_probe_sees_tensorflow_when_a_page_would_pull_it_in():
    # The check above must be able to fail: importing the explainer's engine loads TensorFlow.
    assert "tensorflow" in heavy_modules_after("from brainml.explain.core import heatmap")
