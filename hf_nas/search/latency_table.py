"""Latency that is true: a per-device table of per-layer timings of a supernet's extracted subnets, a learned
correction on whole-model measurements, and paired measurement that cancels the drift of a busy machine.

A subnet's latency is predicted as the sum of its parts plus a correction:

- the **parts** ([`LatencyTable.parts`]): for every kept layer, the time of its attention block at its head count
  and of its FFN block at its width, at the subnet's hidden size, from a small table measured once per device and
  setting (batch size, sequence length, threads) on the extracted layers;
- the **correction** ([`LatencyTable.correction`]): `(scale - 1) x parts + offset + per_layer_ms x depth`, fitted
  (least squares on the relative error) on whole-model measurements of a few subnets; it absorbs the embeddings, the
  head and what the per-block timings miss (memory traffic between blocks and layers, framework overhead).

Every time in a table is **paired** ([`PairedLatencyMeter`]): the measured callable and a fixed reference model
(the whole supernet, extracted) are timed in alternation, block after block, and the median ratio of adjacent blocks
is multiplied by the reference's latency measured once at the start. A slow drift of the machine's load slows both
sides of a ratio alike and cancels; the raw (unpaired) median is kept beside the corrected value.

Tables are cached on disk ([`cached_latency_table`]), one file per device name and settings; a table made for
another device, batch size, sequence length, thread count, torch version or supernet shape is refused, never used.
The defaults users see are batch 1 and batch 8 ([`DEFAULT_BATCH_SIZES`]) at 128 tokens.

```python
>>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
>>> from hf_nas.search.latency_table import build_latency_table
>>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
...                            intermediate_size=64, max_position_embeddings=32)
>>> model = ElasticBertForSequenceClassification(config)
>>> table = build_latency_table(model, sequence_length=16, num_threads=1, rounds=3, min_block_time=0.001,
...                             correction_subnets=3)
>>> subnet = model.search_space.largest()
>>> abs(table.predict(subnet) - (table.parts(subnet) + table.correction(subnet))) < 1e-9
True
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from ..extraction import extract_subnet
from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..utils import atomic_write_text
from ..validation import check_device, check_int, check_positive_int

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_SEQUENCE_LENGTH",
    "TABLE_VERSION",
    "LatencySettings",
    "LatencyTable",
    "PairedLatency",
    "PairedLatencyMeter",
    "PairedTimer",
    "build_latency_table",
    "cached_latency_table",
    "cached_latency_tables",
    "default_cache_dir",
    "device_name",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_SEQUENCE_LENGTH = 128
TABLE_VERSION = 1
_SUPPORTED = ("bert",)  # families whose layers have `attention`, `intermediate` and `output` blocks


def device_name(device: str | torch.device) -> str:
    """The processor `device` stands for: the CUDA device name, or the CPU model (from /proc/cpuinfo on Linux), so
    latencies from another machine can be told apart.

    ```python
    >>> from hf_nas.search.latency_table import device_name
    >>> isinstance(device_name("cpu"), str) and len(device_name("cpu")) > 0
    True
    ```
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:  # Linux: the CPU model, e.g. "AMD EPYC 7R13 Processor"
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def default_cache_dir() -> str:
    """Where [`cached_latency_table`] keeps tables: `$HF_NAS_CACHE/latency`, else `~/.cache/hf_nas/latency`."""
    root = os.environ.get("HF_NAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_nas")
    return os.path.join(root, "latency")


