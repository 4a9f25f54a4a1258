"""Counted nouns for messages: "1 image", "3 images", "1 category", "2 categories"."""

from __future__ import annotations

_IRREGULAR = {"category": "categories", "patch": "patches", "defect type": "defect types"}


def count(n: int, word: str, plural: str | None = None) -> str:
    """``n`` and ``word`` in the right number."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {plural or _IRREGULAR.get(word) or word + 's'}"
