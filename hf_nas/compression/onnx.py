"""ONNX deployment of extracted subnets: export with `torch.onnx`, check ONNX Runtime against PyTorch, int8 dynamic
quantization in ONNX Runtime, and the ONNX Runtime latency (a search objective too).

Any extracted subnet exports, a vanilla checkpoint or a per-layer one with its own modeling file: both are plain
PyTorch modules of transformers' layers. The graph takes the inputs transformers' own ONNX exports take (`input_ids`,
`attention_mask` and, when the model has token types, `token_type_ids` for BERT; `pixel_values` for ViT and BEiT),
with the batch (and sequence) dimensions dynamic, and returns the model output's tensors under their names (`logits`,
or `last_hidden_state` and `pooler_output`). The default exporter is the TorchScript-based one
(`torch.onnx.export(..., dynamo=False)`), the one Optimum's ONNX export uses: it exports these models in about a
second; `exporter="dynamo"` uses the `torch.export`-based one (needs `onnxscript`; slower to export, same outputs).

`onnx` and `onnxruntime` are imported only when used: `pip install onnx onnxruntime` (the `onnx` extra of hf-nas).

Example:

```python
>>> import os, tempfile
>>> from transformers import BertConfig, BertForSequenceClassification
>>> from hf_nas.compression import check_onnx, export_onnx, quantize_onnx
>>> model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
...                                                  num_attention_heads=4, intermediate_size=64)).eval()
>>> folder = tempfile.mkdtemp()
>>> exported = export_onnx(model, os.path.join(folder, "model.onnx"))
>>> exported.input_names, exported.output_names, exported.max_abs_diff < 1e-4
(['input_ids', 'attention_mask', 'token_type_ids'], ['logits'], True)
>>> int8 = quantize_onnx(exported.path, os.path.join(folder, "model_quantized.onnx"))
>>> check_onnx(model, int8, atol=1.0) < 1.0  # int8 weights: close, not equal
True
```
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ..costs import (
    DEFAULT_MAX_RELATIVE_IQR,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_WARMUP_RUNS,
    LatencyResult,
    NoisyLatencyError,
    check_latency_options,
    time_forward,
)
from ..extraction import extract_subnet
from ..models.families import get_family
from ..search.objectives import Objective, register_objective
from ..search_space import SubnetConfig
from ..validation import check_min_run_time, check_positive_int
from .sparsity import check_compressible

__all__ = [
    "EXPORTERS",
    "OnnxExport",
    "OnnxLatencyObjective",
    "OnnxRuntimeModel",
    "check_onnx",
    "example_inputs",
    "export_onnx",
    "measure_onnx_latency",
    "onnx_input_names",
    "onnx_session",
    "quantize_onnx",
]

logger = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"ONNX deployment needs the `{module.split('.')[0]}` package: pip install onnx onnxruntime "
            "(or `pip install hf-nas[onnx]`)."
        ) from e


# ----------------------------------------------------------------------------------------------------------------
# inputs
def onnx_input_names(model: PreTrainedModel) -> list[str]:
    """The graph inputs of `model`: `input_ids`, `attention_mask` and `token_type_ids` (when the model has token
    types) for text models, `pixel_values` for image models.

    Example:

    ```python
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from hf_nas.compression import onnx_input_names
    >>> onnx_input_names(ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1,
    ...                  num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)))
    ['pixel_values']
    ```
    """
    if get_family(model.config).is_image:
        return ["pixel_values"]
    names = ["input_ids", "attention_mask"]
    accepted = inspect.signature(model.forward).parameters
    if getattr(model.config, "type_vocab_size", 0) and "token_type_ids" in accepted:
        names.append("token_type_ids")
    return names


def example_inputs(
    model: PreTrainedModel, batch_size: int = 2, sequence_length: int = 16, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Seeded random inputs for [`onnx_input_names`] (never the global RNG): token ids with padding at the end of every
    row but the first (attention mask 0 there), random token types, or images of the config's size."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    if get_family(config).is_image:
        size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
        return {"pixel_values": torch.randn(batch_size, config.num_channels, *size, generator=generator)}
    sequence_length = min(sequence_length, getattr(config, "max_position_embeddings", sequence_length))
    input_ids = torch.randint(1, config.vocab_size, (batch_size, sequence_length), generator=generator)  # (B, T)
    attention_mask = torch.ones_like(input_ids)  # (B, T)
    for row in range(1, batch_size):
        pad = min(2 * row, sequence_length - 1)
        attention_mask[row, sequence_length - pad :] = 0
        input_ids[row, sequence_length - pad :] = config.pad_token_id or 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in onnx_input_names(model):
        inputs["token_type_ids"] = torch.randint(0, config.type_vocab_size, input_ids.shape, generator=generator)
    return inputs


def _output_tensors(output: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}


# ----------------------------------------------------------------------------------------------------------------
# export and check
@dataclass(frozen=True)
class OnnxExport:
    """An exported ONNX file: its `path`, input and output names, the exporter and opset, and the largest absolute
    difference between ONNX Runtime's and PyTorch's outputs on the check inputs (None if not checked)."""

    path: str
    input_names: list[str]
    output_names: list[str]
    exporter: str
    opset: int | None
    max_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": os.path.basename(self.path),
            "input_names": self.input_names,
            "output_names": self.output_names,
            "exporter": self.exporter,
            "opset": self.opset,
            "max_abs_diff": self.max_abs_diff,
        }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints and deprecation notices (the exporter is chosen on purpose)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def export_onnx(
    model: PreTrainedModel,
    path: str | os.PathLike,
    *,
    exporter: str = "torchscript",
    opset: int | None = DEFAULT_OPSET,
    check: bool = True,
    atol: float = DEFAULT_ATOL,
) -> OnnxExport:
    """Export `model` (an extracted subnet, or any vanilla BERT, ViT or BEiT model) to the ONNX file `path`, and check
    that ONNX Runtime gives PyTorch's outputs.

    Args:
        model (`PreTrainedModel`): the model, exported in eval mode (its mode is restored afterwards).
        path (`str` or `os.PathLike`): the `.onnx` file to write (written under a temporary name, then renamed).
        exporter (`str`, *optional*, defaults to `"torchscript"`): `"torchscript"` (`torch.onnx.export(...,
            dynamo=False)`) or `"dynamo"` (the `torch.export`-based exporter).
        opset (`int`, *optional*, defaults to 17): the ONNX opset (the dynamo exporter picks its own when None).
        check (`bool`, *optional*, defaults to `True`): run [`check_onnx`] on seeded inputs of another batch size and
            sequence length than the export's, and raise if any output differs by more than `atol`.
        atol (`float`, *optional*, defaults to 1e-4): the largest absolute difference accepted.

    Returns:
        [`OnnxExport`].
    """
    check_compressible(model, "ONNX export")
    if exporter not in EXPORTERS:
        raise ValueError(f"`exporter` {exporter!r} is not allowed; allowed: {list(EXPORTERS)}.")
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".onnx"):
        raise ValueError(f"`path` must be an .onnx file, got {path!r}.")
    inputs = example_inputs(model, batch_size=2, sequence_length=16)
    names = list(inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output_names = list(_output_tensors(model(**inputs, return_dict=True)))
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp.onnx")
        try:
            _export(model, inputs, tmp, output_names, exporter, opset)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    finally:
        model.train(was_training)
    diff = check_onnx(model, path, atol=atol) if check else None
    logger.info(
        "exported %s to %s (%s exporter); ONNX Runtime vs PyTorch: %s", type(model).__name__, path, exporter, diff
    )
    return OnnxExport(path, names, output_names, exporter, opset, diff)


class _Positional(nn.Module):
    """The model called with its inputs by position and its output as a tuple, as the TorchScript exporter traces it
    (keyword inputs reach some forwards in the wrong order there)."""

    def __init__(self, model: PreTrainedModel, input_names: list[str], output_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(**dict(zip(self.input_names, inputs, strict=True)), return_dict=True)
        return tuple(output[name] for name in self.output_names)


def _export(
    model: PreTrainedModel,
    inputs: dict[str, torch.Tensor],
    path: str,
    output_names: list[str],
    exporter: str,
    opset: int | None,
) -> None:
    text = "input_ids" in inputs
    with _quiet():
        if exporter == "torchscript":
            axes = {name: {0: "batch", 1: "sequence"} if text else {0: "batch"} for name in inputs}
            axes.update({name: {0: "batch"} for name in output_names})
            torch.onnx.export(
                _Positional(model, list(inputs), output_names),
                tuple(inputs.values()),
                path,
                input_names=list(inputs),
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
            return
        _require("onnxscript")
        from torch.export import Dim

        batch = Dim("batch")
        sequence = Dim("sequence", max=getattr(model.config, "max_position_embeddings", 512))
        shapes = {name: {0: batch, 1: sequence} if text else {0: batch} for name in inputs}
        program = torch.onnx.export(
            model,
            (),
            kwargs=dict(inputs),
            input_names=list(inputs),
            output_names=output_names,
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.save(path, external_data=False)


def onnx_session(path: str | os.PathLike, num_threads: int | None = None) -> Any:
    """An ONNX Runtime `InferenceSession` of `path` on the CPU, with `num_threads` intra-op threads (default: ONNX
    Runtime's) and one inter-op thread, all graph optimizations on."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if num_threads is not None:
        options.intra_op_num_threads = check_positive_int("num_threads", num_threads)
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel(nn.Module):
    """An ONNX Runtime session that a caller uses as the PyTorch model it was exported from: `model(**inputs)` takes
    torch tensors (inputs the graph does not take, such as `labels`, are dropped; a missing `token_type_ids` is zeros)
    and returns a `ModelOutput` of torch tensors under the graph's output names (`.logits`). It has the model's
    `config`, so [`~hf_nas.time_forward`] and evaluation code take it as they take the model.

    Args:
        path (`str` or `os.PathLike`): the `.onnx` file.
        config: the exported model's config.
        num_threads (`int`, *optional*): ONNX Runtime intra-op threads.
    """

    def __init__(self, path: str | os.PathLike, config: Any, num_threads: int | None = None):
        super().__init__()
        self.path = os.fspath(path)
        self.config = config
        self.num_threads = num_threads
        self.session = onnx_session(path, num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, **inputs: Any) -> ModelOutput:
        feeds = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None and name == "token_type_ids":
                value = torch.zeros_like(inputs["input_ids"])
            if value is None:
                raise ValueError(f"The ONNX graph {self.path} needs the input `{name}`; got {sorted(inputs)}.")
            feeds[name] = value.detach().cpu().numpy()
        outputs = self.session.run(self.output_names, feeds)
        return ModelOutput(
            **{name: torch.from_numpy(np.asarray(v)) for name, v in zip(self.output_names, outputs, strict=True)}
        )


def check_onnx(
    model: PreTrainedModel,
    path: str | os.PathLike,
    inputs: Mapping[str, torch.Tensor] | None = None,
    atol: float = DEFAULT_ATOL,
) -> float:
    """The largest absolute difference between ONNX Runtime's outputs for `path` and `model`'s (eval mode) on
    `inputs` (default: seeded [`example_inputs`] of batch 3 and 11 tokens, shapes other than the export's, with
    padding); raises `ValueError` if it exceeds `atol`."""
    if inputs is None:
        inputs = example_inputs(model, batch_size=3, sequence_length=11, seed=1)
    runtime = OnnxRuntimeModel(path, model.config)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _output_tensors(model(**inputs, return_dict=True))
    finally:
        model.train(was_training)
    actual = runtime(**inputs)
    diff = 0.0
    for name in runtime.output_names:
        if name not in expected:
            raise ValueError(f"The ONNX graph returns `{name}`, which the model's output has not: {list(expected)}.")
        if tuple(actual[name].shape) != tuple(expected[name].shape):
            raise ValueError(
                f"ONNX Runtime's `{name}` has shape {tuple(actual[name].shape)}, PyTorch's {tuple(expected[name].shape)}."
            )
        diff = max(diff, float((actual[name].float() - expected[name].float()).abs().max()))
    if not diff <= atol:
        raise ValueError(
            f"ONNX Runtime's outputs of {os.fspath(path)} differ from PyTorch's by up to {diff:.3g} (> atol {atol:g})."
        )
    return diff


def quantize_onnx(path: str | os.PathLike, output_path: str | os.PathLike, *, per_channel: bool = False) -> str:
    """ONNX Runtime's dynamic int8 quantization of `path` into `output_path`: int8 weights of the matrix
    multiplications, activations quantized on the fly (`onnxruntime.quantization.quantize_dynamic`, `QInt8`).
    Returns `output_path`."""
    _require("onnx")
    quantization = _require("onnxruntime.quantization")
    output_path = os.path.abspath(os.fspath(output_path))
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process the graph first, printed through the root logger
    try:
        quantization.quantize_dynamic(
            os.fspath(path), output_path, weight_type=quantization.QuantType.QInt8, per_channel=per_channel
        )
    finally:
        logging.disable(previous)
    return output_path


# ----------------------------------------------------------------------------------------------------------------
# latency
def measure_onnx_latency(
    path: str | os.PathLike,
    config: Any,
    batch_size: int = 1,
    sequence_length: int | None = None,
    num_threads: int | None = None,
    min_run_time: float = 1.0,
    image_size: int | tuple[int, int] | None = None,
    *,
    warmup_runs: int = DEFAULT_WARMUP_RUNS,
    max_relative_iqr: float = DEFAULT_MAX_RELATIVE_IQR,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    on_noisy: str = "flag",
) -> LatencyResult:
    """Latency of one ONNX Runtime run of `path` on the CPU, measured as [`~hf_nas.time_forward`] measures a PyTorch
    model (the same seeded inputs, warm-up, rounds and spread check), so the two compare directly.

    Args:
        path (`str` or `os.PathLike`): the `.onnx` file.
        config: the exported model's config (vocabulary or image size of the random inputs).
        batch_size, sequence_length, num_threads, min_run_time, image_size, warmup_runs, max_relative_iqr, max_rounds,
        on_noisy: as for [`~hf_nas.time_forward`]; `num_threads` sets ONNX Runtime's intra-op threads.

    Returns:
        [`~hf_nas.LatencyResult`] with `device="cpu"`.
    """
    runtime = OnnxRuntimeModel(path, config, num_threads=num_threads)
    return time_forward(
        runtime,
        batch_size=batch_size,
        sequence_length=sequence_length,
        device="cpu",
        num_threads=num_threads,
        min_run_time=min_run_time,
        image_size=image_size,
        warmup_runs=warmup_runs,
        max_relative_iqr=max_relative_iqr,
        max_rounds=max_rounds,
        on_noisy=on_noisy,
    )


@register_objective
class OnnxLatencyObjective(Objective):
    """Median ONNX Runtime latency of the *extracted* subnet in milliseconds, on the CPU, to minimize.

    Each call extracts the subnet, exports it with [`export_onnx`] (optionally quantized to int8 with
    [`quantize_onnx`]) into a temporary folder and times it with [`measure_onnx_latency`], the protocol of the
    `latency` objective (warm-up, rounds, spread check; a noisy value is kept with a warning and recorded in
    `noisy_results`, or refused with `on_noisy="raise"`). The supernet is neither moved nor changed. Importing
    `hf_nas.compression` registers it as `onnx_latency`.

    Args:
        batch_size (`int`, *optional*, defaults to 1): sequences (or images) per run.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        num_threads (`int`, *optional*): ONNX Runtime intra-op threads (default: `torch.get_num_threads()`).
        quantize (`bool`, *optional*, defaults to `False`): time the int8 dynamically quantized graph.
        exporter (`str`, *optional*, defaults to `"torchscript"`): see [`export_onnx`].
        min_run_time, image_size, warmup_runs, max_relative_iqr, max_rounds, on_noisy: as for the `latency` objective.

    Example:

    ```python
    >>> from hf_nas.search import get_objective
    >>> import hf_nas.compression  # registers onnx_latency
    >>> objective = get_objective("onnx_latency", sequence_length=64, quantize=True, num_threads=2)
    >>> objective.describe()["runtime"], objective.describe()["quantize"]
    ('onnxruntime', True)
    ```
    """

    name = "onnx_latency"
    direction = "minimize"
    cheap = False

    def __init__(
        self,
        batch_size: int = 1,
        sequence_length: int = 128,
        num_threads: int | None = None,
        quantize: bool = False,
        exporter: str = "torchscript",
        min_run_time: float = 0.5,
        image_size: int | list[int] | None = None,
        warmup_runs: int = DEFAULT_WARMUP_RUNS,
        max_relative_iqr: float = DEFAULT_MAX_RELATIVE_IQR,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_noisy: str = "flag",
    ):
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.num_threads = None if num_threads is None else check_positive_int("num_threads", num_threads)
        if not isinstance(quantize, bool):
            raise TypeError(f"`quantize` must be a bool, got {quantize!r}.")
        self.quantize = quantize
        if exporter not in EXPORTERS:
            raise ValueError(f"`exporter` {exporter!r} is not allowed; allowed: {list(EXPORTERS)}.")
        self.exporter = exporter
        self.min_run_time = check_min_run_time(min_run_time)
        self.image_size = image_size
        self.warmup_runs, self.max_relative_iqr, self.max_rounds, self.on_noisy = check_latency_options(
            warmup_runs, max_relative_iqr, max_rounds, on_noisy
        )
        self.noisy_results: list[dict[str, Any]] = []

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        from ..models.supernet import SupernetMixin

        if not isinstance(model, SupernetMixin):
            raise TypeError(f"`model` must be an elastic supernet (e.g. ElasticBert*), got {type(model).__name__}.")
        static = extract_subnet(model, subnet).eval()
        is_image = get_family(static.config).is_image
        with tempfile.TemporaryDirectory(prefix="hf_nas_onnx_") as folder:
            path = export_onnx(static, os.path.join(folder, "model.onnx"), exporter=self.exporter).path
            if self.quantize:
                path = quantize_onnx(path, os.path.join(folder, "model_quantized.onnx"))
            try:
                result = measure_onnx_latency(
                    path,
                    static.config,
                    batch_size=self.batch_size,
                    sequence_length=None if is_image else self.sequence_length,
                    num_threads=self.num_threads if self.num_threads is not None else torch.get_num_threads(),
                    min_run_time=self.min_run_time,
                    image_size=self.image_size if is_image else None,
                    warmup_runs=self.warmup_runs,
                    max_relative_iqr=self.max_relative_iqr,
                    max_rounds=self.max_rounds,
                    on_noisy="raise",
                )
            except NoisyLatencyError as e:
                if self.on_noisy == "raise":
                    raise NoisyLatencyError(
                        f"Refused the ONNX Runtime latency of subnet {subnet.to_dict()}: {e}", e.result
                    ) from None
                result = e.result
                self.noisy_results.append({"subnet": subnet.to_dict(), "latency": result.to_dict()})
                logger.warning("Kept with a flag in `noisy_results`, for subnet %s: %s", subnet.to_dict(), e)
        return float(result.median_ms)

    def describe(self) -> dict[str, Any]:
        import platform

        try:
            import onnxruntime

            version = onnxruntime.__version__
        except ImportError:
            version = None
        return {
            **super().describe(),
            "runtime": "onnxruntime",
            "onnxruntime": version,
            "quantize": self.quantize,
            "exporter": self.exporter,
            "batch_size": self.batch_size,
            "sequence_length": self.sequence_length,
            "device": "cpu",
            "num_threads": torch.get_num_threads() if self.num_threads is None else self.num_threads,
            "min_run_time": self.min_run_time,
            "warmup_runs": self.warmup_runs,
            "max_relative_iqr": self.max_relative_iqr,
            "max_rounds": self.max_rounds,
            "unit": LatencyResult.UNIT,
            "hardware": platform.processor() or platform.machine(),
            **({} if self.image_size is None else {"image_size": self.image_size}),
        }
