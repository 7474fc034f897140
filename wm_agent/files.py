"""Crash-safe writing: a file is written beside its destination and renamed over it only once complete."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path in `destination`'s folder; when the block ends without error, move it onto
    `destination` in one rename. A crash or a kill at any moment leaves the previous file whole (a stray
    temporary file at worst), never a half-written one."""
    destination = pathlib.Path(os.path.realpath(destination))  # through a symlink, as a plain write would go
    destination.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the suffix, so that SB3's writers add none of their own
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=destination.suffix)
    os.close(handle)
    temporary = pathlib.Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~umask)  # the mode a plain write gives, not mkstemp's owner-only one
        os.replace(temporary, destination)
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
            folder = os.open(destination.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(destination: str | os.PathLike, text: str) -> None:
    """`Path.write_text`, crash-safe."""
    with atomic_path(destination) as temporary:
        temporary.write_text(text)


def with_suffix(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """`path` with `suffix` added when it has none, as SB3's `open_path` does ("agent.v1" stays as it is)."""
    path = pathlib.Path(path)
    return path if path.suffix else path.with_suffix(suffix)
