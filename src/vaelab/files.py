"""Files written so that a reader sees the old file or the new, never half of one: a temporary
file in the same folder, fsync, rename. Every file vaelab writes into a run goes through here,
and every file of a run that a page embeds or serves is read through here, as a regular file
and never through a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPORARY = ".{name}.vaelab-"  # the prefix of write_atomic's temporary file beside ``name``


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it; put back at once
    os.umask(mask)
    return mask


# files get the mode any new file gets here (0644 under the usual umask 022), not mkstemp's
# 0600, so that colleagues can read a run the user shares
FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never half."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY.format(name=path.name))
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


MANIFEST = "manifest.json"  # a run's list of its files, written last: the run is complete


def manifest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every regular file below ``folder`` by relative path, with its size and SHA-256; hidden
    files (a lock, temporaries), the manifest itself and the subfolders ``skip`` left out."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (
            rel.parts[0] in skip
            or any(part.startswith(".") for part in rel.parts)
            or rel.as_posix() == MANIFEST
            or path.is_symlink()
            or not path.is_file()
        ):
            continue
        digest = hashlib.sha256(read_regular(path)).hexdigest()
        files[rel.as_posix()] = {"bytes": path.stat().st_size, "sha256": digest}
    return files


def write_manifest(folder: Path, skip: tuple[str, ...] = ()) -> None:
    """``folder/manifest.json``: :func:`manifest` of ``folder``, written atomically."""
    write_json(folder / MANIFEST, {"files": manifest(folder, skip)})


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete what writes killed half-way left in ``folder`` and below (the temporary files of
    :func:`write_atomic`, never renamed into place); return their paths."""
    stale = [p for p in folder.rglob(".*.vaelab-*") if p.is_file() and not p.is_symlink()]
    for path in stale:
        path.unlink()
    return stale


def regular_files(folder: Path, pattern: str, inside: Path) -> list[Path]:
    """The files of ``folder`` matching ``pattern`` that are regular files, not symbolic links,
    and lie inside ``inside`` once every link on their way is resolved: a run folder handed to
    us by someone else cannot point a report or the explorer at any other file."""
    if not folder.is_dir():
        return []
    root = inside.resolve()
    return [
        path
        for path in sorted(folder.glob(pattern))
        if not path.is_symlink() and path.is_file() and path.resolve().is_relative_to(root)
    ]


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``, opened without following a symbolic link (``O_NOFOLLOW``), so a
    file swapped for a link after it was listed is refused (OSError) rather than read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read()