def _architecture(model: nn.Module) -> str:
    """A hash of what a latency depends on besides the device: the family, the shapes of the config and the search
    space (never the weights: two supernets of one shape share a table)."""
    config = model.config
    shape = {
        "model_type": config.model_type,
        "class": type(model).__name__,
        "search_space": model.search_space.to_dict(),
        **{
            key: getattr(config, key, None)
            for key in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "type_vocab_size",
                "num_labels",
                "hidden_act",
            )
        },
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_supernet(model: Any) -> None:
    if not isinstance(model, SupernetMixin):
        raise TypeError(f"`model` must be an elastic supernet (e.g. ElasticBert*), got {type(model).__name__}.")
    family = get_family(model.config)
    if family.model_type not in _SUPPORTED:
        raise ValueError(
            f"Latency tables time the attention and FFN blocks of {list(_SUPPORTED)} layers; {type(model).__name__} "
            f"is a {family.model_type!r} model. Use the measured `latency` objective for it."
        )


# ----------------------------------------------------------------------------------------------------------------
# settings: what a table is valid for
@dataclass(frozen=True)
class LatencySettings:
    """What a latency table is valid for: the device (its name and torch device), the input shape, the threads, the
    torch version and the supernet's shape ([`LatencySettings.for_model`]). A table is only used with equal settings.

    Example:

    ```python
    >>> import dataclasses
    >>> from hf_nas.search.latency_table import LatencySettings
    >>> a = LatencySettings("CPU X", "cpu", 1, 128, 2, "2.13.0", "abc")
    >>> a.differences(dataclasses.replace(a, batch_size=8))
    ['batch_size: 1 in the table, 8 wanted']
    ```
    """

    device_name: str
    device: str
    batch_size: int
    sequence_length: int
    num_threads: int
    torch_version: str
    architecture: str

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        batch_size: int = 1,
        sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> LatencySettings:
        """The settings of timing `model`'s subnets with these inputs on `device` (threads: the current count)."""
        _check_supernet(model)
        parsed = check_device(device)
        sequence_length = check_positive_int("sequence_length", sequence_length)
        if sequence_length > model.config.max_position_embeddings:
            raise ValueError(
                f"`sequence_length`={sequence_length} is longer than the model's max_position_embeddings="
                f"{model.config.max_position_embeddings}; allowed: 1 to {model.config.max_position_embeddings}."
            )
        return cls(
            device_name=device_name(parsed),
            device=str(parsed),
            batch_size=check_positive_int("batch_size", batch_size),
            sequence_length=sequence_length,
            num_threads=torch.get_num_threads()
            if num_threads is None
            else check_positive_int("num_threads", num_threads),
            torch_version=torch.__version__,
            architecture=_architecture(model),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LatencySettings:
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise ValueError(f"Latency settings must be an object with the keys {names}, got {data!r}.")
        return cls(**data)

    def differences(self, wanted: LatencySettings) -> list[str]:
        """The fields where `wanted` differs from these settings, as `'field: mine in the table, theirs wanted'`."""
        return [
            f"{f.name}: {getattr(self, f.name)} in the table, {getattr(wanted, f.name)} wanted"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(wanted, f.name)
        ]

    def file_name(self) -> str:
        """The cache file of these settings: readable settings and a hash of all of them."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        kind = torch.device(self.device).type
        return f"latency-{kind}-b{self.batch_size}-s{self.sequence_length}-t{self.num_threads}-{digest}.json"


# ----------------------------------------------------------------------------------------------------------------
# paired measurement
@dataclass(frozen=True)
class PairedLatency:
    """One paired measurement ([`PairedLatencyMeter.measure`]), times in milliseconds per call.

    Args:
        raw_ms (`float`): median time of the measured callable over the rounds, as timed (load drift included).
        corrected_ms (`float`): the drift-corrected latency: `ratio x reference_baseline_ms`.
        ratio (`float`): median over the rounds of the measured block time / the adjacent reference block time.
        ratio_spread (`float`): interquartile range of those ratios relative to their median.
        reference_ms (`float`): median time of the reference during this measurement.
        reference_baseline_ms (`float`): the reference's latency the corrected values are expressed against.
        rounds (`int`): rounds (pairs of blocks) timed.
    """

    raw_ms: float
    corrected_ms: float
    ratio: float
    ratio_spread: float
    reference_ms: float
    reference_baseline_ms: float
    rounds: int

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _torch_threads(num_threads: int) -> Iterator[None]:
    """Run with `num_threads` intra-op threads (the count the blocks are timed with), then restore the caller's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _time_block(function: Callable[[], Any], number: int, num_threads: int) -> float:
    """Seconds per call of `function`, over one block of `number` calls (`torch.utils.benchmark`, which synchronizes
    accelerators)."""
    timer = benchmark.Timer(stmt="function()", globals={"function": function}, num_threads=num_threads)
    return timer.timeit(number).mean


class PairedTimer:
    """Times callables in alternation with a fixed `reference` callable, so that a drift of the machine's load
    cancels.

    Each measurement runs `warmup_runs` untimed calls of both, then `rounds` rounds of one block of the measured
    callable and one block of the reference (the order alternating: A B, B A, ...), each block at least
    `min_block_time` seconds. A round's ratio compares two adjacent blocks, so a load that changes slowly slows both
    alike; the drift-corrected value is the median ratio times `reference_baseline_ms`, the reference's time measured
    once when the timer is made (or given, so that values measured later are expressed against the same baseline).

    Args:
        reference (`Callable[[], Any]`): the fixed reference (e.g. a forward pass of the whole model).
        num_threads (`int`, *optional*): torch intra-op threads while timing (default: the current count).
        rounds (`int`, *optional*, defaults to 7): pairs of blocks per measurement.
        min_block_time (`float`, *optional*, defaults to 0.05): seconds per block at least.
        warmup_runs (`int`, *optional*, defaults to 2): untimed calls of each side before a measurement.
        reference_baseline_ms (`float`, *optional*): the reference's time to express corrected values against
            (default: measured now, the median of `rounds` blocks).
        device (`str`, *optional*, defaults to `"cpu"`): a CUDA device is synchronized when sizing blocks.

    Example:

    ```python
    >>> import time
    >>> from hf_nas.search.latency_table import PairedTimer
    >>> timer = PairedTimer(lambda: time.sleep(0.002), rounds=3, min_block_time=0.004, reference_baseline_ms=2.0)
    >>> result = timer.measure(lambda: time.sleep(0.001))
    >>> 0.2 < result.ratio < 0.9, result.corrected_ms == result.ratio * 2.0
    (True, True)
    ```
    """

    def __init__(
        self,
        reference: Callable[[], Any],
        num_threads: int | None = None,
        rounds: int = 7,
        min_block_time: float = 0.05,
        warmup_runs: int = 2,
        reference_baseline_ms: float | None = None,
        device: str = "cpu",
    ):
        if not callable(reference):
            raise TypeError(f"`reference` must be a callable to time, got {reference!r}.")
        self.reference = reference
        self.num_threads = (
            torch.get_num_threads() if num_threads is None else check_positive_int("num_threads", num_threads)
        )
        self.rounds = check_positive_int("rounds", rounds)
        if isinstance(min_block_time, bool) or not isinstance(min_block_time, (int, float)) or not min_block_time > 0:
            raise ValueError(f"`min_block_time` must be a number of seconds > 0, got {min_block_time!r}.")
        self.min_block_time = float(min_block_time)
        self.warmup_runs = check_int("warmup_runs", warmup_runs, 0)
        self.device = check_device(device)
        if reference_baseline_ms is None:
            with _torch_threads(self.num_threads):
                self._warm_up(reference)
                number = self._block_size(reference)
                times = [_time_block(reference, number, self.num_threads) for _ in range(self.rounds)]
            reference_baseline_ms = 1e3 * statistics.median(times)
        if isinstance(reference_baseline_ms, bool) or not isinstance(reference_baseline_ms, (int, float)):
            raise TypeError(f"`reference_baseline_ms` must be a number, got {reference_baseline_ms!r}.")
        if not (math.isfinite(reference_baseline_ms) and reference_baseline_ms > 0):
            raise ValueError(f"`reference_baseline_ms` must be a finite number > 0, got {reference_baseline_ms}.")
        self.reference_baseline_ms = float(reference_baseline_ms)

    def _warm_up(self, function: Callable[[], Any]) -> None:
        for _ in range(self.warmup_runs):
            function()

    def _block_size(self, function: Callable[[], Any]) -> int:
        """Calls per block so that a block lasts at least `min_block_time` (from one timed call)."""
        start = time.perf_counter()
        function()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = max(time.perf_counter() - start, 1e-7)
        return max(1, math.ceil(self.min_block_time / seconds))

    def measure(self, function: Callable[[], Any]) -> PairedLatency:
        """Time `function` in alternation with the reference (see the class docstring)."""
        with _torch_threads(self.num_threads):
            self._warm_up(function)
            self._warm_up(self.reference)
            number, reference_number = self._block_size(function), self._block_size(self.reference)
            times, reference_times = [], []
            for r in range(self.rounds):
                pair = [(function, number, times), (self.reference, reference_number, reference_times)]
                for timed, calls, out in pair if r % 2 == 0 else pair[::-1]:
                    out.append(_time_block(timed, calls, self.num_threads))
        ratios = [a / b for a, b in zip(times, reference_times, strict=True)]
        ratio = statistics.median(ratios)
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratio, 0, ratio)
        return PairedLatency(
            raw_ms=1e3 * statistics.median(times),
            corrected_ms=ratio * self.reference_baseline_ms,
            ratio=ratio,
            ratio_spread=(q3 - q1) / ratio if ratio > 0 else math.inf,
            reference_ms=1e3 * statistics.median(reference_times),
            reference_baseline_ms=self.reference_baseline_ms,
            rounds=self.rounds,
        )


