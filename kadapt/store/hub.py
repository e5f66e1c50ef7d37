"""The Hugging Face Hub, through ``huggingface_hub`` (no hand-written HTTP): folders by repo id, pushes.

* :func:`local_folder` -- a local folder as it is, or a Hub repo id (``owner/name``) fetched into (or
  read from) the Hub cache with :func:`huggingface_hub.snapshot_download` at ``revision``. With
  ``HF_HUB_OFFLINE`` set (read when called) only the local cache is read; a repo that is not there is
  one line that says how to fetch it.
* :func:`hub_file` -- one file of a repo, or None when the repo does not have it (used to tell a
  fine-tuned run repo from a backbone repo without downloading the backbone).
* :func:`refuse_foreign_folder` -- a folder or repo that holds a PEFT (or AdapterHub) adapter instead of a
  kadapt plug-in is refused in one line that says so and names the repo id.
* :func:`upload_plan` / :func:`push_folder` -- the exact ``CommitOperationAdd`` list of a saved folder,
  uploaded as one commit (``HfApi.create_commit``) after ``create_repo(exist_ok=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path

from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.store.plugin_dir import CONFIG_FILE, foreign_adapter
from kadapt.store.repo_ids import is_hub_name, is_repo_id  # noqa: F401  (re-exported)

_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(KadaptError):
    """A repo that cannot be read: not in the local cache offline, unknown, or of another library."""


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (``huggingface_hub`` reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return value.upper() in _TRUE if value is not None else bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str:
    """The Hub cache folder as the environment says now (``HF_HUB_CACHE``, ``HF_HOME``) or the default."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return constants.HF_HUB_CACHE


def local_folder(name_or_path, revision: str | None = None, what: str = "plug-in") -> Path:
    """The local folder of ``name_or_path``: an existing folder as it is, else a Hub repo id's snapshot
    (downloaded unless offline). A missing path that is no repo id is returned unchanged (the loader's
    own "no such folder" error names it)."""
    path = Path(name_or_path)
    if path.is_dir():
        if revision is not None:
            raise HubError(f"{path}: revision={revision!r} applies to Hub repo ids; this is a local folder")
        return path
    if not is_repo_id(str(name_or_path)):
        return path
    return snapshot(str(name_or_path), revision, what)


def snapshot(repo_id: str, revision: str | None = None, what: str = "plug-in") -> Path:
    """``snapshot_download`` of ``repo_id`` (cache only when offline), its errors as one line each."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    at = f" at revision {revision!r}" if revision else ""
    offline = hub_offline()
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                      cache_dir=hub_cache_dir()))
    except (LocalEntryNotFoundError, EntryNotFoundError):
        raise HubError(not_cached_message(repo_id, revision, what, offline)) from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id}: the Hub repo has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such {what} folder, and no such Hub repo (or it is private: log in "
                       f"with `hf auth login`){at}") from None


def not_cached_message(repo_id: str, revision: str | None, what: str, offline: bool) -> str:
    at = f" at revision {revision!r}" if revision else ""
    why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    return (f"{repo_id}: no such {what} folder, and the Hub repo is not in the local cache ({hub_cache_dir()}){at} "
            f"and {why}; fetch it where the Hub is reachable: `{fetch}` (same HF_HUB_CACHE), or pass a local folder")


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """``filename`` of ``repo_id`` as a local file, or None when the repo does not have it (offline: when
    the cache does not have it)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    if hub_offline():
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
        return Path(found) if isinstance(found, str) else None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hub_cache_dir()))
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return None


def refuse_foreign_folder(folder: Path, source: str | None = None) -> None:
    """A folder (or repo) without a kadapt config that holds a PEFT or AdapterHub adapter: one line that
    names what was asked for (the repo id, not its cache folder) and how to load it."""
    if (Path(folder) / CONFIG_FILE).is_file():
        return
    foreign = foreign_adapter(Path(folder))
    if foreign:
        raise PluginFormatError(f"{source or folder}: holds {foreign}")


def upload_plan(folder: str | Path) -> list:
    """One ``CommitOperationAdd`` per file of ``folder`` (paths relative to it, sorted)."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files]


def push_folder(folder: str | Path, repo_id: str, *, commit_message: str = "Upload with kadapt",
                revision: str | None = None, private: bool | None = None, token: str | None = None,
                create_pr: bool = False, endpoint: str | None = None):
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns the ``CommitInfo``."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.create_commit(repo_id, operations=upload_plan(folder), commit_message=commit_message,
                             revision=revision, create_pr=create_pr, repo_type="model")
