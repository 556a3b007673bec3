"""The architecture's boundary: the library never imports streamlit; pages never import tensorflow or keras."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_does_not_import_streamlit():
    offenders = [p.name for p in (ROOT / "brainml").rglob("*.py") if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_pages_do_not_import_tensorflow_or_keras():
    pages = [ROOT / "streamlit_app.py", *(ROOT / "pages").glob("*.py")]
    offenders = [p.name for p in pages if p.exists() and imported_modules(p) & {"tensorflow", "keras", "tf_keras_vis"}]
    assert offenders == []