class PairedLatencyMeter:
    """Paired latencies ([`PairedTimer`]) of the extracted subnets of a supernet, against the whole supernet
    (extracted) as the fixed reference, on seeded random `input_ids` of the stated batch size and sequence length.

    Args:
        model (`nn.Module`): the supernet; its subnets are extracted and timed, the supernet itself is not changed.
        batch_size (`int`, *optional*, defaults to 1): sequences per forward pass.
        sequence_length (`int`, *optional*, defaults to 128): tokens per sequence.
        device (`str`, *optional*, defaults to `"cpu"`): where the extracted models run.
        num_threads (`int`, *optional*): torch intra-op threads (default: the current count).
        rounds (`int`, *optional*, defaults to 7), min_block_time (`float`, *optional*, defaults to 0.05),
            warmup_runs (`int`, *optional*, defaults to 2): see [`PairedTimer`].
        reference_baseline_ms (`float`, *optional*): the whole supernet's latency to express corrected values
            against (e.g. a table's `reference_baseline_ms`); default: measured now.
        seed (`int`, *optional*, defaults to 0): seeds the random `input_ids`.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.search.latency_table import PairedLatencyMeter
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> meter = PairedLatencyMeter(model, sequence_length=16, num_threads=1, rounds=3, min_block_time=0.001)
    >>> result = meter.measure(model.search_space.smallest())
    >>> result.corrected_ms > 0 and result.raw_ms > 0 and result.rounds == 3
    True
    ```
    """

    def __init__(
        self,
        model: nn.Module,
        batch_size: int = 1,
        sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
        device: str = "cpu",
        num_threads: int | None = None,
        rounds: int = 7,
        min_block_time: float = 0.05,
        warmup_runs: int = 2,
        reference_baseline_ms: float | None = None,
        seed: int = 0,
    ):
        self.settings = LatencySettings.for_model(model, batch_size, sequence_length, device, num_threads)
        self.model = model
        self.device = torch.device(self.settings.device)
        generator = torch.Generator().manual_seed(check_int("seed", seed))
        shape = (self.settings.batch_size, self.settings.sequence_length)
        input_ids = torch.randint(0, model.config.vocab_size, shape, generator=generator)  # (B, T)
        attention_mask = torch.ones_like(input_ids)  # (B, T)
        self.inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        self.reference_subnet = model.search_space.largest()
        self.timer = PairedTimer(
            self.forward_of(self.reference_subnet),
            num_threads=self.settings.num_threads,
            rounds=rounds,
            min_block_time=min_block_time,
            warmup_runs=warmup_runs,
            reference_baseline_ms=reference_baseline_ms,
            device=self.settings.device,
        )

    @property
    def reference_baseline_ms(self) -> float:
        return self.timer.reference_baseline_ms

    def extract(self, subnet: SubnetConfig) -> nn.Module:
        """The extracted subnet on the meter's device, in eval mode."""
        return extract_subnet(self.model, subnet).to(self.device).eval()

    def forward_of(self, subnet: SubnetConfig) -> Callable[[], Any]:
        """A call of the extracted `subnet` on the meter's inputs, without autograd."""
        static = self.extract(subnet)
        inputs = self.inputs

        def forward() -> Any:
            with torch.inference_mode():
                return static(**inputs)

        return forward

    def measure_callable(self, function: Callable[[], Any]) -> PairedLatency:
        """The paired latency of any callable (e.g. one block of a layer) against the whole supernet."""
        return self.timer.measure(function)

    def measure(self, subnet: SubnetConfig) -> PairedLatency:
        """The paired latency of one forward pass of the extracted `subnet`."""
        self.model.search_space.validate(subnet)
        return self.timer.measure(self.forward_of(subnet))


