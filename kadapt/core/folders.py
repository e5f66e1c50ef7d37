"""Whole-folder atomic publishing, folder manifests and the one check for names that become paths.

A folder is written under a unique staging name beside its target (``.NAME.staging-<pid>-<random>``),
its ``manifest.json`` (sha256 of every file) last, and switched in with one rename: a reader sees the
old folder or the new one, never a mix. Replacing an existing folder uses Linux's
``renameat2(RENAME_EXCHANGE)`` (one atomic exchange, the old folder ends up at the staging name and is
then deleted); where that is unavailable the old folder is first renamed aside
(``.NAME.old-<pid>-<random>``) and :func:`recover_folder` puts it back if the process died between
the two renames.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.core.fileio import process_alive, sha256_of_file

MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_PATH = 4000


class FolderExistsError(KadaptError):
    """The target folder already holds a plug-in or run and overwriting was not asked for."""


def check_name(name: str, what: str, parent: str | Path | None = None) -> str:
    """The one validation for names that become folder names (run folders, zoo entries, joint runs).

    A name is 1-128 of letters, digits, ``.``, ``_``, ``-``, not starting with ``.`` (no separators,
    no ``..``, not absolute), so ``parent / name`` stays inside ``parent``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise KadaptError(f"{what} {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-' "
                          "(no path separators, not starting with '.')")
    if parent is not None:
        check_path_length(Path(parent) / name, what)
    return name


def check_path_length(path: str | Path, what: str = "path") -> Path:
    """One line instead of a raw ``OSError`` for a path the file system cannot hold."""
    path = Path(path)
    too_long = [part for part in path.parts if len(part.encode("utf-8")) > 255]
    if too_long or len(str(path.absolute()).encode("utf-8")) > _MAX_PATH:
        raise KadaptError(f"{what} {str(path)[:80]}...: too long for the file system "
                          f"(a folder name may have at most 255 bytes)")
    return path


def staging_path(target: Path, tag: str = "staging") -> Path:
    """A unique sibling name for ``target`` (per process and call)."""
    return target.parent / f".{target.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def folder_has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path) -> Path:
    """Write ``manifest.json`` (sha256 of every other file) last, after fsyncing the files."""
    files = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        files[path.name] = sha256_of_file(path)
    manifest = folder / MANIFEST_FILE
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"files": files}, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(folder)
    return manifest


def check_manifest(folder: Path) -> bool:
    """Verify ``manifest.json``; False when the folder has none (written before manifests existed)."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return False
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise PluginFormatError(f"{path}: not a valid manifest (key 'files')") from None
    for name, digest in files.items():
        if not (folder / name).is_file():
            raise PluginFormatError(f"{folder / name}: listed in {MANIFEST_FILE} but missing")
        if sha256_of_file(folder / name) != digest:
            raise PluginFormatError(f"{folder / name}: content differs from {MANIFEST_FILE} (sha256); the folder "
                                    "was edited or mixed with another write after it was saved")
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE
                   and p.name not in files and not p.name.startswith("."))
    if extra:
        raise PluginFormatError(f"{folder / extra[0]}: not listed in {MANIFEST_FILE} (a file from another write)")
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux renameat2); False when the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_folder(staging: Path, target: Path, *, overwrite: bool, what: str = "folder") -> Path:
    """Switch a fully written ``staging`` folder in as ``target`` with one rename.

    Without ``overwrite`` an existing non-empty ``target`` is an error (and a concurrent writer that
    got there first wins: renaming onto a non-empty folder fails). With it, the old folder is
    exchanged out atomically and deleted after the switch.
    """
    try:
        if not folder_has_content(target):
            os.rename(staging, target)  # an empty target folder is replaced; a non-empty one refuses
        elif not overwrite:
            raise FolderExistsError(f"{target}: a {what} already exists here; pass overwrite=True "
                                    "(CLI: --overwrite) to replace it")
        elif _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old folder
        else:
            aside = staging_path(target, "old")
            os.rename(target, aside)
            os.rename(staging, target)
            shutil.rmtree(aside, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FolderExistsError(f"{target}: another writer created this {what} first") from None
        raise KadaptError(f"{target}: cannot publish the {what} ({err.strerror})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    return target


def recover_folder(target: Path) -> None:
    """After a crash between the two renames of the fallback switch, put the old folder back."""
    if target.exists() or not target.parent.is_dir():
        return
    asides = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for aside in reversed(asides):
        if (aside / MANIFEST_FILE).exists():
            try:
                os.rename(aside, target)
            except OSError:
                continue
            return


def clean_stale(target: Path) -> None:
    """Remove staging/aside folders of ``target`` left by processes that no longer run."""
    for path in target.parent.glob(f".{target.name}.*-*-*"):
        parts = path.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and not process_alive(int(parts[1])):
            shutil.rmtree(path, ignore_errors=True)



def write_folder(target: str | Path, write, *, overwrite: bool, what: str = "folder") -> Path:
    """Stage a new folder, fill it with ``write(staging)``, add its manifest and switch it in as ``target``
    (:func:`publish_folder`); a non-empty ``target`` is an error unless ``overwrite``."""
    target = check_path_length(Path(target), what)
    if folder_has_content(target) and not overwrite:
        raise FolderExistsError(f"{target}: folder is not empty; pass overwrite=True (CLI: --overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    staging = staging_path(target)
    staging.mkdir()
    try:
        write(staging)
        write_manifest(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, target, overwrite=overwrite, what=what)
