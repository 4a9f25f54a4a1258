"""Imports only go down the layers documented in docs/architecture.md (parsed with ast, nothing imported).

A module may import modules of its own layer or of a lower one. ``edge/`` never
imports ``export/``, torch or transformers (the runtime stays free of the
offline export step). Imports under ``if TYPE_CHECKING:`` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. The first matching prefix (most specific) decides a module's layer.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "edge", "edge.types", "edge.errors", "edge.atomic", "edge.files", "edge.plugins", "edge.processes", "edge.realtime",
        "edge.scoring", "edge.tiling", "edge.regions", "edge.verdict", "edge.bank", "edge.bank_fit",
        "edge.config", "edge.security", "edge.imageio", "edge.foreground", "edge.aspect", "edge.words",
        "edge.prototypes", "edge.overlay", "edge.outputs", "edge.generation",
    ),
    "adapters": (
        "edge.expert", "edge.sources", "edge.mqtt", "edge.archive", "edge.inspector", "edge.devtools",
    ),
    "lane": ("edge.lane",),
    "services": (
        "edge.assistant", "edge.calibration", "edge.evaluation", "edge.plant", "edge.preflight",
    ),
    "station": ("edge.station",),
    "commands": ("edge.commands",),
    "cli": ("edge.cli", "edge.cli_main"),
}
ORDER = list(LAYERS)
FORBIDDEN_IN_EDGE = ("export", "torch", "transformers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    best, best_len = None, -1
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or (prefix != "edge" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to docs/architecture.md")
    return best


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, resolving relative imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            for alias in node.names:  # `from edge import station` imports edge.station
                candidate = ROOT / Path(*f"{base}.{alias.name}".split("."))
                if candidate.with_suffix(".py").exists() or candidate.is_dir():
                    out.append((node.lineno, f"{base}.{alias.name}"))
    return out


def edge_files() -> list[Path]:
    return sorted(p for p in (ROOT / "edge").rglob("*.py") if "__pycache__" not in p.parts)


def is_command(module: str) -> bool:
    """A sub-command module (it defines ``register(subparsers)``); helpers beside them (options.py) are not."""
    path = (ROOT / Path(*module.split("."))).with_suffix(".py")
    return module.startswith("edge.commands.") and path.exists() and "\ndef register(" in path.read_text(encoding="utf-8")


def violations(files: list[tuple[Path, str]]) -> list[str]:
    found = []
    for path, module in files:
        mine = ORDER.index(layer_of(module))
        for line, target in imports_of(path, module):
            top = target.split(".")[0]
            where = f"{path.name}:{line}" if not path.is_relative_to(ROOT) else f"{path.relative_to(ROOT)}:{line}"
            if top in FORBIDDEN_IN_EDGE:
                found.append(f"{where}: {module} imports {target} (edge/ never imports {top})")
            elif top == "edge":
                theirs = ORDER.index(layer_of(target))
                if module.startswith("edge.commands.") and is_command(target) and target != module:
                    found.append(f"{where}: {module} imports {target}: a command never imports a sibling command")
                elif theirs > mine:
                    found.append(f"{where}: {module} ({ORDER[mine]}) imports {target} ({ORDER[theirs]}), an upper layer")
    return found


def test_imports_only_go_down() -> None:
    problems = violations([(path, module_name(path)) for path in edge_files()])
    assert not problems, "upward imports (see docs/architecture.md, 'Layers'):\n" + "\n".join(problems)


def test_every_module_has_a_layer() -> None:
    for path in edge_files():
        layer_of(module_name(path))


def test_the_check_catches_an_upward_import(tmp_path) -> None:
    """The test itself can fail: a core module importing the lane (or torch) is reported."""
    probe = tmp_path / "verdict.py"
    probe.write_text("from edge.lane.lane import Lane\nimport torch\n")
    problems = violations([(probe, "edge.verdict")])
    assert any("imports edge.lane.lane (lane), an upper layer" in p for p in problems), problems
    assert any("never imports torch" in p for p in problems), problems
    sibling = tmp_path / "calibrate.py"
    sibling.write_text("from edge.commands.schema import register\n")
    assert any("sibling command" in p for p in violations([(sibling, "edge.commands.calibrate")]))


@pytest.mark.parametrize("layer", ORDER)
def test_layers_are_documented(layer: str) -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"**{layer}**" in doc, f"layer {layer} is not described in docs/architecture.md"
