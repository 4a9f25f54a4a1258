"""Write a whole output folder or nothing: stage beside the destination, then rename.

Used by the report writer and the dataset generator so that an error or Ctrl-C
in the middle never leaves a half report / half dataset that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edge.errors import IadError


class OutputDirError(IadError):
    """The output folder cannot be used (exists, not empty, not a folder)."""


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix new output into an unrelated non-empty folder (call before any long work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputDirError(f"{out}: folder exists and is not empty; choose another output folder or pass --overwrite")


@contextlib.contextmanager
def staged_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out``, on any error it is deleted."""
    out = Path(out)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
