"""Write a whole output folder or nothing: stage beside the destination, then rename.

Used by the report writer and the dataset generator so that an error or Ctrl-C
in the middle never leaves a half report / half dataset that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge.errors import IadError
from edge.outputs import DIR_MODE, FILE_MODE, OutputPathError, check_output, dir_output


class OutputDirError(IadError):
    """The output folder cannot be used (exists, not empty, not a folder)."""


def check_output_dir(out: Path, overwrite: bool, marker: str | None = None) -> None:
    """Refuse a file in the way, an unwritable place, or an unrelated non-empty folder (call before any long work).

    A folder that holds ``marker`` is this command's earlier output and is replaced like with ``--overwrite``.
    """
    try:
        check_output(dir_output(out, "--out", marker=marker, overwrite=overwrite))
    except OutputPathError as exc:
        raise OutputDirError(str(exc)) from None


@contextlib.contextmanager
def staged_dir(out: Path, overwrite: bool = False, marker: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out``, on any error it is deleted."""
    out = Path(out)
    check_output_dir(out, overwrite, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        for root, dirs, files in os.walk(staging):  # the same modes as every other output (docs/deploy.md)
            for name in files:
                os.chmod(os.path.join(root, name), FILE_MODE)
            for name in dirs:
                os.chmod(os.path.join(root, name), DIR_MODE)
        staging.chmod(DIR_MODE)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
