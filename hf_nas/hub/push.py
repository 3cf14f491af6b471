"""Hub uploads of exported subnet folders.

[`check_repo_id`] checks a Hub repo id up front (the model card and the scripts use it too), and
[`push_subnet_folder`] uploads a folder written by [`export_subnet`] with `huggingface_hub` (or, with `dry_run=True`,
only lists what it would upload). A failed upload (no network, no token, no write access) raises [`PushError`], whose
one-line message says that the folder is saved locally and why the upload failed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, HFValidationError, filter_repo_objects, validate_repo_id

__all__ = ["PushError", "check_repo_id", "push_subnet_folder"]

logger = logging.getLogger(__name__)

# The files without which a folder is not a subnet checkpoint worth uploading.
_REQUIRED_FILES = ("config.json", "README.md")


class PushError(RuntimeError):
    """An upload to the Hub failed; the folder is kept as it is. The message is one line:
    `saved locally at <folder>; upload to <repo_id> failed: <reason>` (the original error is its `__cause__`)."""

    def __init__(self, folder: str, repo_id: str, reason: BaseException):
        self.folder = folder
        self.repo_id = repo_id
        detail = " ".join(str(reason).split()) or "no details"
        super().__init__(f"saved locally at {folder}; upload to {repo_id} failed: {type(reason).__name__}: {detail}")


def check_repo_id(repo_id: Any) -> None:
    """Raise `ValueError` (naming the value and what is allowed) unless `repo_id` is a valid Hub repo id."""
    if not isinstance(repo_id, str):
        raise TypeError(f"`repo_id` must be a string such as 'username/model-name', got {type(repo_id).__name__}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(
            f"`repo_id`={repo_id!r} is not a valid Hub repo id; allowed: 'namespace/name' or 'name' (letters, digits, "
            f"'-', '_', '.'; at most 96 characters). huggingface_hub says: {e}"
        ) from e


def _check_folder(folder: str) -> None:
    """Raise `ValueError` unless `folder` is a directory holding at least `config.json` and `README.md`."""
    if not os.path.isdir(folder):
        raise ValueError(f"`folder`={folder!r} is not a directory; export the subnet first (export_subnet).")
    missing = [name for name in _REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(
            f"`folder`={folder!r} is not a complete subnet folder: missing {missing}. Write it with export_subnet."
        )


def _files_to_upload(folder: str) -> list[str]:
    """The relative (POSIX) paths `HfApi.upload_folder` uploads from `folder` with no allow/ignore patterns."""
    root = Path(folder)
    relative = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
    return list(filter_repo_objects(relative, ignore_patterns=DEFAULT_IGNORE_PATTERNS))


def push_subnet_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str = "Upload subnet extracted with hf-nas",
) -> list[str]:
    """Upload a folder written by [`export_subnet`] to the Hub model repo `repo_id` (created if needed).

    Uses `huggingface_hub`: `HfApi().create_repo(repo_id, private=private, exist_ok=True)` then `upload_folder`, in one
    commit. With `dry_run=True` it prints the files it would upload and returns them without touching the network.

    Args:
        folder (`str` or `os.PathLike`): a complete subnet folder (`config.json` and `README.md` at least).
        repo_id (`str`): `"namespace/name"` (or `"name"`, in the namespace of the token's user).
        private (`bool`, *optional*, defaults to `False`): create the repo private (an existing repo keeps its
            visibility).
        token (`str`, *optional*): a Hub token; defaults to `HF_TOKEN` or the cached `hf auth login`.
        dry_run (`bool`, *optional*, defaults to `False`): list the files only; the folder is kept as it is.
        commit_message (`str`, *optional*): the commit message.

    Returns:
        `list[str]`: the paths (relative to `folder`, sorted) that are, or would be, uploaded.

    Raises:
        `ValueError`: `repo_id` is not a valid Hub repo id, or `folder` is not a complete subnet folder (nothing is
        sent). [`PushError`]: creating the repo or uploading failed (no network, no token, no write access, ...);
        its one-line message names the local folder, the repo and the reason.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, export_subnet
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> folder = export_subnet(model, model.search_space.largest(), os.path.join(tempfile.mkdtemp(), "subnet"))
    >>> files = push_subnet_folder(folder, "me/bert-subnet", dry_run=True)  # doctest: +ELLIPSIS
    Dry run: would upload 3 files from ... to https://huggingface.co/me/bert-subnet:
      README.md
      config.json
      model.safetensors
    >>> files  # without dry_run: uploaded
    ['README.md', 'config.json', 'model.safetensors']
    ```
    """
    check_repo_id(repo_id)
    folder = os.path.abspath(os.fspath(folder))
    _check_folder(folder)
    files = _files_to_upload(folder)
    if dry_run:
        print(f"Dry run: would upload {len(files)} files from {folder} to https://huggingface.co/{repo_id}:")
        for name in files:
            print(f"  {name}")
        return files
    try:
        commit = _upload(folder, repo_id, private=private, token=token, commit_message=commit_message)
    except Exception as e:  # any failure of the network, the token or the Hub: the folder stays saved
        raise PushError(folder, repo_id, e) from e
    logger.info("uploaded %d files to %s", len(files), getattr(commit, "commit_url", repo_id))
    return files


def _upload(folder: str, repo_id: str, *, private: bool, token: str | None, commit_message: str) -> Any:
    """Create the model repo if needed and upload `folder` in one commit; returns the commit info."""
    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True, token=token, repo_type="model")
    return api.upload_folder(
        repo_id=getattr(url, "repo_id", None) or repo_id,
        folder_path=folder,
        repo_type="model",
        commit_message=commit_message,
        token=token,
    )
