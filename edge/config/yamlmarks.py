"""YAML reading that remembers where every key and list item was written.

pydantic reports errors by field path (``thresholds.image_score``); a
technician needs ``file:line:col``. PyYAML's composer keeps a start mark on
every node, so we compose the node tree once, record the mark of each key
path, and build the plain Python data from the same tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A position in a recipe file (1-based line and column)."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class YamlProblem(Exception):
    """A YAML file that cannot be read as data (syntax error, duplicate key)."""

    def __init__(self, mark: Mark, message: str):
        self.mark = mark
        self.message = message
        super().__init__(f"{mark}: {message}")


def _mark(file: Path, node_mark: Any) -> Mark:
    return Mark(file, node_mark.line + 1, node_mark.column + 1)


def _index(node: yaml.Node, path: KeyPath, file: Path, marks: dict[KeyPath, Mark]) -> None:
    """Record the mark of every key (at the key) and list item (at the item) below ``node``."""
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[Any, Mark] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            here = _mark(file, key_node.start_mark)
            if key in first_seen:
                raise YamlProblem(here, f"duplicate key '{key}' (first written at line {first_seen[key].line}); keep one")
            first_seen[key] = here
            marks[path + (key,)] = here
            _index(value_node, path + (key,), file, marks)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            marks[path + (number,)] = _mark(file, item.start_mark)
            _index(item, path + (number,), file, marks)


def load_with_marks(text: str, file: Path) -> tuple[Any, dict[KeyPath, Mark]]:
    """Parse YAML text; return the data and a map key path -> Mark (() -> start of the document)."""
    marks: dict[KeyPath, Mark] = {(): Mark(file, 1, 1)}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, marks
        _index(node, (), file, marks)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _mark(file, mark) if mark is not None else Mark(file, 1, 1)
        problem = exc.problem or exc.context or "cannot be read"
        context = ""
        if exc.context and exc.problem:
            started = exc.context_mark
            context = f" ({exc.context}" + (f" started at line {started.line + 1})" if started is not None and mark is not None and started.line != mark.line else ")")
        raise YamlProblem(where, f"YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Mark(file, 1, 1), f"YAML syntax error: {exc}") from None
    finally:
        loader.dispose()
    return data, marks
