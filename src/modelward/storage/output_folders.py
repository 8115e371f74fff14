"""Output folders a command writes into (pull): refused as the caller's bad path (PathError,
exit 2) when they cannot be made, before anything is fetched. Standard library only, so the
remote client shares it without importing the database layer."""

from __future__ import annotations

from pathlib import Path

from modelward.errors import PathError


def check_creatable_folder(folder: Path) -> None:
    """PathError unless `folder` exists or its nearest existing ancestor is a folder."""
    ancestor = folder
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if ancestor != folder and not ancestor.is_dir():
        raise PathError(f"{folder}: cannot be created, {ancestor} is not a folder")


def make_output_folder(folder: Path) -> None:
    """Create the output folder (and its parents): a folder that cannot be made (a read-only
    or virtual file system such as /proc, no permission) is the caller's bad path, exit 2."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"{folder}: cannot create the folder: {exc.strerror or exc}") from exc
