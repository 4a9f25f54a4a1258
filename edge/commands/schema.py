"""`iad-edge schema`: print (or write) the recipe's JSON Schema for editors."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from edge.config.schema import REPO_SCHEMA_PATH, recipe_json_schema_text


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="Print the recipe JSON Schema (for editor completion and linting).",
        description="Print the JSON Schema generated from the recipe models. Recipes reference it with "
        "'# yaml-language-server: $schema=recipe.schema.json' on their first line.",
    )
    parser.add_argument(
        "--write", nargs="?", const=str(REPO_SCHEMA_PATH), metavar="PATH",
        help=f"Write the schema to PATH instead of printing it (default PATH: {REPO_SCHEMA_PATH}).",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = recipe_json_schema_text()
    if args.write:
        write_atomic(Path(args.write), text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0
