"""Turn pydantic validation errors into messages a technician can act on.

pydantic says "Input should be less than or equal to 2"; the technician needs
"must be between 0 and 2 (got 2.7)" at the right line, and for a typo the
key they meant. This module walks the recipe models along the error location
to find the field's bounds and the valid sibling keys.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge.config.yamlmarks import KeyPath

_TAG_FIELDS = ("type", "backend")  # discriminators of the union sections (source.type, expert.backend)


@dataclass(frozen=True)
class Problem:
    """One validation problem: where in the data, and what to say."""

    path: KeyPath  # key path in the YAML data (union tags removed)
    message: str
    at_key: bool = True  # False: the path names a missing key; point at its parent


def display_path(path: KeyPath) -> str:
    """``('rules', 'zones', 0, 'polygon')`` -> ``rules.zones[0].polygon``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model class inside an annotation (through Optional, list, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _tag(model: type[BaseModel]) -> str | None:
    for name in _TAG_FIELDS:
        field = model.model_fields.get(name)
        if field is not None and isinstance(field.default, str):
            return field.default
    return None


def resolve(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[FieldInfo | None, list[type[BaseModel]]]:
    """The FieldInfo at pydantic ``loc`` and the model classes that could hold its children."""
    candidates: list[type[BaseModel]] = [root]
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue  # list index: item models were already unwrapped
        owner = next((m for m in candidates if part in m.model_fields), None)
        if owner is not None:
            info = owner.model_fields[part]
            candidates = _models_in(info.annotation)
            continue
        tagged = [m for m in candidates if _tag(m) == part]
        if tagged:
            candidates = tagged
            continue
        return None, []
    return info, candidates


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def range_message(info: FieldInfo | None) -> str | None:
    """'must be between 0 and 2' from the field's ge/gt/le/lt constraints."""
    if info is None:
        return None
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(item, name)
    low = ("ge", bounds["ge"]) if "ge" in bounds else (("gt", bounds["gt"]) if "gt" in bounds else None)
    high = ("le", bounds["le"]) if "le" in bounds else (("lt", bounds["lt"]) if "lt" in bounds else None)
    if low and high and low[0] == "ge" and high[0] == "le":
        return f"must be between {_num(low[1])} and {_num(high[1])}"
    parts = []
    if low:
        parts.append(f"at least {_num(low[1])}" if low[0] == "ge" else f"greater than {_num(low[1])}")
    if high:
        parts.append(f"at most {_num(high[1])}" if high[0] == "le" else f"less than {_num(high[1])}")
    return "must be " + " and ".join(parts) if parts else None


def show(value: Any) -> str:
    """A value as the technician wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[KeyPath, bool]:
    """Follow ``loc`` through the YAML data, skipping union tags; (path, last key exists)."""
    path: list[str | int] = []
    current = data
    for number, part in enumerate(loc):
        last = number == len(loc) - 1
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif last:
            path.append(part)
            return tuple(path), False
        # else: a union tag ('synthetic', 'onnxruntime', 'int', ...): not a key in the file
    return tuple(path), True


_TYPE_WORDS = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list, e.g. [a, b]",
    "tuple_type": "must be a list, e.g. [a, b]",
    "dict_type": "must be a section of 'key: value' lines",
    "model_type": "must be a section of 'key: value' lines",
    "model_attributes_type": "must be a section of 'key: value' lines",
    "path_type": "must be a file path",
}


def problem_from_error(root: type[BaseModel], err: dict[str, Any], data: Any) -> Problem:
    """One pydantic error dict -> a Problem with the data path and a technician's message."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")

    if kind == "recipe_rule":  # cross-field rule: ctx names the field relative to the model that raised it
        extra = tuple(int(p) if p.isdigit() else p for p in str(ctx["field"]).split("."))
        path, exists = _data_path(loc + extra, data)
        return Problem(path, str(ctx["message"]), at_key=exists)

    path, exists = _data_path(loc, data)
    info, _ = resolve(root, loc)
    got = f" (got {show(value)})" if not isinstance(value, dict) else ""

    if kind == "extra_forbidden":
        key = str(loc[-1])
        _, siblings = resolve(root, loc[:-1])
        valid = sorted({name for model in siblings for name in model.model_fields})
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f" — did you mean '{close[0]}'?" if close else (f" — valid keys: {', '.join(valid)}" if valid else "")
        return Problem(path, f"unknown key '{key}'{hint}")
    if kind == "missing":
        return Problem(path, f"missing required key '{loc[-1]}'", at_key=False)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        tags = [t.strip() for t in expected.split(",") if t.strip()]
        if not tags:  # pydantic's union_tag_not_found carries no expected_tags: read them off the models
            _, variants = resolve(root, loc)
            tags = [tag for tag in (_tag(model) for model in variants) if tag]
        if kind == "union_tag_not_found":
            return _missing_tag(path, discriminator, tags, value, root, loc)
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.5)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        return Problem(path + (discriminator,), f"unknown {discriminator} '{tag}': must be one of {', '.join(tags)}{hint}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return Problem(path, (range_message(info) or err["msg"]) + got)
    if kind == "literal_error" and loc == ("version",):
        return Problem(path, f"this appliance reads recipe version 1{got}")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return Problem(path, f"must be one of {expected}{got}")
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if pattern.startswith("^[A-Za-z0-9_"):
            return Problem(path, f"may contain only letters, digits, '_' and '-'{got}")
        return Problem(path, f"must match {pattern}{got}")
    if kind in ("too_short", "too_long") and "polygon" in loc:
        return Problem(path, f"a point is [x, y] in frame pixels{got}")
    if kind == "too_short" or kind == "too_long":
        return Problem(path, err["msg"].replace("List should", "must").replace("Tuple should", "must") + got)
    if kind in _TYPE_WORDS:
        return Problem(path, _TYPE_WORDS[kind] + got)
    if kind == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ")
        brief = got if not isinstance(value, (list, tuple)) and "(got" not in message else ""
        return Problem(path, message + brief)
    message = str(err["msg"])
    if message.startswith("Input should be"):
        message = "must be" + message[len("Input should be"):]
    return Problem(path, message + got)


def _missing_tag(path: KeyPath, discriminator: str, tags: list[str], value: Any,
                 root: type[BaseModel], loc: tuple[Any, ...]) -> Problem:
    """A union section without its selector key: name a misspelled selector on its own line.

    ``source: {typex: synthetic}`` is most likely a typo of ``type``: pointing at the
    section header with "missing 'type'" would send the technician to the wrong
    line, so an unknown key close to the selector is reported where it is written.
    """
    choices = ", ".join(tags)
    if isinstance(value, dict):
        _, variants = resolve(root, loc)
        known = {name for model in variants for name in model.model_fields}
        unknown = [str(key) for key in value if str(key) not in known]
        typo = next((key for key in unknown if difflib.get_close_matches(key, [discriminator], n=1, cutoff=0.6)), None)
        if typo is None:  # a key whose value is one of the tags ("kind: genicam") is the selector too
            typo = next((key for key in unknown if isinstance(value[key], str) and value[key] in tags), None)
        if typo is not None:
            return Problem(path + (typo,), f"unknown key '{typo}' — did you mean '{discriminator}'? "
                                           f"({discriminator} selects one of {choices})")
    return Problem(path, f"missing '{discriminator}': one of {choices}", at_key=True)
