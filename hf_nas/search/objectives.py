"""Objectives: the numbers a search measures for each subnet.

An objective is a callable `(model, subnet) -> float` with a `name` (its registry key and its column in the search
results), a `direction` (`"maximize"` or `"minimize"`) and a `cheap` flag: cheap objectives are arithmetic on the
config (parameters, MACs), so a search may compute them for every candidate; the others (latency, accuracy) run the
model. [`Objective.describe`] returns the settings of an objective, recorded with the results so that results
measured under other settings (another sequence length, device or validation set) can be detected.

New objectives plug in by name:

```python
>>> from hf_nas.search.objectives import Objective, get_objective, register_objective
>>> @register_objective
... class DepthObjective(Objective):
...     name = "depth"
...     direction = "minimize"
...     cheap = True
...
...     def __call__(self, model, subnet):
...         return float(subnet.num_hidden_layers)
>>> get_objective("depth").describe()
{'name': 'depth', 'direction': 'minimize'}
```
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ..costs import (
    DEFAULT_MAX_RELATIVE_IQR,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_WARMUP_RUNS,
    LatencyResult,
    NoisyLatencyError,
    check_latency_options,
    count_macs,
    count_parameters,
    measure_latency,
)
from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..validation import check_device, check_min_run_time, check_positive_int
from .latency_table import (
    DEFAULT_SEQUENCE_LENGTH,
    LatencySettings,
    LatencyTable,
    cached_latency_table,
    device_name,
)
from .pareto import DIRECTIONS

__all__ = [
    "LatencyObjective",
    "MacsObjective",
    "OBJECTIVES",
    "Objective",
    "ParametersObjective",
    "PredictedLatencyObjective",
    "TaskMetricObjective",
    "get_objective",
    "pad_and_stack",
    "register_objective",
]

logger = logging.getLogger(__name__)


class Objective(ABC):
    """A number measured for a subnet of a supernet.

    Subclasses set three class attributes and implement `__call__`:
    - `name` (`str`): the registry key, and the column name in search results;
    - `direction` (`str`): `"maximize"` or `"minimize"`;
    - `cheap` (`bool`): True if computed analytically, without running the model, so a search may compute it for
      every candidate.

    Settings that change the value (sequence length, device, validation set, ...) belong in [`describe`].

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.search.objectives import get_objective
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> macs = get_objective("macs", sequence_length=16)
    >>> macs(model, model.search_space.smallest()) < macs(model, model.search_space.largest())
    True
    ```
    """

    name: ClassVar[str]
    direction: ClassVar[str]
    cheap: ClassVar[bool]
    exclusive: ClassVar[bool] = False
    """True for a timing: a search over several processes measures it in one process at a time, so that timings do
    not run beside each other."""

    @abstractmethod
    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        """The value of the objective for `subnet` of the supernet `model`."""

    def prepare(self, model: nn.Module) -> None:
        """Get ready to measure subnets of `model` (e.g. measure or load a latency table). A search calls it once,
        before anything else, in one process at a time; the default does nothing."""
        return None

    def reference_value(self, model: nn.Module) -> float | None:
        """The value fixed in advance that a subnet must beat to count in the hypervolume (the reference point), or
        `None` when the objective has none: the full model's cost for a cost, the majority class for a task metric.
        The default is `None`."""
        return None

    def ideal_value(self) -> float | None:
        """The best value the objective can take (the 1 of the normalized hypervolume), or `None` when unbounded:
        0 for a cost, 1 for accuracy or F1. The default is `None`."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-serializable settings of this objective: its `name` and `direction`, and in subclasses everything that
        changes its value. Stored with search results so that results from other settings can be detected."""
        return {"name": self.name, "direction": self.direction}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k not in ("name", "direction"))
        return f"{type(self).__name__}({settings})"


OBJECTIVES: dict[str, type[Objective]] = {}

_O = TypeVar("_O", bound=type[Objective])


def register_objective(cls: _O) -> _O:
    """Class decorator: make an [`Objective`] subclass available to [`get_objective`] under its `name`.

    Raises `TypeError` if `cls` is not an `Objective` subclass or lacks `name`, `direction` or `cheap`, and
    `ValueError` if its `direction` is not allowed or another class is registered under its name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"register_objective expects a subclass of Objective, got {cls!r}.")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}.name must be a non-empty str (the registry key), got {name!r}.")
    direction = getattr(cls, "direction", None)
    if direction not in DIRECTIONS:
        raise ValueError(f"{cls.__name__}.direction={direction!r} is not allowed; allowed: {list(DIRECTIONS)}.")
    if not isinstance(getattr(cls, "cheap", None), bool):
        raise TypeError(f"{cls.__name__}.cheap must be a bool, got {getattr(cls, 'cheap', None)!r}.")
    registered = OBJECTIVES.get(name)
    if registered is not None and registered is not cls:
        raise ValueError(
            f"An objective named {name!r} is registered already ({registered.__module__}.{registered.__qualname__}); "
            "give the new class another `name`."
        )
    OBJECTIVES[name] = cls
    return cls


def get_objective(name: str, **kwargs: Any) -> Objective:
    """Build the objective registered under `name` with the keyword arguments of its constructor.

    Raises `ValueError` for an unknown name (listing the registered ones) and `TypeError` for keyword arguments the
    objective does not take (listing those it does).

    Example:

    ```python
    >>> from hf_nas.search.objectives import get_objective
    >>> get_objective("latency", sequence_length=64, device="cpu").describe()["sequence_length"]
    64
    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str naming an objective, got {name!r}; allowed: {sorted(OBJECTIVES)}.")
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; allowed: {sorted(OBJECTIVES)}.")
    cls = OBJECTIVES[name]
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        allowed = [p.name for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise TypeError(
            f"Bad arguments {sorted(kwargs)} for objective {name!r} ({e}); allowed keyword arguments: {allowed}."
        ) from None
    return cls(**kwargs)


def _check_supernet(model: Any) -> None:
    if not isinstance(model, SupernetMixin):
        raise TypeError(f"`model` must be an elastic supernet (e.g. ElasticBert*), got {type(model).__name__}.")


# ----------------------------------------------------------------------------------------------------------------
# analytic costs
@register_objective
class ParametersObjective(Objective):
    """Number of parameters of the extracted subnet ([`~hf_nas.count_parameters`]), to minimize.

    Example:

    ```python
    >>> from hf_nas.search.objectives import get_objective
    >>> get_objective("params").cheap
    True
    ```
    """

    name = "params"
    direction = "minimize"
    cheap = True

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        _check_supernet(model)
        return float(count_parameters(model, subnet))

    def reference_value(self, model: nn.Module) -> float:
        """The parameters of the whole supernet."""
        return self(model, model.max_subnet())

    def ideal_value(self) -> float:
        return 0.0


@register_objective
class MacsObjective(Objective):
    """Multiply-accumulates of one forward pass of the extracted subnet ([`~hf_nas.count_macs`]), to minimize.

    Args:
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        batch_size (`int`, *optional*, defaults to 1): sequences (or images) per forward pass.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).

    Example:

    ```python
    >>> from hf_nas.search.objectives import MacsObjective
    >>> MacsObjective(sequence_length=64).describe()
    {'name': 'macs', 'direction': 'minimize', 'sequence_length': 64, 'batch_size': 1}
    ```
    """

    name = "macs"
    direction = "minimize"
    cheap = True

    def __init__(self, sequence_length: int = 128, batch_size: int = 1, image_size: int | list[int] | None = None):
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.image_size = _check_image_size(image_size)

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        _check_supernet(model)
        size = _input_size(model, self.sequence_length, self.image_size)
        return float(count_macs(model, subnet, batch_size=self.batch_size, **size))

    def reference_value(self, model: nn.Module) -> float:
        """The MACs of the whole supernet."""
        return self(model, model.max_subnet())

    def ideal_value(self) -> float:
        return 0.0

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "sequence_length": self.sequence_length,
            "batch_size": self.batch_size,
            **({} if self.image_size is None else {"image_size": self.image_size}),
        }


