"""The shape of the tree: which layer imports which, module sizes, typed results, citations.

docs/DESIGN.md describes the layers; these tests keep the code to it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"

#: Layer -> top-level modules it must never import (statically, anywhere in the file).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "engine": ("app", "ui", "app_pages", "dashboard", "streamlit"),
    "app": ("ui", "app_pages", "dashboard", "streamlit"),
    "ui": ("app_pages", "dashboard", "tensorflow", "keras", "cv2"),
    "app_pages": ("tensorflow", "keras", "cv2"),
    "dashboard.py": ("tensorflow", "keras", "cv2"),
}
MAX_LINES = 500


def _files(layer: str) -> list[Path]:
    path = ROOT / layer
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in ``path`` (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down_the_layers(layer):
    bad = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & set(FORBIDDEN[layer])) for p in _files(layer)
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_dashboard_process_loads_no_tensorflow_and_no_opencv():
    """Importing the Streamlit glue and every app module keeps TF, Keras and cv2 out."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for layer in ("ui", "app")
        for p in _files(layer)
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted({'tensorflow', 'keras', 'cv2'} & set(sys.modules))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _long_module_reasons() -> dict[str, str]:
    """The modules docs/DESIGN.md allows over the size limit, with the reason it gives."""
    text = DESIGN.read_text()
    section = text.split("## Modules over 500 lines", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([\w/.]+\.py)` \| ([^|]*\S[^|]*) \|$", section, re.M))


def test_modules_stay_small_unless_design_says_why():
    allowed = _long_module_reasons()
    long = {
        str(p.relative_to(ROOT)): n
        for layer in ("engine", "app", "ui", "app_pages")
        for p in _files(layer)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert sorted(set(long) - set(allowed)) == []
    # and the list stays true: every module it names exists and is still long
    assert sorted(set(allowed) - set(long)) == []


def _public_functions(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def test_public_functions_are_typed_and_never_return_any():
    untyped, any_result = [], []
    for layer in ("engine", "app", "ui"):
        for path in _files(layer):
            for name, fn in _public_functions(path):
                if name.split(".")[-1].startswith("_"):
                    continue
                where = f"{path.relative_to(ROOT)}:{name}"
                if fn.returns is None:
                    untyped.append(where)
                elif ast.unparse(fn.returns) in {"Any", "typing.Any"}:
                    any_result.append(where)
    assert untyped == []
    assert any_result == []


def test_every_house_rule_and_seed_cited_is_in_the_design_doc():
    design = DESIGN.read_text()
    rules = set(re.findall(r"^(\d+)\. ", design.split("## House rules", 1)[1], re.M))
    seeds = set(re.findall(r"\*\*seed (\d{3})\*\*", design))
    cited_rules: set[str] = set()
    cited_seeds: set[str] = set()
    for layer in ("engine", "app", "ui", "app_pages", "bench", "dashboard.py"):
        for path in _files(layer):
            text = path.read_text()
            cited_rules |= set(re.findall(r"[Hh]ouse rules? (\d+)", text))
            cited_seeds |= set(re.findall(r"\b[Ss]eed[- ](\d{3})\b", text))
    assert cited_rules and cited_seeds  # the scan finds what it looks for
    assert sorted(cited_rules - rules) == []
    assert sorted(cited_seeds - seeds) == []


def test_documents_named_in_the_code_exist():
    missing = []
    for layer in ("engine", "app", "ui", "app_pages", "bench", "dashboard.py"):
        for path in _files(layer):
            for doc in re.findall(r"\b(docs/[\w-]+\.md|[A-Z][A-Z_]*\.md)\b", path.read_text()):
                if not (ROOT / doc).exists() and not (ROOT / "docs" / doc).exists():
                    missing.append(f"{path.relative_to(ROOT)}: {doc}")
    assert missing == []
