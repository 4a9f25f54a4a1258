"""Output paths: checked before any work, written as one set, nothing left behind on failure.

Every command that writes files (calibrate, inspect, eval, explain, generate,
make-dataset, demo) names its outputs first and calls :func:`check_outputs`
before it reads a single image, so that a typo in ``--report`` or ``--out``
costs one line and exit 1, not a 30-second run that ends in a traceback.

Then the outputs are written through an :class:`OutputSet`: each file or
folder is staged beside its target (same file system) and all of them are
renamed into place only after everything was written. An error or Ctrl-C in
between removes every staged file; the targets keep their previous content.

Policy for an existing output (the same for every command): a *file* output
(bank, generated recipe, JSON) is replaced; a *folder* output must be absent,
empty, or hold a previous output of the same command (``marker``), or the
command needs ``--overwrite`` — then the folder is replaced as a whole.
Files are written with mode 0640 (group-readable for the service user, see
docs/deploy.md) and folders with 0750.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.errors import IadError

FILE_MODE = 0o640
DIR_MODE = 0o750

PathLike = str | os.PathLike[str]


class OutputPathError(IadError):
    """An output path that cannot be written: one line naming the path and the fix."""


@dataclass(frozen=True)
class Output:
    """One output of a command: where, file or folder, and which option names it (for the message)."""

    path: Path
    kind: str  # "file" or "dir"
    option: str  # e.g. "--report", "--bank" or "bank.path"
    marker: str | None = None  # a file that marks a folder as this command's own earlier output
    overwrite: bool = False


def file_output(path: PathLike, option: str) -> Output:
    return Output(Path(path), "file", option)


def dir_output(path: PathLike, option: str, marker: str | None = None, overwrite: bool = False) -> Output:
    return Output(Path(path), "dir", option, marker, overwrite)


def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and not current.is_symlink():
        if current.parent == current:
            break
        current = current.parent
    return current


def _probe_writable(folder: Path, out: Output) -> None:
    """Create and delete a file in ``folder``: the only test that also sees read-only mounts and immutable folders."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".iad-write-test-", dir=folder)
    except OSError as exc:
        raise OutputPathError(
            f"{out.option} {out.path}: cannot write in {folder} ({exc.strerror}); choose a writable location "
            "or fix the folder's permissions"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output(out: Output) -> None:
    """Raise :class:`OutputPathError` unless ``out`` can be written (nothing is created)."""
    path = out.path
    if out.kind == "dir":
        if path.exists() and not path.is_dir():
            raise OutputPathError(f"{out.option} {path}: is a file, but a folder is expected here; give a folder path "
                                  "(it is created if missing)")
        if path.is_dir() and any(path.iterdir()) and not out.overwrite:
            ours = out.marker is not None and (path / out.marker).is_file()
            if not ours:
                raise OutputPathError(f"{out.option} {path}: folder exists and is not empty; choose another folder "
                                      "or pass --overwrite to replace it")
    else:
        if path.is_dir():
            raise OutputPathError(f"{out.option} {path}: is a folder, but a file is expected here; give a file path")
    anchor = _nearest_existing(path if out.kind == "dir" and path.is_dir() else path.parent)
    if anchor.exists() and not anchor.is_dir():
        raise OutputPathError(f"{out.option} {path}: cannot create folder {path.parent if out.kind == 'file' else path}: "
                              f"{anchor} is a file; choose another location")
    if not anchor.exists():
        raise OutputPathError(f"{out.option} {path}: no existing folder above it; give a path on this machine")
    # staging happens beside the target, so the target's parent (or the folder that will hold it) must be writable
    _probe_writable(anchor, out)


def check_outputs(outputs: list[Output]) -> None:
    """Check every output before any work; also refuse two outputs on the same path."""
    seen: dict[Path, Output] = {}
    for out in outputs:
        check_output(out)
        key = out.path.resolve()
        if key in seen:
            raise OutputPathError(f"{out.option} {out.path}: same path as {seen[key].option}; give two different paths")
        seen[key] = out


def _mkdirs(folder: Path) -> None:
    """Create missing parents with mode 0750 (group-readable for the service user)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for item in reversed(missing):
        with contextlib.suppress(FileExistsError):
            item.mkdir()
            item.chmod(DIR_MODE)


class OutputSet:
    """Stage several outputs and rename them into place together (see the module docstring)."""

    def __init__(self, outputs: list[Output]):
        self.outputs = outputs
        self._staged: list[tuple[Output, Path]] = []

    def stage(self, out: Output) -> Path:
        """The staging path for ``out``: write the file there (or fill the folder); it is moved at commit."""
        target = out.path
        _mkdirs(target.parent)
        if out.kind == "dir":
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            staging.chmod(DIR_MODE)
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
            os.close(fd)
            staging = Path(name)
        self._staged.append((out, staging))
        return staging

    def commit(self) -> None:
        """Move every staged output over its target (files 0640, folders 0750)."""
        for out, staging in self._staged:
            if out.kind == "dir":
                for root, dirs, files in os.walk(staging):
                    for name in files:
                        os.chmod(os.path.join(root, name), FILE_MODE)
                    for name in dirs:
                        os.chmod(os.path.join(root, name), DIR_MODE)
                old = None
                if out.path.exists():
                    old = out.path.with_name(f".{out.path.name}.old-{os.getpid()}")
                    os.replace(out.path, old)
                os.replace(staging, out.path)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.chmod(staging, FILE_MODE)
                os.replace(staging, out.path)
        self._staged.clear()

    def discard(self) -> None:
        for out, staging in self._staged:
            if out.kind == "dir":
                shutil.rmtree(staging, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    staging.unlink()
        self._staged.clear()


@contextlib.contextmanager
def output_set(outputs: list[Output]) -> Iterator[OutputSet]:
    """Check ``outputs`` again (things change during a long run), stage, commit on success, discard on error."""
    check_outputs(outputs)
    staged = OutputSet(outputs)
    try:
        yield staged
        staged.commit()
    except BaseException:
        staged.discard()
        raise


def runtime_outputs(recipe: object, mqtt: bool = True, archive: bool = True, spool: bool = False) -> list[Output]:
    """The places `run` (and `assistant`) write while the line runs: outbox, archive, assistant spool.

    Checked at start-up, so a recipe naming a path under a file or in a read-only folder stops the
    service with one line instead of failing on the first NG frame.
    """
    outs: list[Output] = []
    if mqtt and getattr(recipe.mqtt, "outbox", None):  # type: ignore[attr-defined]
        outs.append(file_output(recipe.mqtt.outbox, "mqtt.outbox"))  # type: ignore[attr-defined]
    if archive and recipe.archive.enabled:  # type: ignore[attr-defined]
        outs.append(dir_output(recipe.archive.path, "archive.path", overwrite=True))  # type: ignore[attr-defined]
    if spool and getattr(recipe.assistant, "spool", None):  # type: ignore[attr-defined]
        outs.append(dir_output(recipe.assistant.spool, "assistant.spool", overwrite=True))  # type: ignore[attr-defined]
    return outs
