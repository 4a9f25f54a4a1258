"""Recipe edits from the console: the same checks as `iad-edge check`, then the file the station watches.

Why through the file: the station's live-reload watcher (:mod:`edge.lane.watch`)
is the one path that validates a recipe again, applies it between two frames
and reports the outcome on ``status``. The console never talks to the lane
directly (it is another process); "apply" = validate here with the same
loader, then replace the recipe file atomically (the previous text is kept as
``<recipe>.prev``). An edit that fails any check writes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.atomic import write_text_atomic
from edge.config import RecipeError, load_recipe
from edge.config.diff import diff_effective
from edge.config.loader import parse_recipe
from edge.config.yamlmarks import YamlProblem, load_with_marks
from edge.security import PathNotAllowedError, allowed_roots, check_recipe_paths, is_within

_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")
_FIELD_OUTSIDE = re.compile(r"^(?:.+?: )?(?P<field>[A-Za-z0-9_.]+): .* outside the allowed roots$")


@dataclass
class Problem:
    """One problem, at its line when it has one (``line`` None: about the whole recipe)."""

    message: str
    line: int | None = None
    column: int | None = None
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column, "file": self.file}


@dataclass
class CheckResult:
    ok: bool
    problems: list[Problem] = field(default_factory=list)
    sha256: str | None = None
    changes: list[str] = field(default_factory=list)  # effective values that would change vs the running recipe
    text_diff: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": [p.to_json() for p in self.problems], "sha256": self.sha256,
                "changes": self.changes, "text_diff": self.text_diff}


class EditRejected(Exception):
    """An apply that changed nothing, with the HTTP status and the message for the technician."""

    def __init__(self, status: int, message: str, result: CheckResult | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.result = result


def file_sha256(path: Path) -> str | None:
    """sha256 of the recipe file's text as the station reads it (None when unreadable)."""
    try:
        return hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()
    except (OSError, UnicodeDecodeError):
        return None


class RecipeEditor:
    """Checks candidate texts for ``recipe_path`` and writes valid ones (see the module docstring)."""

    def __init__(self, recipe_path: Path, max_bytes: int):
        self.recipe_path = Path(recipe_path).resolve()
        self.max_bytes = max_bytes

    def current_text(self) -> str:
        return self.recipe_path.read_text(encoding="utf-8")

    def check(self, text: str, running_values: dict | None = None) -> CheckResult:
        """Validate ``text`` as the recipe file (includes and named files too) and diff it against what runs."""
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            return CheckResult(False, [Problem(f"the recipe text is {size / 1024:.0f} KiB; the console accepts at most "
                                               f"{self.max_bytes // 1024} KiB (console.max_edit_kb): nothing was checked")])
        # Nothing outside the allowed roots is read, not even to report an error about it: the page is open
        # to read-only users, and an error about `include: /etc/...` or a foreign manifest could quote it.
        outside = self._includes_outside(text)
        if outside:
            return CheckResult(False, outside)
        try:
            check_recipe_paths(parse_recipe(text, self.recipe_path, check_files=False), force=True)
            candidate = parse_recipe(text, self.recipe_path, check_files=True)
        except RecipeError as exc:
            return CheckResult(False, [self._located(line) for line in exc.problems])
        except PathNotAllowedError as exc:
            return CheckResult(False, [self._outside(line, text) for line in str(exc).splitlines()])
        before = running_values
        if before is None:
            try:
                before = load_recipe(self.recipe_path).effective()
            except RecipeError:
                before = {}
        changes = [str(c) for c in diff_effective(before, candidate.effective())]
        try:
            current = self.current_text()
        except OSError:
            current = ""
        text_diff = "".join(difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                                 "running", "edited", n=2))
        return CheckResult(True, [], candidate.sha256, changes, text_diff)

    def apply(self, text: str, base_sha256: str | None, running_values: dict | None = None) -> CheckResult:
        """Check, then replace the recipe file; raises :class:`EditRejected` (nothing written) otherwise.

        ``base_sha256`` is the hash of the text the technician started from: when the file
        changed meanwhile (another editor, `calibrate`), the edit is refused instead of
        silently overwriting it.
        """
        result = self.check(text, running_values)
        if not result.ok:
            raise EditRejected(400 if not result.problems[0].message.startswith("the recipe text is") else 413,
                               "the recipe was not applied: " + result.problems[0].message, result)
        current = file_sha256(self.recipe_path)
        if base_sha256 is not None and current is not None and base_sha256 != current:
            raise EditRejected(409, "the recipe file changed since you loaded it: reload, re-apply your edit, check again",
                               result)
        try:
            if current is not None:
                write_text_atomic(self.recipe_path.with_name(self.recipe_path.name + ".prev"), self.current_text())
            write_text_atomic(self.recipe_path, text)
        except OSError as exc:
            raise EditRejected(500, f"cannot write {self.recipe_path}: {exc.strerror or exc}", result) from None
        return result

    def _includes_outside(self, text: str) -> list[Problem]:
        """``include:`` entries that resolve outside the allowed roots, at their lines."""
        try:
            data, marks = load_with_marks(text, self.recipe_path)
        except YamlProblem:
            return []  # parse_recipe reports it, at its line
        raw = data.get("include") if isinstance(data, dict) else None
        items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roots = allowed_roots(self.recipe_path)
        problems = []
        for number, item in enumerate(items):
            if not isinstance(item, str):
                continue
            path = Path(item).expanduser()
            if not is_within(path if path.is_absolute() else self.recipe_path.parent / path, roots):
                mark = marks.get(("include", number)) or marks.get(("include",))
                problems.append(Problem(f"include: {item} is outside the allowed roots ({', '.join(map(str, roots))}): "
                                        "nothing was read", mark.line if mark else None, mark.column if mark else None))
        return problems

    def _located(self, line: str) -> Problem:
        match = _LOCATED.match(line)
        if not match:
            return Problem(line)
        same_file = Path(match["file"]).resolve() == self.recipe_path
        return Problem(match["message"], int(match["line"]) if same_file else None,
                       int(match["col"]) if same_file else None, None if same_file else match["file"])

    def _outside(self, line: str, text: str) -> Problem:
        """A path outside the allowed roots, at the line of its field."""
        match = _FIELD_OUTSIDE.match(line)
        if match is None:
            return Problem(line)
        field_name = match["field"]
        try:
            _, marks = load_with_marks(text, self.recipe_path)
        except YamlProblem:
            marks = {}
        key = tuple(int(p) if p.isdigit() else p for p in field_name.split("."))
        mark = marks.get(key)
        message = line.split(": ", 1)[1] if line.startswith(str(self.recipe_path)) else line
        return Problem(message, mark.line if mark else None, mark.column if mark else None)