def _check_image_size(image_size: Any) -> int | list[int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return [check_positive_int("image_size", int(v)) for v in image_size]
    return check_positive_int("image_size", image_size)


def _input_size(model: nn.Module, sequence_length: int, image_size: Any) -> dict[str, Any]:
    """The cost functions' input-size argument for `model`: image models take `image_size`, text models
    `sequence_length`."""
    if get_family(model.config).is_image:
        return {"image_size": image_size}
    return {"sequence_length": sequence_length}


# ----------------------------------------------------------------------------------------------------------------
# measured objectives
@register_objective
class LatencyObjective(Objective):
    """Median forward latency of the *extracted* subnet in milliseconds ([`~hf_nas.measure_latency`]), to minimize.

    Each call extracts the subnet and times it with [`~hf_nas.measure_latency`], the function `hf-nas extract` and the
    model cards use too, so a latency found by the search is the one the card states (measured alike: same batch,
    input size, device and threads). That is: `warmup_runs` untimed passes, then rounds of at least `min_run_time`
    seconds until the interquartile range of the times is at most `max_relative_iqr` of their median (up to
    `max_rounds` rounds). It is not cheap; the supernet is neither moved nor changed.

    A latency still too spread after `max_rounds` rounds (a busy machine) is never kept silently. By default
    (`on_noisy="flag"`) the value is returned, a warning naming the subnet and the spread is logged and the whole
    measurement ([`~hf_nas.LatencyResult`] dict, `noisy: true`) is appended to `noisy_results`, so the search goes
    on but the suspect values can be found and measured again. With `on_noisy="raise"` the objective refuses: it
    raises [`~hf_nas.costs.NoisyLatencyError`], which stops the search (its results so far are saved, so running it
    again on a quiet machine resumes it).

    Args:
        batch_size (`int`, *optional*, defaults to 1): sequences (or images) per forward pass.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        device (`str`, *optional*, defaults to `"cpu"`): torch device string, e.g. `"cpu"` or `"cuda:0"`.
        num_threads (`int`, *optional*): torch intra-op threads; defaults to `torch.get_num_threads()` at each call.
        min_run_time (`float`, *optional*, defaults to 0.5): seconds of timed runs at least, per round.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).
        warmup_runs (`int`, *optional*, defaults to 5): untimed forward passes before timing.
        max_relative_iqr (`float`, *optional*, defaults to 0.25): the largest accepted interquartile range / median.
        max_rounds (`int`, *optional*, defaults to 3): measurement rounds at most while the spread is larger.
        on_noisy (`str`, *optional*, defaults to `"flag"`): `"flag"` returns a too spread latency with a warning
            and records it in `noisy_results`; `"raise"` refuses it.

    Example:

    ```python
    >>> from hf_nas.search.objectives import LatencyObjective
    >>> described = LatencyObjective(sequence_length=64, num_threads=4).describe()
    >>> described["num_threads"], described["max_relative_iqr"], described["max_rounds"]
    (4, 0.25, 3)
    ```
    """

    name = "latency"
    direction = "minimize"
    cheap = False
    exclusive = True

    def __init__(
        self,
        batch_size: int = 1,
        sequence_length: int = 128,
        device: str = "cpu",
        num_threads: int | None = None,
        min_run_time: float = 0.5,
        image_size: int | list[int] | None = None,
        warmup_runs: int = DEFAULT_WARMUP_RUNS,
        max_relative_iqr: float = DEFAULT_MAX_RELATIVE_IQR,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_noisy: str = "flag",
    ):
        self.image_size = _check_image_size(image_size)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.device = str(check_device(device))
        self.num_threads = None if num_threads is None else check_positive_int("num_threads", num_threads)
        self.min_run_time = check_min_run_time(min_run_time)
        self.warmup_runs, self.max_relative_iqr, self.max_rounds, self.on_noisy = check_latency_options(
            warmup_runs, max_relative_iqr, max_rounds, on_noisy
        )
        self.noisy_results: list[dict[str, Any]] = []  # with on_noisy="flag": {"subnet": ..., "latency": ...}

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        _check_supernet(model)
        try:
            result = measure_latency(
                model,
                subnet,
                batch_size=self.batch_size,
                device=self.device,
                num_threads=self.num_threads,
                min_run_time=self.min_run_time,
                warmup_runs=self.warmup_runs,
                max_relative_iqr=self.max_relative_iqr,
                max_rounds=self.max_rounds,
                on_noisy="raise",  # decided here, with the subnet in the message
                **_input_size(model, self.sequence_length, self.image_size),
            )
        except NoisyLatencyError as e:
            if self.on_noisy == "raise":
                raise NoisyLatencyError(
                    f"Refused the latency of subnet {subnet.to_dict()}: {e} To keep such values with a warning "
                    "instead, use on_noisy='flag'.",
                    e.result,
                ) from None
            result = e.result
            self.noisy_results.append({"subnet": subnet.to_dict(), "latency": result.to_dict()})
            logger.warning("Kept with a flag in `noisy_results`, for subnet %s: %s", subnet.to_dict(), e)
        return float(result.median_ms)

    def reference_value(self, model: nn.Module) -> float:
        """The measured latency of the whole supernet (its largest subnet, extracted)."""
        return self(model, model.search_space.largest())

    def ideal_value(self) -> float:
        return 0.0

    def describe(self) -> dict[str, Any]:
        """The settings, with `num_threads` resolved (`torch.get_num_threads()` when None) and the `hardware` name
        (CUDA device name or CPU processor), since a latency only compares with latencies measured the same way."""
        num_threads = torch.get_num_threads() if self.num_threads is None else self.num_threads
        return {
            **super().describe(),
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "device": self.device,
            "num_threads": num_threads,
            "min_run_time": self.min_run_time,
            "warmup_runs": self.warmup_runs,
            "max_relative_iqr": self.max_relative_iqr,
            "max_rounds": self.max_rounds,
            "unit": LatencyResult.UNIT,
            "hardware": device_name(self.device),
            **({} if self.image_size is None else {"image_size": self.image_size}),
        }


@register_objective
class PredictedLatencyObjective(Objective):
    """The latency of the extracted subnet in milliseconds predicted by a per-device latency table
    ([`~hf_nas.search.latency_table.LatencyTable`]: per-layer timings plus a correction learned on whole-model
    measurements), to minimize.

    The table is measured once per device and setting and cached (see
    [`~hf_nas.search.latency_table.cached_latency_table`]); after that a value costs a table lookup, so the objective
    is cheap and a search can use it for every candidate (as HAT does). [`prepare`] loads or measures the table; a
    search calls it once, one process at a time.

    Args:
        batch_size (`int`, *optional*, defaults to 1): sequences per forward pass (batch 1 and 8 are the defaults of
            the benchmark and the cards).
        sequence_length (`int`, *optional*, defaults to 128): tokens per sequence.
        device (`str`, *optional*, defaults to `"cpu"`): torch device the table is measured on.
        num_threads (`int`, *optional*): torch intra-op threads; defaults to `torch.get_num_threads()`.
        cache_dir (`str`, *optional*): where tables are cached (default: `$HF_NAS_CACHE/latency` or
            `~/.cache/hf_nas/latency`).
        table ([`~hf_nas.search.latency_table.LatencyTable`], *optional*): a table to use as it is (its settings are
            checked against the model's at `prepare`).
        correction_subnets (`int`, *optional*, defaults to 10): whole subnets measured for the correction when a
            table is built.

    Example:

    ```python
    >>> from hf_nas.search.objectives import get_objective
    >>> objective = get_objective("predicted_latency", batch_size=8)
    >>> objective.cheap, objective.describe()["batch_size"], objective.describe()["sequence_length"]
    (True, 8, 128)
    ```
    """

    name = "predicted_latency"
    direction = "minimize"
    cheap = True

    def __init__(
        self,
        batch_size: int = 1,
        sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
        device: str = "cpu",
        num_threads: int | None = None,
        cache_dir: str | None = None,
        table: LatencyTable | None = None,
        correction_subnets: int = 10,
    ):
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.device = str(check_device(device))
        self.num_threads = None if num_threads is None else check_positive_int("num_threads", num_threads)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        if table is not None and not isinstance(table, LatencyTable):
            raise TypeError(f"`table` must be a LatencyTable, got {type(table).__name__}.")
        self.table = table
        self.correction_subnets = check_positive_int("correction_subnets", correction_subnets)

    def prepare(self, model: nn.Module) -> None:
        """Load the cached table of these settings, or measure and cache it; a given `table` is checked instead."""
        _check_supernet(model)
        if self.table is not None:
            wanted = LatencySettings.for_model(
                model, self.batch_size, self.sequence_length, self.device, self.num_threads
            )
            differences = self.table.settings.differences(wanted)
            if differences:
                raise ValueError(f"The given latency table is for other settings: {'; '.join(differences)}.")
            return
        self.table = cached_latency_table(
            model,
            self.batch_size,
            self.sequence_length,
            self.device,
            self.num_threads,
            cache_dir=self.cache_dir,
            correction_subnets=self.correction_subnets,
        )

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        if self.table is None:
            self.prepare(model)
        return float(self.table.predict(subnet))

    def reference_value(self, model: nn.Module) -> float:
        """The predicted latency of the whole supernet (its largest subnet)."""
        return self(model, model.search_space.largest())

    def ideal_value(self) -> float:
        return 0.0

    def describe(self) -> dict[str, Any]:
        num_threads = torch.get_num_threads() if self.num_threads is None else self.num_threads
        return {
            **super().describe(),
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "device": self.device,
            "num_threads": num_threads,
            "unit": LatencyResult.UNIT,
            "hardware": device_name(self.device),
        }


# ----------------------------------------------------------------------------------------------------------------
# task metric
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "pixel_values")
_LABEL_KEYS = ("labels", "label")
_IGNORE_INDEX = -100  # labels of padded or ignored tokens, as in transformers' losses


