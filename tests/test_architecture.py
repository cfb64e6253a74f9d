"""The package's layers import downward only (docs/architecture.md): a lower layer never imports a higher one,
not even inside a function. Every import statement of every module is checked."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tl_lightning"
# lowest first; a module may import its own layer and the layers below it
LAYERS = ["core", "format", "objectives", "rewards", "data", "metrics", "models", "envs", "evaluation", "systems",
          "serving", "cli"]
"""One folder a layer (`tl_lightning/<layer>/`), lowest first; the package's `__init__.py` is the only module
outside them and imports nothing of ours."""


def layer_of(top: str) -> int:
    return LAYERS.index(top)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported tl_lightning top-level name) of every import in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "tl_lightning"]
        for n in names:
            parts = n.split(".")
            if parts[0] == "tl_lightning" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_is_a_folder_and_every_module_is_in_one():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a layer folder: {loose}"
    assert {p.relative_to(PACKAGE).parts[0] for p in MODULES if p.parent != PACKAGE} == set(LAYERS)
    assert all((PACKAGE / layer / "__init__.py").is_file() for layer in LAYERS)
    assert not imports(PACKAGE / "__init__.py")


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent != PACKAGE], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downward_only(path):
    own = layer_of(path.relative_to(PACKAGE).parts[0])
    upward = [f"line {line}: imports tl_lightning.{top} (layer {layer_of(top)} > {own})"
              for line, top in imports(path) if layer_of(top) > own]
    assert not upward, upward


def test_the_checker_sees_function_level_imports(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from tl_lightning.systems.sft import SFTSystem\n")
    assert imports(bad) == [(2, "systems")]
