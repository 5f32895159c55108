"""Reads and writes inside a worktree that never leave it.

A repository writer can commit a symlink where the bot expects a file (a pin-table document, a
Dockerfile, a source file, a directory on the way to one) so that following it would read or
rewrite a file outside the repository.  Every path the bot opens in a worktree goes through
`inside`: it must be relative, must not climb with `..`, and no component may be a symlink; the
last component is opened with `O_NOFOLLOW` as well.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from bot.errors import ManifestError
from bot.limits import check_size, decode_file


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refused with a one-line `ManifestError` when it is absolute, climbs
    out with `..`, or passes through a symlink."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ManifestError(f"{relative!r} is not a path inside the repository")
    path = root
    for part in pure.parts:
        path = path / part
        if path.is_symlink():
            raise ManifestError(
                f"{relative} is a symlink{'' if path.name == pure.name else f' ({part})'} in the "
                "repository; rotation-bot does not follow links: commit the file itself"
            )
    return path


def read_text(root: Path, relative: str) -> str | None:
    """A worktree file's UTF-8 text (None when it does not exist), never through a link, within
    its kind's size cap and nesting limit (`bot.limits`)."""
    path = inside(root, relative)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ManifestError(f"{relative}: cannot read it ({error.strerror})") from error
    with os.fdopen(descriptor, "rb") as handle:
        kind = check_size(relative, os.fstat(handle.fileno()).st_size)
        data = handle.read(kind.limit + 1)
    check_size(relative, len(data), kind)
    return decode_file(relative, data, kind)


def write_text(root: Path, relative: str, text: str) -> None:
    """Replace a worktree file's content, never through a link."""
    path = inside(root, relative)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(text.encode("utf-8"))