# ----------------------------------------------------------------------------------------------------------------
# the table
@dataclass
class LatencyTable:
    """Per-layer timings of a supernet's extracted blocks on one device and setting, and a learned correction.

    Args:
        settings ([`LatencySettings`]): what the table is valid for.
        attention (`dict[int, dict[int, float]]`): hidden size -> head count -> ms of one attention block.
        ffn (`dict[int, dict[int, float]]`): hidden size -> FFN width -> ms of one FFN block.
        scale (`float`, *optional*, defaults to 1.0), offset (`float`, *optional*, defaults to 0.0) and per_layer_ms
            (`float`, *optional*, defaults to 0.0): the learned correction,
            `latency = scale x parts + offset + per_layer_ms x depth`.
        reference_baseline_ms (`float`, *optional*): the reference model's latency every value is expressed against.
        measurements (`list[dict]`, *optional*): the whole-model measurements the correction was fitted on.

    Example:

    ```python
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.search.latency_table import LatencySettings, LatencyTable
    >>> settings = LatencySettings("CPU X", "cpu", 1, 128, 2, "2.13.0", "abc")
    >>> table = LatencyTable(settings, attention={32: {2: 1.0, 4: 1.5}}, ffn={32: {64: 2.0}}, scale=1.1, offset=0.5,
    ...                      per_layer_ms=0.1)
    >>> subnet = SubnetConfig(2, (2, 4), (64, 64), 32)
    >>> table.parts(subnet), round(table.predict(subnet), 6)  # (1 + 2) + (1.5 + 2), then 1.1 x 6.5 + 0.5 + 0.1 x 2
    (6.5, 7.85)
    ```
    """

    settings: LatencySettings
    attention: dict[int, dict[int, float]]
    ffn: dict[int, dict[int, float]]
    scale: float = 1.0
    offset: float = 0.0
    per_layer_ms: float = 0.0
    reference_baseline_ms: float | None = None
    measurements: list[dict[str, Any]] = field(default_factory=list)

    def parts(self, subnet: SubnetConfig) -> float:
        """The sum of the table's attention and FFN times over the kept layers of `subnet`, in ms."""
        w = subnet.hidden_size
        if w not in self.attention or w not in self.ffn:
            raise ValueError(f"`hidden_size`={w} is not in the latency table; allowed: {sorted(self.attention)}.")
        total = 0.0
        for i, (heads, width) in enumerate(zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)):
            if heads not in self.attention[w]:
                raise ValueError(
                    f"`num_attention_heads[{i}]`={heads} is not in the latency table at hidden size {w}; allowed: "
                    f"{sorted(self.attention[w])}."
                )
            if width not in self.ffn[w]:
                raise ValueError(
                    f"`intermediate_size[{i}]`={width} is not in the latency table at hidden size {w}; allowed: "
                    f"{sorted(self.ffn[w])}."
                )
            total += self.attention[w][heads] + self.ffn[w][width]
        return total

    def correction(self, subnet: SubnetConfig) -> float:
        """What the learned correction adds to the parts of `subnet`, in ms:
        `(scale - 1) x parts + offset + per_layer_ms x depth`."""
        parts = self.parts(subnet)
        return (self.scale - 1.0) * parts + self.offset + self.per_layer_ms * subnet.num_hidden_layers

    def predict(self, subnet: SubnetConfig) -> float:
        """The predicted latency of the extracted `subnet` in ms: its parts plus the correction."""
        return self.parts(subnet) + self.correction(subnet)

    def fit_correction(self, subnets: Sequence[SubnetConfig], measured_ms: Sequence[float]) -> LatencyTable:
        """Fit `scale`, `offset` and `per_layer_ms` on whole-model latencies (least squares on the relative error);
        returns `self`. With too few distinct subnets for them all, `per_layer_ms` (fewer than 3 distinct
        (parts, depth) pairs or fewer than 6 subnets) and then `offset` (fewer than 2 distinct parts) are left at 0."""
        if len(subnets) != len(measured_ms) or not subnets:
            raise ValueError(
                f"Give one measured latency per subnet (at least one), got {len(subnets)} and {len(measured_ms)}."
            )
        parts = np.array([self.parts(s) for s in subnets])  # (n,)
        measured = np.asarray(measured_ms, dtype=float)  # (n,)
        if not (np.isfinite(measured).all() and (measured > 0).all()):
            raise ValueError(f"Measured latencies must be finite and > 0, got {measured.tolist()}.")
        depth = np.array([float(s.num_hidden_layers) for s in subnets])  # (n,)
        weights = 1.0 / measured  # least squares on the relative error
        columns = [parts, np.ones_like(parts), depth]
        distinct = len(set(zip(parts.round(9).tolist(), depth.tolist(), strict=True)))
        if distinct < 3 or len(subnets) < 6 or len(set(depth.tolist())) < 2:
            columns = columns[:2]
        if len(set(parts.round(9).tolist())) < 2:
            columns = columns[:1]
        design = np.stack(columns, axis=1) * weights[:, None]  # (n, c)
        coefficients, *_ = np.linalg.lstsq(design, measured * weights, rcond=None)
        coefficients = [*coefficients.tolist(), 0.0, 0.0][:3]
        if not coefficients[0] > 0:  # a degenerate fit: keep a pure scale
            scale = float(np.sum(weights**2 * parts * measured) / np.sum(weights**2 * parts**2))
            coefficients = [scale, 0.0, 0.0]
        self.scale, self.offset, self.per_layer_ms = (float(c) for c in coefficients)
        return self

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": TABLE_VERSION,
            "settings": self.settings.to_dict(),
            "unit": "ms",
            "attention": {str(w): {str(k): v for k, v in row.items()} for w, row in self.attention.items()},
            "ffn": {str(w): {str(f): v for f, v in row.items()} for w, row in self.ffn.items()},
            "scale": self.scale,
            "offset": self.offset,
            "per_layer_ms": self.per_layer_ms,
            "reference_baseline_ms": self.reference_baseline_ms,
            "measurements": self.measurements,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, settings: LatencySettings | None = None) -> LatencyTable:
        """Read a table; with `settings`, refuse (`ValueError` naming the fields) a table made for other ones."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a latency table (invalid JSON: {e}); delete it to measure again.") from e
        if not isinstance(data, dict) or data.get("version") != TABLE_VERSION:
            raise ValueError(f"{path} is not a latency table of version {TABLE_VERSION}; delete it to measure again.")
        try:
            saved = LatencySettings.from_dict(data["settings"])
            table = cls(
                settings=saved,
                attention={int(w): {int(k): float(v) for k, v in row.items()} for w, row in data["attention"].items()},
                ffn={int(w): {int(f): float(v) for f, v in row.items()} for w, row in data["ffn"].items()},
                scale=float(data["scale"]),
                offset=float(data["offset"]),
                per_layer_ms=float(data.get("per_layer_ms", 0.0)),
                reference_baseline_ms=data.get("reference_baseline_ms"),
                measurements=list(data.get("measurements", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path} is not a valid latency table ({e!r}); delete it to measure again.") from e
        if settings is not None:
            differences = saved.differences(settings)
            if differences:
                raise ValueError(
                    f"{path} is a latency table for other settings ({'; '.join(differences)}): a latency measured on "
                    "another device or with other inputs does not transfer. Build a table for these settings "
                    "(cached_latency_table) instead."
                )
        return table


def _capture_layer_inputs(static: nn.Module, inputs: dict[str, torch.Tensor], path: str) -> tuple[nn.Module, Any, Any]:
    """Run `static` once and capture the first layer's attention call (args, kwargs) and its FFN input."""
    layer = static.base_model.get_submodule(path)[0]
    captured: dict[str, Any] = {}

    def attention_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.setdefault("attention", (args, kwargs))

    def ffn_hook(module: nn.Module, args: tuple) -> None:
        captured.setdefault("ffn", args[0])

    handles = [
        layer.attention.register_forward_pre_hook(attention_hook, with_kwargs=True),
        layer.intermediate.register_forward_pre_hook(ffn_hook),
    ]
    try:
        with torch.inference_mode():
            static(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return layer, captured["attention"], captured["ffn"]


def build_latency_table(
    model: nn.Module,
    batch_size: int = 1,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    device: str = "cpu",
    num_threads: int | None = None,
    correction_subnets: int = 10,
    seed: int = 0,
    rounds: int = 7,
    min_block_time: float = 0.05,
) -> LatencyTable:
    """Measure a latency table of `model`'s subnets on `device` (see the module docstring); nothing is cached.

    For every hidden size, head count and FFN width of the search space, the first layer of an extracted subnet of
    that shape has its attention block and its FFN block timed (on the hidden states of a real forward pass), each
    paired with the whole supernet. Then `correction_subnets` subnets (the largest, the smallest and seeded random
    ones) are timed whole, paired alike, and the correction is fitted on them.

    Args:
        model (`nn.Module`): an elastic BERT supernet.
        batch_size (`int`, *optional*, defaults to 1), sequence_length (`int`, *optional*, defaults to 128): inputs.
        device (`str`, *optional*, defaults to `"cpu"`), num_threads (`int`, *optional*): where and how it runs.
        correction_subnets (`int`, *optional*, defaults to 10): whole subnets measured for the correction (>= 1).
        seed (`int`, *optional*, defaults to 0): seeds the random subnets and inputs.
        rounds (`int`, *optional*, defaults to 7), min_block_time (`float`, *optional*, defaults to 0.05): the paired
            measurement's rounds and block length (see [`PairedLatencyMeter`]).
    """
    correction_subnets = check_positive_int("correction_subnets", correction_subnets)
    meter = PairedLatencyMeter(
        model,
        batch_size,
        sequence_length,
        device,
        num_threads,
        rounds=rounds,
        min_block_time=min_block_time,
        seed=seed,
    )
    space = model.search_space
    depth = min(space.num_hidden_layers)
    path = get_family(model.config).vanilla_layers
    heads, widths = space.num_attention_heads, space.intermediate_size
    attention: dict[int, dict[int, float]] = {}
    ffn: dict[int, dict[int, float]] = {}
    for w in space.hidden_size:
        attention[w], ffn[w] = {}, {}
        for i in range(max(len(heads), len(widths))):
            k, f = heads[min(i, len(heads) - 1)], widths[min(i, len(widths) - 1)]
            static = meter.extract(space.subnet(depth, k, f, w))
            layer, (args, kwargs), hidden = _capture_layer_inputs(static, meter.inputs, path)

            def attention_call(layer=layer, args=args, kwargs=kwargs) -> Any:
                with torch.inference_mode():
                    return layer.attention(*args, **kwargs)

            def ffn_call(layer=layer, hidden=hidden) -> Any:
                with torch.inference_mode():
                    return layer.output(layer.intermediate(hidden), hidden)

            if k not in attention[w]:
                attention[w][k] = meter.measure_callable(attention_call).corrected_ms
            if f not in ffn[w]:
                ffn[w][f] = meter.measure_callable(ffn_call).corrected_ms
    table = LatencyTable(meter.settings, attention, ffn, reference_baseline_ms=meter.reference_baseline_ms)

    subnets = list(dict.fromkeys([space.largest(), space.smallest()]))[:correction_subnets]
    generator = random.Random(seed)
    for _ in range(100 * correction_subnets):
        if len(subnets) >= correction_subnets:
            break
        subnet = space.sample(generator=generator)
        if subnet not in subnets:
            subnets.append(subnet)
    for subnet in subnets:
        result = meter.measure(subnet)
        table.measurements.append({"subnet": subnet.to_dict(), "parts_ms": table.parts(subnet), **result.to_dict()})
    table.fit_correction(subnets, [m["corrected_ms"] for m in table.measurements])
    logger.info(
        "latency table of %s (batch %d x %d tokens, %d threads): %.3f x parts + %.3f ms + %.3f ms per layer",
        meter.settings.device_name,
        meter.settings.batch_size,
        meter.settings.sequence_length,
        meter.settings.num_threads,
        table.scale,
        table.offset,
        table.per_layer_ms,
    )
    return table


def cached_latency_table(
    model: nn.Module,
    batch_size: int = 1,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    device: str = "cpu",
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **build_options: Any,
) -> LatencyTable:
    """The latency table of these settings from `cache_dir` (default [`default_cache_dir`]), built with
    [`build_latency_table`] and saved there when it is not cached yet. The file is named by the settings
    ([`LatencySettings.file_name`]), so each device and setting has its own; a file that does not match is refused.

    `build_options` (`correction_subnets`, `seed`, `rounds`, `min_block_time`) only apply when a table is built.
    """
    settings = LatencySettings.for_model(model, batch_size, sequence_length, device, num_threads)
    folder = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    path = os.path.join(folder, settings.file_name())
    if os.path.isfile(path):
        logger.info("latency table from %s", path)
        return LatencyTable.load(path, settings)
    table = build_latency_table(model, batch_size, sequence_length, device, settings.num_threads, **build_options)
    table.save(path)
    logger.info("latency table saved to %s", path)
    return table


def cached_latency_tables(
    model: nn.Module,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    device: str = "cpu",
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **build_options: Any,
) -> dict[int, LatencyTable]:
    """[`cached_latency_table`] for each batch size, by default batch 1 and batch 8 at 128 tokens (the settings users
    see): `{batch_size: table}`."""
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Sequence) or not batch_sizes:
        raise TypeError(f"`batch_sizes` must be a non-empty sequence of ints, got {batch_sizes!r}.")
    return {
        check_positive_int("batch_sizes", b): cached_latency_table(
            model, b, sequence_length, device, num_threads, cache_dir=cache_dir, **build_options
        )
        for b in batch_sizes
    }
