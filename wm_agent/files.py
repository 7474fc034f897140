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
    destination = pathlib.Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the suffix, so that SB3's writers add none of their own
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=destination.suffix)
    os.close(handle)
    temporary = pathlib.Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(destination: str | os.PathLike, text: str) -> None:
    """`Path.write_text`, crash-safe."""
    with atomic_path(destination) as temporary:
        temporary.write_text(text)


def with_suffix(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """`path` with `suffix` appended unless it already ends with it, as SB3's `open_path` does."""
    path = pathlib.Path(path)
    return path if path.suffix == suffix else path.with_name(path.name + suffix)
