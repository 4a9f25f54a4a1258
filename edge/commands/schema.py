"""`iad-edge schema`: print (or write) the recipe's JSON Schema for editors."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.atomic import write_text_atomic
from edge.config.schema import (
    REPO_DOCS_PATH,
    REPO_SCHEMA_PATH,
    docs_with_reference,
    recipe_json_schema_text,
    reference_markdown,
)
from edge.outputs import check_outputs, file_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="Print the recipe JSON Schema (for editor completion and linting).",
        description="Print the JSON Schema generated from the recipe models. Recipes reference it with "
        "'# yaml-language-server: $schema=recipe.schema.json' on their first line.",
    )
    parser.add_argument(
        "--write", nargs="?", const=str(REPO_SCHEMA_PATH), metavar="PATH",
        help=f"Write the schema to PATH instead of printing it (default PATH: {REPO_SCHEMA_PATH}; "
        "the default also refreshes the key reference in docs/recipes.md).",
    )
    parser.add_argument("--markdown", action="store_true", help="Print the key reference tables (as in docs/recipes.md) instead.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(reference_markdown(), end="")
        return 0
    text = recipe_json_schema_text()
    if args.write:
        check_outputs([file_output(args.write, "--write")])
        write_text_atomic(Path(args.write), text)
        print(f"wrote {args.write}")
        if Path(args.write).resolve() == REPO_SCHEMA_PATH and REPO_DOCS_PATH.is_file():
            write_text_atomic(REPO_DOCS_PATH, docs_with_reference(REPO_DOCS_PATH.read_text(encoding="utf-8")))
            print(f"updated the key reference in {REPO_DOCS_PATH}")
    else:
        print(text, end="")
    return 0
