"""Argument checks shared by the whole library: each raises a `TypeError`/`ValueError` that names the field, the value
and what is allowed, and returns the checked (normalised) value.

Example:

```python
>>> from hf_nas.validation import check_int, check_size, pair
>>> check_int("num_samples", 4, minimum=1)
4
>>> check_size("hidden_size", 48, 64)
48
>>> pair(224)
(224, 224)
>>> check_int("num_samples", 0, minimum=1)
Traceback (most recent call last):
    ...
ValueError: `num_samples` must be an int >= 1, got 0.
```
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "check_device",
    "check_float",
    "check_floats",
    "check_int",
    "check_min_run_time",
    "check_model_path",
    "check_positive_int",
    "check_size",
    "check_wait_for_lock",
    "pair",
]


def check_int(field: str, value: Any, minimum: int | None = None) -> int:
    """`value` as an int (bools refused), at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{field}` must be an int, got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{field}` must be an int >= {minimum}, got {value}.")
    return value


def check_positive_int(field: str, value: Any) -> int:
    """`value` as an int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{field}` must be an int, got {value!r} of type {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"`{field}` must be a positive int (>= 1), got {value}.")
    return value


def check_size(field: str, value: Any, maximum: int) -> int:
    """An active size of an elastic module: an int from 1 to the module's full size `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{field}` must be an int, got {value!r}.")
    if not 1 <= value <= maximum:
        raise ValueError(f"`{field}`={value} is out of range; allowed: 1 to {maximum}.")
    return value


def check_float(field: str, value: Any) -> float:
    """`value` as a finite float (bools refused; any real number accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{field}` must be a real number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{field}` must be finite, got {value}.")
    return value


def check_floats(field: str, values: Any) -> tuple[float, ...]:
    """A sequence of finite real numbers (numpy scalars and one-element tensors accepted) as a tuple of floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"`{field}` must be a sequence of numbers, got {values!r} of type {type(values).__name__}.")
    floats = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
            raise TypeError(f"`{field}[{i}]` must be a number, got {value!r} of type {type(value).__name__}.")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"`{field}[{i}]` must be finite, got {value}.")
        floats.append(value)
    return tuple(floats)


def pair(value: Any) -> tuple[int, int]:
    """An image or patch size as `(height, width)`: an int `n` is `(n, n)`, a pair is kept."""
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def check_device(device: Any) -> torch.device:
    """A torch device string or `torch.device` that exists on this machine, as a `torch.device`."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"`device` must be a string such as 'cpu' or 'cuda:0', got {device!r}.")
    try:
        parsed = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"`device`={device!r} is not a valid torch device string (e.g. 'cpu', 'cuda:0'): {e}") from e
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device`={device!r} asks for CUDA, but torch.cuda.is_available() is False; use 'cpu'.")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"`device`={device!r} is out of range: this machine has CUDA devices 0 to {count - 1}.")
    return parsed


def check_min_run_time(min_run_time: Any) -> float:
    """A positive, finite number of seconds, as a float."""
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)):
        raise TypeError(f"`min_run_time` must be a number of seconds, got {min_run_time!r}.")
    if not (math.isfinite(min_run_time) and min_run_time > 0):
        raise ValueError(f"`min_run_time` must be a positive, finite number of seconds, got {min_run_time}.")
    return float(min_run_time)


def check_model_path(option: str, path: Any) -> str:
    """A checkpoint location given on the command line (`option` names it, e.g. `--supernet`): an existing local
    folder, or something that can only be a Hub id. A path that looks local but does not exist (it starts with `.`,
    `/` or `~`, has more than one `/`, or its first folder exists here, as in `out/supernte`) is refused with one line
    naming it, instead of a Hub lookup that fails with an unrelated message.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas.validation import check_model_path
    >>> folder = tempfile.mkdtemp()
    >>> check_model_path("--supernet", folder) == folder
    True
    >>> check_model_path("--model_name_or_path", "google-bert/bert-base-uncased")  # a Hub id is left to the Hub
    'google-bert/bert-base-uncased'
    >>> check_model_path("--supernet", os.path.join(folder, "supernte"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: --supernet .../supernte does not exist (no such local folder, and not a Hub model id).
    ```
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"{option} must be a local folder or a Hub model id, got {path!r}.")
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    first = path.split("/", 1)[0]
    looks_local = (
        path.startswith((".", "/", "~", os.sep))
        or path.count("/") > 1
        or (os.sep != "/" and os.sep in path)
        or ("/" in path and os.path.isdir(first))
    )
    if looks_local:
        raise ValueError(f"{option} {path} does not exist (no such local folder, and not a Hub model id).")
    return path


def check_wait_for_lock(value: Any) -> float:
    """`--wait_for_lock`: seconds to wait for another writer of an output folder, >= 0 (`inf`: no limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"--wait_for_lock must be a number of seconds >= 0 (inf: no limit), got {value}.")
    return float(value)