def pad_and_stack(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Default collate function of [`TaskMetricObjective`]: one tensor per key; values of different lengths (1-D
    sequences) are right-padded to the longest in the batch, with 0 (the pad id of BERT vocabularies, and a masked-out
    `attention_mask`) or -100 for `labels` (ignored, as in transformers' losses)."""
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        values = [torch.as_tensor(f[key]) for f in features]
        if all(v.shape == values[0].shape for v in values):
            batch[key] = torch.stack(values)  # (B, ...)
            continue
        if any(v.dim() != 1 for v in values):
            raise ValueError(
                f"Cannot pad `{key}`: values of shapes {sorted({tuple(v.shape) for v in values})} differ, and only "
                "1-D sequences are padded. Pass a `collate_fn` (or a `tokenizer`) that handles them."
            )
        pad = _IGNORE_INDEX if key == "labels" else 0
        batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True, padding_value=pad)  # (B, T)
    return batch


def _row_chunks(dataset: Any, batch_size: int) -> list[list[dict[str, Any]]]:
    """Read `dataset` once, as lists of at most `batch_size` rows (dicts)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency of evaluate
        datasets = None
    if datasets is not None and isinstance(dataset, datasets.Dataset):
        chunks = []
        for columns in dataset.iter(batch_size=batch_size):  # dict of lists
            n = len(next(iter(columns.values())))
            chunks.append([{k: v[i] for k, v in columns.items()} for i in range(n)])
        return chunks
    if isinstance(dataset, (str, bytes, Mapping)) or not isinstance(dataset, Iterable):
        raise TypeError(
            "`dataset` must be a tokenized `datasets.Dataset` or a list of dicts (input_ids, attention_mask, labels, "
            f"...), got {type(dataset).__name__}."
        )
    rows = list(dataset)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"`dataset[{i}]` must be a dict of model inputs and labels, got {type(row).__name__}.")
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def _select_columns(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Model inputs and the label of one row, label renamed to `labels`; other columns (text, idx, ...) dropped."""
    selected = {k: row[k] for k in _MODEL_INPUTS if k in row}
    label_key = next((k for k in _LABEL_KEYS if k in row), None)
    if label_key is None or not selected:
        raise ValueError(
            f"Example {index} has the columns {sorted(row)}; a tokenized example needs a label column (one of "
            f"{list(_LABEL_KEYS)}) and model inputs (some of {list(_MODEL_INPUTS)})."
        )
    selected["labels"] = row[label_key]
    return selected


def _data_hash(batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> str:
    """SHA-256 of the batched inputs and labels: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for inputs, labels in batches:
        for key, tensor in [*sorted(inputs.items()), ("labels", labels)]:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@register_objective
class TaskMetricObjective(Objective):
    """A task metric (accuracy by default) of the supernet with the subnet active, on a validation set; to maximize.

    The batches are built once, in the constructor: examples are grouped `batch_size` at a time, collated to padded
    tensors and cached (and moved to the evaluation device once). Each call then only runs forward passes: the model
    goes to eval mode under `torch.inference_mode`, with `model.subnet(subnet)` active; the predictions are the argmax
    of the logits, and the metric compares them with the labels (positions labelled -100, e.g. padding in token
    classification, are left out). The previously active subnet and the training mode are restored afterwards.

    The value is measured through the supernet, not an extracted copy: the outputs are equal (see
    [`~hf_nas.extract_subnet`]) and no extraction is paid per candidate.

    Args:
        dataset (`datasets.Dataset` or `list[dict]` / any iterable of dicts):
            Tokenized validation examples: model inputs (`input_ids`, `attention_mask`, `token_type_ids`, ...) and a
            `labels` (or `label`) column. Other columns (raw text, `idx`) are dropped.
        metric (`str`, *optional*, defaults to `"accuracy"`):
            Loaded with [`hf_nas.metrics.load_metric`] (`"accuracy"` and `"f1"` ship with hf-nas and work offline).
            Must be higher-is-better. It also names the objective: `objective.name == metric`, the results column.
        batch_size (`int`, *optional*, defaults to 64):
            Examples per forward pass.
        collate_fn (`Callable[[list[dict]], dict[str, torch.Tensor]]`, *optional*):
            Turns a list of examples (model inputs and `labels`) into a batch of tensors with a `labels` entry.
            Defaults to `DataCollatorWithPadding(tokenizer)` if a `tokenizer` is given, else to padding each sequence
            with 0 (labels with -100) to the longest in its batch.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Pads with the tokenizer's pad token and side, through transformers' `DataCollatorWithPadding`.
        device (`str`, *optional*):
            Where the evaluation runs; the model must be there. Defaults to the model's device at each call.
        metric_kwargs (`dict`, *optional*):
            Extra arguments of the metric's `compute`, e.g. `{"average": "macro"}` for F1 over several classes.
        model_kwargs (`dict`, *optional*):
            Extra keyword arguments of every forward pass, e.g. `{"interpolate_pos_encoding": True}` for a ViT
            evaluated at another image size than its config's.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.search.objectives import TaskMetricObjective
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> data = [{"input_ids": [2, 5, 7], "attention_mask": [1, 1, 1], "label": 1},
    ...         {"input_ids": [2, 9], "attention_mask": [1, 1], "label": 0}]
    >>> accuracy = TaskMetricObjective(data, batch_size=2)
    >>> 0.0 <= accuracy(model, model.search_space.smallest()) <= 1.0
    True
    ```
    """

    name = "accuracy"
    direction = "maximize"
    cheap = False

    def __init__(
        self,
        dataset: Any,
        metric: str = "accuracy",
        batch_size: int = 64,
        collate_fn: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
        tokenizer: Any = None,
        device: str | None = None,
        metric_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ):
        from ..metrics import load_metric

        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(f"`model_kwargs` must be a dict of forward arguments, got {model_kwargs!r}.")
        self.model_kwargs = dict(model_kwargs or {})

        if not isinstance(metric, str) or not metric:
            raise TypeError(f"`metric` must be a metric name such as 'accuracy' or 'f1', got {metric!r}.")
        self.batch_size = check_positive_int("batch_size", batch_size)
        if collate_fn is not None and tokenizer is not None:
            raise ValueError(
                "Pass either `collate_fn` or `tokenizer` (which builds DataCollatorWithPadding), not both."
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"`collate_fn` must be callable, got {type(collate_fn).__name__}.")
        if metric_kwargs is not None and not isinstance(metric_kwargs, dict):
            raise TypeError(
                f"`metric_kwargs` must be a dict of arguments to the metric's compute, got {metric_kwargs!r}."
            )
        self.device = None if device is None else check_device(device)
        self.metric = metric
        self.metric_kwargs = dict(metric_kwargs or {})
        self.name = os.path.basename(metric.rstrip("/"))  # the results column: "accuracy", "f1", ...
        self._metric = load_metric(metric)

        if tokenizer is not None:
            from transformers import DataCollatorWithPadding

            collate_fn = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        self._collate = pad_and_stack if collate_fn is None else collate_fn
        self._batches = self._build_batches(dataset)
        self._labels = torch.cat([labels.flatten() for _, labels in self._batches])  # (N,) or (N * T,)
        self._num_examples = sum(len(labels) for _, labels in self._batches)
        self._data_hash = _data_hash(self._batches)
        self._device_batches: tuple[torch.device, list[tuple[dict[str, torch.Tensor], torch.Tensor]]] | None = None
        if self.device is not None:
            self._batches_on(self.device)

    # ------------------------------------------------------------------------------------------------------------
    # building the batches (once)
    def _build_batches(self, dataset: Any) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        batches = []
        index = 0
        for rows in _row_chunks(dataset, self.batch_size):
            features = [_select_columns(row, index + i) for i, row in enumerate(rows)]
            index += len(rows)
            batch = dict(self._collate(features))
            if "labels" not in batch:
                raise ValueError(f"`collate_fn` returned the keys {sorted(batch)}; it must return a `labels` entry.")
            tensors = {}
            for key, value in batch.items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"`collate_fn` returned {type(value).__name__} for `{key}`; expected a tensor.")
                tensors[key] = value
            labels = tensors.pop("labels").long()
            batches.append((tensors, labels))
        if not batches:
            raise ValueError("`dataset` is empty: give at least one validation example.")
        return batches

    @property
    def batches(self) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """The cached `(inputs, labels)` batches, built once by the constructor (on CPU)."""
        return self._batches

    def _batches_on(self, device: torch.device) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """The batches on `device`, moved once and kept for the latest device."""
        if device.type == "cpu":
            return self._batches
        if self._device_batches is None or self._device_batches[0] != device:
            moved = [
                ({k: v.to(device) for k, v in inputs.items()}, labels.to(device)) for inputs, labels in self._batches
            ]
            self._device_batches = (device, moved)
        return self._device_batches[1]

    # ------------------------------------------------------------------------------------------------------------
    # evaluation
    def _model_device(self, model: nn.Module) -> torch.device:
        parameter = next(model.parameters(), None)
        model_device = torch.device("cpu") if parameter is None else parameter.device
        if self.device is None:
            return model_device
        if model_device.type != self.device.type or (
            self.device.index is not None and model_device.index != self.device.index
        ):
            raise ValueError(
                f"The model is on {model_device} but the objective evaluates on `device`={str(self.device)!r}; move "
                f"the model there (model.to({str(self.device)!r})) or leave `device` unset to use the model's device."
            )
        return model_device

    @torch.inference_mode()
    def _predict(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        predictions = []
        for inputs, labels in self._batches_on(device):
            outputs = model(**inputs, **self.model_kwargs)
            logits = outputs.logits if hasattr(outputs, "logits") else outputs[0]  # (B, C) or (B, T, C)
            if logits.shape[:-1] != labels.shape:
                raise ValueError(
                    f"The model's logits of shape {tuple(logits.shape)} do not match labels of shape "
                    f"{tuple(labels.shape)}: expected logits of shape labels.shape + (num_labels,)."
                )
            predictions.append(logits.argmax(dim=-1).flatten().cpu())  # (B,) or (B * T,)
        return torch.cat(predictions)

    def _eval_predictions(self, model: nn.Module, subnet: SubnetConfig | None = None) -> torch.Tensor:
        """`_predict` in eval mode (with `subnet` active, if given); the training mode is restored afterwards."""
        device = self._model_device(model)
        was_training = model.training
        model.eval()
        try:
            with contextlib.nullcontext() if subnet is None else model.subnet(subnet):
                return self._predict(model, device)
        finally:
            model.train(was_training)

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        _check_supernet(model)
        return self._score(self._eval_predictions(model, subnet))

    def evaluate_model(self, model: nn.Module) -> float:
        """The metric of `model` as it is, on the same batches: any model with the task's head, e.g. an extracted
        subnet reloaded with plain transformers, or a compressed one. For a supernet it is the metric of its active
        subnet. The model is evaluated in eval mode under `torch.inference_mode`; its training mode is restored.

        ```python
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> from hf_nas.search.objectives import TaskMetricObjective
        >>> model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
        ...                                                  num_attention_heads=4, intermediate_size=64))
        >>> data = [{"input_ids": [2, 5, 7], "label": 1}, {"input_ids": [2, 9], "label": 0}]
        >>> 0.0 <= TaskMetricObjective(data).evaluate_model(model) <= 1.0
        True
        ```
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        return self._score(self._eval_predictions(model))

    def _score(self, predictions: torch.Tensor) -> float:
        keep = self._labels != _IGNORE_INDEX
        result = self._metric.compute(
            predictions=predictions[keep].tolist(), references=self._labels[keep].tolist(), **self.metric_kwargs
        )
        if self.name in result:
            value = result[self.name]
        elif len(result) == 1:
            value = next(iter(result.values()))
        else:
            raise ValueError(
                f"The metric {self.metric!r} returned {sorted(result)}; cannot tell which is {self.name!r}."
            )
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"The metric {self.metric!r} is NaN on this validation set (no labelled positions?).")
        return value

    def reference_value(self, model: nn.Module | None = None) -> float:
        """The metric of always predicting the most frequent label of the validation data (the majority class): a
        subnet below it has learned nothing worth keeping."""
        keep = self._labels != _IGNORE_INDEX
        labels = self._labels[keep]
        majority = int(torch.mode(labels).values) if len(labels) else 0
        result = self._metric.compute(
            predictions=[majority] * len(labels), references=labels.tolist(), **self.metric_kwargs
        )
        return float(result[self.name] if self.name in result else next(iter(result.values())))

    def ideal_value(self) -> float | None:
        """1 for the bounded metrics shipped with hf-nas (accuracy, F1), else `None`."""
        from ..metrics import BUNDLED_METRICS

        return 1.0 if self.metric in BUNDLED_METRICS else None

    def describe(self) -> dict[str, Any]:
        """The metric and its arguments, the batch size, the number of examples, the evaluation device (None: the
        model's) and `data_hash`, a SHA-256 of the batched validation data, so results on another validation set or
        tokenization are told apart."""
        return {
            **super().describe(),
            "metric": self.metric,
            "metric_kwargs": self.metric_kwargs,
            "batch_size": self.batch_size,
            "num_examples": self._num_examples,
            "device": None if self.device is None else str(self.device),
            "data_hash": self._data_hash,
        }
