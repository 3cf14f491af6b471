"""Weight quantization of the encoder layers' linear weights: NUPES (non-uniform, by power exponent) and uniform
round-to-nearest, both saved as an ordinary checkpoint of dequantized weights plus the integer codes beside it.

**The format.** A weight `W` (out x in) of [`prunable_weights`] becomes `bits`-bit signed integer codes `k` with
`|k| <= L = 2**(bits - 1) - 1`, a scale per output channel `s = max |W[row]|` and a power exponent `a > 0` per output
channel or per layer; the weight it stands for is [`dequantize`]:

    W_hat = s * sign(k) * (|k| / L) ** (1 / a)

With `a = 1` this is uniform symmetric quantization (`s * k / L`); with `a < 1` the grid is denser near zero, where
the bell-shaped weight distribution puts most weights. Zero codes give exactly zero, so pruned weights stay pruned.

**Uniform** ([`uniform_quantize`]): round-to-nearest per output channel, `k = round(W / s * L)`, `a = 1`: the baseline.

**NUPES** ([`nupes_quantize`]): the exponent and the integer values are optimized.
- Data-free: per channel (or per layer) the exponent of a grid (0.25 to 1.5) whose grid points lie nearest the weights,
  each weight taking its nearest grid point (in weight space: the grid is not uniform there).
- With calibration data (the default): starting from the data-free solution, block by block (encoder layer by
  encoder layer, in order) the exponents and the codes of the block's linear weights are learned together by
  minimizing the mean squared error between the quantized block's output and the float block's output, the block's
  input coming from the already quantized blocks before it. The codes are real-valued during the optimization and
  rounded in the forward pass (straight-through), so a code can move anywhere in the quantized range, not only up or
  down by one.
- Optionally (`NupesConfig(end_to_end_steps=...)`), all layers' codes and exponents are then learned together by
  distillation from the float model's outputs (KL divergence of the class distributions, or the hidden states' mean
  squared error for a model without logits) on the same calibration data; the block-wise solution is kept if this
  does not lower the calibration loss.

[`QuantizationReport.save`] writes `quantization.safetensors` (codes as int8, scales, exponents) and
[`QuantizationReport.load`] reads it back; the model's own weights are the dequantized ones, so plain transformers
loads the checkpoint and computes with float weights (simulated quantization; an integer kernel is not part of this).

Example:

```python
>>> from transformers import BertConfig, BertModel
>>> from hf_nas.compression import dequantize, nupes_quantize, NupesConfig
>>> model = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
...                              intermediate_size=64))
>>> report = nupes_quantize(model, 4, config=NupesConfig(data_free=True))
>>> q = report.weights["encoder.layer.0.intermediate.dense.weight"]
>>> int(q.codes.abs().max()) <= 7, q.codes.dtype
(True, torch.int8)
>>> bool((model.encoder.layer[0].intermediate.dense.weight == q.dequantize()).all())
True
```
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from ..models.families import get_family
from .sparsity import check_compressible, prunable_weights

__all__ = [
    "GRANULARITIES",
    "QUANTIZATION_FILE",
    "QUANTIZATION_METHODS",
    "SUPPORTED_BITS",
    "NupesConfig",
    "QuantizationMethod",
    "QuantizationReport",
    "QuantizedWeight",
    "check_bits",
    "code_range",
    "dequantize",
    "get_quantization_method",
    "nearest_codes",
    "nupes_quantize",
    "search_exponents",
    "simulate_quantization",
    "uniform_quantize",
]

logger = logging.getLogger(__name__)

SUPPORTED_BITS = tuple(range(2, 9))  # codes are stored as int8; 1 bit leaves no nonzero level in the symmetric grid
GRANULARITIES = ("channel", "layer")  # one exponent per output channel, or one per weight
QUANTIZATION_FILE = "quantization.safetensors"
FORMAT = "hf-nas power-exponent quantization v1: W = scale * sign(code) * (|code| / L) ** (1 / exponent)"
EXPONENT_GRID = tuple(round(0.25 + 0.05 * i, 2) for i in range(26))  # 0.25 ... 1.5
_MIN_EXPONENT, _MAX_EXPONENT = 0.1, 4.0
_TINY = 1e-12


# ----------------------------------------------------------------------------------------------------------------
# the format
def check_bits(bits: Any, name: str = "bits") -> int:
    """`bits` if it is an int in [`SUPPORTED_BITS`] (2 to 8).

    Example:

    ```python
    >>> from hf_nas.compression import check_bits
    >>> check_bits(4)
    4
    >>> check_bits(16)
    Traceback (most recent call last):
        ...
    ValueError: `bits` must be an int from 2 to 8 (codes are stored as int8), got 16.
    ```
    """
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"`{name}` must be an int from 2 to 8, got {bits!r} of type {type(bits).__name__}.")
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"`{name}` must be an int from 2 to 8 (codes are stored as int8), got {bits}.")
    return bits


def code_range(bits: int) -> int:
    """`L = 2**(bits - 1) - 1`: the codes of `bits`-bit signed symmetric quantization are `-L ... L`."""
    return 2 ** (check_bits(bits) - 1) - 1


def dequantize(codes: torch.Tensor, scales: torch.Tensor, exponents: torch.Tensor, bits: int) -> torch.Tensor:
    """The weights the codes stand for: `scales * sign(codes) * (|codes| / L) ** (1 / exponents)`, in float32.

    Args:
        codes (`torch.Tensor`): integer codes (any integer dtype, or float holding integers), shape `(out, in)`.
        scales (`torch.Tensor`): shape `(out, 1)`.
        exponents (`torch.Tensor`): shape `(out, 1)` or `(1, 1)`.
        bits (`int`): the bit width the codes were made for.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.compression import dequantize
    >>> dequantize(torch.tensor([[-7, 0, 7]]), torch.tensor([[2.0]]), torch.tensor([[0.5]]), 4).tolist()
    [[-2.0, 0.0, 2.0]]
    ```
    """
    level = code_range(bits)
    ratio = (codes.abs().float() / level).clamp_min(_TINY)  # (out, in); the clamp keeps pow's gradient finite at 0
    return scales * torch.sign(codes).float() * ratio ** (1.0 / exponents)


def _safe_scales(weight: torch.Tensor) -> torch.Tensor:
    """max |W| per output channel, (out, 1); 1 for an all-zero channel (its codes are 0 whatever the scale)."""
    scales = weight.detach().abs().amax(dim=1, keepdim=True).float()  # (out, 1)
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def _nearest_magnitudes(x: torch.Tensor, exponents: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For magnitudes `x` in [0, 1]: the code magnitude of the nearest grid point `(k / L) ** (1 / a)` (ties to the
    smaller) and that grid point's value."""
    low = torch.floor(x**exponents * level).clamp(0, level)  # the grid point below, in code space
    high = (low + 1).clamp(max=level)
    value_low = (low / level) ** (1.0 / exponents)
    value_high = (high / level) ** (1.0 / exponents)
    take_high = (value_high - x).abs() < (x - value_low).abs()
    return torch.where(take_high, high, low), torch.where(take_high, value_high, value_low)


@torch.no_grad()
def nearest_codes(weight: torch.Tensor, scales: torch.Tensor, exponents: torch.Tensor, bits: int) -> torch.Tensor:
    """The codes (int8) whose [`dequantize`]d values lie nearest `weight`, entry by entry: of the two grid points
    around each weight (the grid is not uniform in weight space), the nearer one (ties to the smaller magnitude).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.compression import nearest_codes
    >>> nearest_codes(torch.tensor([[0.1, -0.5, 1.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]]), 2).tolist()
    [[0, 0, 1]]
    ```
    """
    x = (weight.float() / scales).abs().clamp(max=1.0)  # (out, in) in [0, 1]
    magnitude, _ = _nearest_magnitudes(x, exponents, code_range(bits))
    return (torch.sign(weight) * magnitude).to(torch.int8)


@torch.no_grad()
def search_exponents(weight: torch.Tensor, bits: int, granularity: str = "channel") -> torch.Tensor:
    """The data-free exponent: of [`EXPONENT_GRID`] (0.25 to 1.5), the one whose [`nearest_codes`] reconstruct
    `weight` with the least squared error, per output channel `(out, 1)` or per layer `(1, 1)`."""
    _check_granularity(granularity)
    scales = _safe_scales(weight)
    x = (weight.float() / scales).abs().clamp(max=1.0)  # (out, in)
    level = code_range(bits)
    errors = []
    for a in EXPONENT_GRID:
        _, value = _nearest_magnitudes(x, torch.full((1, 1), a), level)
        errors.append((((value - x) * scales) ** 2).sum(dim=1))  # (out,) in weight units
    errors = torch.stack(errors)  # (grid, out)
    grid = torch.tensor(EXPONENT_GRID)
    if granularity == "layer":
        return grid[errors.sum(dim=1).argmin()].view(1, 1)
    return grid[errors.argmin(dim=0)].view(-1, 1)  # (out, 1)


def _check_granularity(granularity: Any) -> str:
    if granularity not in GRANULARITIES:
        raise ValueError(f"`granularity` {granularity!r} is not allowed; allowed: {list(GRANULARITIES)}.")
    return granularity


@dataclass(frozen=True)
class QuantizedWeight:
    """One quantized weight: int8 `codes` `(out, in)`, `scales` `(out, 1)`, `exponents` `(out, 1)` or `(1, 1)`, and
    `bits`; [`dequantize`] turns them into the float weight."""

    codes: torch.Tensor
    scales: torch.Tensor
    exponents: torch.Tensor
    bits: int

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.scales, self.exponents, self.bits)


@dataclass(frozen=True)
class QuantizationReport:
    """What a quantization did: the method, bit width, exponent granularity and every [`QuantizedWeight`] by parameter
    name, with the relative squared error `|W_hat - W|^2 / |W|^2` of each weight.

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import ViTConfig, ViTModel
    >>> from hf_nas.compression import QuantizationReport, uniform_quantize
    >>> model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    ...                            image_size=32, patch_size=8))
    >>> report = uniform_quantize(model, 8)
    >>> folder = tempfile.mkdtemp()
    >>> report.save(folder)
    'quantization.safetensors'
    >>> again = QuantizationReport.load(folder)
    >>> again.method, again.bits, sorted(again.weights) == sorted(report.weights)
    ('uniform', 8, True)
    ```
    """

    method: str
    bits: int
    granularity: str
    weights: dict[str, QuantizedWeight]
    errors: dict[str, float] = field(default_factory=dict)
    data_free: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors): method, bits, format, and per weight its error and exponent range."""
        layers = {}
        for name, q in self.weights.items():
            layers[name] = {
                "shape": list(q.codes.shape),
                "relative_error": self.errors.get(name),
                "exponent_min": float(q.exponents.min()),
                "exponent_max": float(q.exponents.max()),
                "exponent_mean": float(q.exponents.mean()),
                "zero_codes": int((q.codes == 0).sum()),
            }
        return {
            "method": self.method,
            "bits": self.bits,
            "granularity": self.granularity,
            "data_free": self.data_free,
            "format": FORMAT,
            "file": QUANTIZATION_FILE,
            "settings": self.settings,
            "layers": layers,
        }

    def save(self, folder: str | os.PathLike) -> str:
        """Write `quantization.safetensors` into `folder`: `<weight>.codes` (int8), `<weight>.scales`,
        `<weight>.exponents` (float32) and the method, bits and format as metadata. Returns the file name."""
        tensors = {}
        for name, q in self.weights.items():
            tensors[f"{name}.codes"] = q.codes.detach().cpu().to(torch.int8).contiguous()
            tensors[f"{name}.scales"] = q.scales.detach().cpu().float().contiguous()
            tensors[f"{name}.exponents"] = q.exponents.detach().cpu().float().contiguous()
        metadata = {
            "method": self.method,
            "bits": str(self.bits),
            "granularity": self.granularity,
            "format": FORMAT,
            "weights": json.dumps(list(self.weights)),
        }
        save_file(tensors, os.path.join(os.fspath(folder), QUANTIZATION_FILE), metadata=metadata)
        return QUANTIZATION_FILE

    @classmethod
    def load(cls, folder: str | os.PathLike) -> QuantizationReport:
        """The codes, scales and exponents of `<folder>/quantization.safetensors` (errors and settings are not stored
        there; `compression.json` has them)."""
        from safetensors import safe_open

        path = os.path.join(os.fspath(folder), QUANTIZATION_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: the folder holds no quantization codes.")
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
        bits = int(metadata["bits"])
        weights = {
            name: QuantizedWeight(
                tensors[f"{name}.codes"], tensors[f"{name}.scales"], tensors[f"{name}.exponents"], bits
            )
            for name in json.loads(metadata["weights"])
        }
        return cls(metadata["method"], bits, metadata["granularity"], weights)


def _relative_error(approx: torch.Tensor, weight: torch.Tensor) -> float:
    norm = float((weight.float() ** 2).sum())
    return float(((approx - weight.float()) ** 2).sum()) / norm if norm > 0 else 0.0


@torch.no_grad()
def _write(model: PreTrainedModel, quantized: dict[str, QuantizedWeight]) -> None:
    """Set each quantized weight of `model` to its dequantized value (in the weight's dtype and device)."""
    params = dict(model.named_parameters())
    for name, q in quantized.items():
        param = params[name]
        param.copy_(q.dequantize().to(device=param.device, dtype=param.dtype))


@contextlib.contextmanager
def simulate_quantization(model: PreTrainedModel, report: QuantizationReport) -> Iterator[PreTrainedModel]:
    """Within the block, each quantized linear of `model` computes its weight from the codes at every forward pass
    ([`dequantize`] of `report`'s codes, scales and exponents: simulated quantization); afterwards the weights are
    the model's own again.

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> from hf_nas.compression import simulate_quantization, uniform_quantize
    >>> model = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                              intermediate_size=64)).eval()
    >>> report = uniform_quantize(model, 4)  # the weights are the dequantized ones now
    >>> ids = torch.tensor([[2, 5, 7]])
    >>> with simulate_quantization(model, report):
    ...     simulated = model(input_ids=ids).last_hidden_state
    >>> bool(torch.allclose(simulated, model(input_ids=ids).last_hidden_state, atol=1e-6))
    True
    ```
    """
    modules = dict(model.named_modules())
    registered = []
    try:
        for name, q in report.weights.items():
            linear = modules[name.removesuffix(".weight")]
            parametrize.register_parametrization(linear, "weight", _FromCodes(q), unsafe=True)
            registered.append(linear)
        yield model
    finally:
        for linear in registered:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)


class _FromCodes(nn.Module):
    def __init__(self, q: QuantizedWeight):
        super().__init__()
        self.q = q

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.q.dequantize().to(device=weight.device, dtype=weight.dtype)


# ----------------------------------------------------------------------------------------------------------------
# uniform round-to-nearest
@torch.no_grad()
def uniform_quantize(
    model: PreTrainedModel, bits: int, *, include: str | Sequence[str] | None = None, **unused: Any
) -> QuantizationReport:
    """Uniform symmetric round-to-nearest quantization per output channel, in place: `k = round(W / s * L)` with
    `s = max |W[row]|`, and the weights set to `s * k / L` ([`dequantize`] with exponent 1).

    Args:
        model (`PreTrainedModel`): an extracted subnet or a vanilla BERT, ViT or BEiT model (not a supernet).
        bits (`int`): 2 to 8.
        include (`str` or `Sequence[str]`, *optional*): glob patterns restricting the weights ([`prunable_weights`]).

    Returns:
        [`QuantizationReport`] with `method="uniform"`.
    """
    check_compressible(model, "quantization")
    bits = check_bits(bits)
    level = code_range(bits)
    quantized, errors = {}, {}
    for name, weight in prunable_weights(model, include).items():
        scales = _safe_scales(weight)
        codes = torch.round(weight.float() / scales * level).clamp(-level, level).to(torch.int8)
        q = QuantizedWeight(codes, scales, torch.ones(1, 1), bits)
        quantized[name] = q
        errors[name] = _relative_error(q.dequantize(), weight)
    _write(model, quantized)
    return QuantizationReport("uniform", bits, "channel", quantized, errors)


# ----------------------------------------------------------------------------------------------------------------
# NUPES
@dataclass
class NupesConfig:
    """The settings of [`nupes_quantize`].

    Example:

    ```python
    >>> from hf_nas.compression import NupesConfig
    >>> NupesConfig().granularity, NupesConfig(data_free=True).data_free
    ('channel', True)
    ```
    """

    granularity: str = field(
        default="channel", metadata={"help": "One power exponent per output channel (channel) or per weight (layer)."}
    )
    data_free: bool = field(
        default=False,
        metadata={"help": "Choose exponents and codes from the weights alone (no calibration data)."},
    )
    calibration_samples: int = field(default=256, metadata={"help": "Calibration examples (the first of the data)."})
    batch_size: int = field(default=32, metadata={"help": "Calibration examples per reconstruction step."})
    steps: int = field(default=200, metadata={"help": "Reconstruction steps per encoder layer."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Adam learning rate of the codes (in code units)."})
    exponent_learning_rate: float = field(default=1e-2, metadata={"help": "Adam learning rate of log(exponent)."})
    end_to_end_steps: int = field(
        default=0,
        metadata={
            "help": "After the block reconstruction, steps that learn every layer's codes and exponents together by "
            "distillation from the float model's outputs on the calibration data (0: off)."
        },
    )
    end_to_end_learning_rate: float = field(
        default=1e-4, metadata={"help": "Adam learning rate of the codes and log(exponent) in the end-to-end steps."}
    )

    def __post_init__(self):
        _check_granularity(self.granularity)
        for name in ("calibration_samples", "batch_size", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        steps = self.end_to_end_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"`end_to_end_steps` must be an int >= 0 (0: off), got {steps!r}.")
        if steps and self.data_free:
            raise ValueError(
                "`end_to_end_steps` distils from the float model on calibration data, which the data-free mode does "
                "not have: set `data_free=False` or `end_to_end_steps=0`."
            )
        for name in ("learning_rate", "exponent_learning_rate", "end_to_end_learning_rate"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RoundSTE(torch.autograd.Function):
    """Round in the forward pass; the identity in the backward pass (straight-through)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _LearnedCodes(nn.Module):
    """The parametrization of a weight during block reconstruction: real-valued codes and log-exponents, rounded and
    dequantized at every forward pass (the original weight is ignored)."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, exponents: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.codes = nn.Parameter(codes.float())
        self.log_exponents = nn.Parameter(exponents.float().log())
        self.register_buffer("scales", scales.float())

    def exponents(self) -> torch.Tensor:
        return self.log_exponents.clamp(math.log(_MIN_EXPONENT), math.log(_MAX_EXPONENT)).exp()

    def rounded(self) -> torch.Tensor:
        level = code_range(self.bits)
        return _RoundSTE.apply(self.codes.clamp(-level, level))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dequantize(self.rounded(), self.scales, self.exponents(), self.bits).to(weight.dtype)

    @torch.no_grad()
    def result(self) -> QuantizedWeight:
        return QuantizedWeight(
            self.rounded().to(torch.int8), self.scales.clone(), self.exponents().detach().clone(), self.bits
        )


def _data_free(weight: torch.Tensor, bits: int, granularity: str) -> QuantizedWeight:
    scales = _safe_scales(weight)
    exponents = search_exponents(weight, bits, granularity)
    return QuantizedWeight(nearest_codes(weight, scales, exponents, bits), scales, exponents, bits)


def _layer_of(name: str, prefixes: list[str]) -> int:
    for i, prefix in enumerate(prefixes):
        if name.startswith(prefix):
            return i
    raise ValueError(f"{name} is in none of the encoder layers.")


def _first_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _hidden_states(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a layer was called with (its first positional argument, or `hidden_states=`)."""
    return args[0] if args else kwargs["hidden_states"]


def _run_layer(layer: nn.Module, x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """The layer's output hidden states for input `x`, its other inputs as captured."""
    if args:
        return _first_output(layer(x, *args[1:], **kwargs))
    return _first_output(layer(**{**kwargs, "hidden_states": x}))


@torch.no_grad()
def _capture_layers(model: PreTrainedModel, layers: nn.ModuleList, batches: list[dict[str, Any]]) -> list[list]:
    """For each encoder layer, per calibration batch: its positional inputs, keyword inputs and output, from a float
    forward pass of the whole model."""
    captured: list[list] = [[] for _ in layers]
    handles = []
    for index, layer in enumerate(layers):

        def pre_hook(module, args, kwargs, index=index):
            captured[index].append([args, kwargs, None])

        def hook(module, args, kwargs, output, index=index):
            captured[index][-1][2] = _first_output(output).detach()

        handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(layer.register_forward_hook(hook, with_kwargs=True))
    try:
        for batch in batches:
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _calibration_batches(dataset: Any, collator: Callable, config: NupesConfig, device: torch.device) -> list[dict]:
    count = min(config.calibration_samples, len(dataset))
    if count == 0:
        raise ValueError("`calibration_dataset` is empty.")
    subset = torch.utils.data.Subset(dataset, range(count))
    batches = []
    for batch in DataLoader(subset, batch_size=config.batch_size, shuffle=False, collate_fn=collator):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        batch.pop("labels", None)
        batches.append(batch)
    return batches


def _continuous_codes(weight: torch.Tensor, q: QuantizedWeight) -> torch.Tensor:
    """The real-valued codes the optimization starts from: each weight's position on the code axis, `sign(w) * |w / s|
    ** a * L`, moved to within 0.499 of its code, so that rounding gives the code while weights near a boundary between
    two codes start near it."""
    level = code_range(q.bits)
    position = torch.sign(weight) * (weight.detach().float() / q.scales).abs().clamp(max=1.0) ** q.exponents * level
    codes = q.codes.float()
    return codes + (position - codes).clamp(-0.499, 0.499)


@contextlib.contextmanager
def _frozen(model: PreTrainedModel) -> Iterator[None]:
    """The model in eval mode with no parameter requiring grad; both restored on exit."""
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    try:
        yield
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(trainable[name])
        model.train(was_training)


@contextlib.contextmanager
def _learning_codes(
    modules: dict[str, nn.Module], weights: dict[str, nn.Parameter], start: dict[str, QuantizedWeight]
) -> Iterator[dict[str, _LearnedCodes]]:
    """Each weight of `start` parametrized by learnable codes and exponents (starting from its quantized value); the
    float weights are back on exit."""
    learned: dict[str, _LearnedCodes] = {}
    try:
        for name, q in start.items():
            module = _LearnedCodes(_continuous_codes(weights[name], q), q.scales, q.exponents, q.bits)
            parametrize.register_parametrization(modules[name.removesuffix(".weight")], "weight", module, unsafe=True)
            learned[name] = module
        yield learned
    finally:
        for name in learned:
            parametrize.remove_parametrizations(
                modules[name.removesuffix(".weight")], "weight", leave_parametrized=False
            )


def _reconstruct_layer(
    layer: nn.Module,
    names: list[str],
    weights: dict[str, nn.Parameter],
    modules: dict[str, nn.Module],
    start: dict[str, QuantizedWeight],
    captured: list,
    inputs: list[torch.Tensor],
    config: NupesConfig,
) -> tuple[dict[str, QuantizedWeight], float, float]:
    """Learn the codes and exponents of one layer's weights on its block output; returns them, and the block's output
    error before and after."""
    with _learning_codes(modules, weights, {name: start[name] for name in names}) as learned:
        codes = [m.codes for m in learned.values()]
        exponents = [m.log_exponents for m in learned.values()]
        groups = [{"params": codes, "lr": config.learning_rate}]
        if config.exponent_learning_rate > 0:
            groups.append({"params": exponents, "lr": config.exponent_learning_rate})
        else:
            for p in exponents:
                p.requires_grad_(False)
        optimizer = torch.optim.Adam(groups)

        def error() -> float:
            with torch.no_grad():
                total = sum(
                    F.mse_loss(_run_layer(layer, x, args, kwargs), target).item()
                    for x, (args, kwargs, target) in zip(inputs, captured, strict=True)
                )
            return total / len(inputs)

        before = error()
        for step in range(config.steps):
            j = step % len(inputs)
            args, kwargs, target = captured[j]
            loss = F.mse_loss(_run_layer(layer, inputs[j], args, kwargs), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        after = error()
        result = {name: m.result() for name, m in learned.items()}
    return result, before, after


def nupes_quantize(
    model: PreTrainedModel,
    bits: int,
    *,
    config: NupesConfig | None = None,
    calibration_dataset: Any = None,
    data_collator: Callable | None = None,
    include: str | Sequence[str] | None = None,
) -> QuantizationReport:
    """NUPES: non-uniform quantization by power exponent, in place (see the module docstring for the method).

    Args:
        model (`PreTrainedModel`): an extracted subnet or a vanilla BERT, ViT or BEiT model (not a supernet).
        bits (`int`): 2 to 8.
        config ([`NupesConfig`], *optional*): granularity, data-free or not, calibration size and optimization.
        calibration_dataset (*optional*): examples the block outputs are reconstructed on (labels are not used);
            required unless `config.data_free`. The first `config.calibration_samples` are used.
        data_collator (`Callable`, *optional*): turns a list of examples into a batch of model inputs.
        include (`str` or `Sequence[str]`, *optional*): glob patterns restricting the weights ([`prunable_weights`]).

    Returns:
        [`QuantizationReport`] with `method="nupes"`; `settings` holds the configuration and, with data, each
        layer's block output error before and after the reconstruction.
    """
    check_compressible(model, "quantization")
    bits = check_bits(bits)
    config = NupesConfig() if config is None else config
    if not isinstance(config, NupesConfig):
        raise TypeError(f"`config` must be a NupesConfig, got {type(config).__name__}.")
    if not config.data_free and (calibration_dataset is None or data_collator is None):
        raise ValueError(
            "NUPES learns its exponents and codes on calibration data: give `calibration_dataset` and "
            "`data_collator`, or use NupesConfig(data_free=True) to quantize from the weights alone."
        )
    weights = prunable_weights(model, include)
    if not weights:
        raise ValueError("`model` has no encoder layers, so no weights to quantize.")
    originals = {name: w.detach().clone() for name, w in weights.items()}
    quantized = {name: _data_free(w.detach(), bits, config.granularity) for name, w in weights.items()}
    settings: dict[str, Any] = {"config": config.to_dict()}
    if not config.data_free:
        quantized, settings["block_errors"] = _reconstruct(
            model, weights, quantized, calibration_dataset, data_collator, config
        )
    if config.end_to_end_steps:
        quantized, settings["end_to_end"] = _distill(
            model, weights, quantized, calibration_dataset, data_collator, config
        )
    _write(model, quantized)
    errors = {name: _relative_error(q.dequantize(), originals[name]) for name, q in quantized.items()}
    return QuantizationReport("nupes", bits, config.granularity, quantized, errors, config.data_free, settings)


def _reconstruct(
    model: PreTrainedModel,
    weights: dict[str, nn.Parameter],
    quantized: dict[str, QuantizedWeight],
    dataset: Any,
    collator: Callable,
    config: NupesConfig,
) -> tuple[dict[str, QuantizedWeight], list[dict[str, float]]]:
    """Block-wise output reconstruction, layer after layer; the model's weights are the float ones throughout, the
    quantized blocks' outputs are carried forward as the next block's inputs."""
    family = get_family(model.config)
    prefix = f"{model.base_model_prefix}." if model.base_model is not model else ""
    layers = model.base_model.get_submodule(family.vanilla_layers)
    prefixes = [f"{prefix}{family.vanilla_layers}.{i}." for i in range(len(layers))]
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    block_errors = []
    with _frozen(model):
        batches = _calibration_batches(dataset, collator, config, device)
        captured = _capture_layers(model, layers, batches)
        inputs = [_hidden_states(args, kwargs) for args, kwargs, _ in captured[0]]  # the embeddings' output
        result = dict(quantized)
        for index, layer in enumerate(layers):
            names = [n for n in weights if _layer_of(n, prefixes) == index]
            if names:
                learned, before, after = _reconstruct_layer(
                    layer, names, weights, modules, quantized, captured[index], inputs, config
                )
                result.update(learned)
                block_errors.append({"layer": index, "mse_before": before, "mse_after": after})
                logger.info("NUPES layer %d: block output MSE %.3g -> %.3g", index, before, after)
            with torch.no_grad(), _quantized_weights(modules, {n: result[n] for n in names}):
                inputs = [
                    _run_layer(layer, x, args, kwargs).detach()
                    for x, (args, kwargs, _) in zip(inputs, captured[index], strict=True)
                ]
    return result, block_errors


def _output_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    """The distillation loss of a model output: KL divergence to the float model's class distribution when the model
    has logits, else the mean squared error of its first output (the hidden states)."""
    logits = getattr(output, "logits", None)
    if logits is not None:
        return F.kl_div(
            F.log_softmax(logits.float(), -1), F.log_softmax(target, -1), log_target=True, reduction="batchmean"
        )
    return F.mse_loss(_first_output(output).float(), target)


def _model_output(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    return (logits if logits is not None else _first_output(output)).detach().float()


def _distill(
    model: PreTrainedModel,
    weights: dict[str, nn.Parameter],
    quantized: dict[str, QuantizedWeight],
    dataset: Any,
    collator: Callable,
    config: NupesConfig,
) -> tuple[dict[str, QuantizedWeight], dict[str, Any]]:
    """End-to-end distillation: every quantized weight's codes and exponents learned together (rounded in the forward
    pass, straight-through) on the float model's outputs. The block-reconstructed solution is kept when the
    distillation does not lower the calibration loss."""
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    with _frozen(model):
        batches = _calibration_batches(dataset, collator, config, device)
        with torch.no_grad():
            targets = [_model_output(model(**batch)) for batch in batches]  # the float model: nothing written yet
        with _learning_codes(modules, weights, quantized) as learned:
            result, record = _distill_codes(model, learned, quantized, batches, targets, config)
    return result, record


def _distill_codes(
    model: PreTrainedModel,
    learned: dict[str, _LearnedCodes],
    quantized: dict[str, QuantizedWeight],
    batches: list[dict],
    targets: list[torch.Tensor],
    config: NupesConfig,
) -> tuple[dict[str, QuantizedWeight], dict[str, Any]]:
    """The distillation steps on the parametrized model; the learned codes, or `quantized` if the loss did not drop."""
    params = [p for m in learned.values() for p in (m.codes, m.log_exponents)]
    optimizer = torch.optim.Adam(params, lr=config.end_to_end_learning_rate)

    def loss_on_all() -> float:
        with torch.no_grad():
            total = sum(_output_loss(model(**b), t).item() for b, t in zip(batches, targets, strict=True))
        return total / len(batches)

    before = loss_on_all()
    for step in range(config.end_to_end_steps):
        j = step % len(batches)
        loss = _output_loss(model(**batches[j]), targets[j])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    after = loss_on_all()
    kept = after < before
    result = {name: m.result() for name, m in learned.items()} if kept else dict(quantized)
    logger.info("NUPES end-to-end distillation: loss %.4g -> %.4g (%s)", before, after, "kept" if kept else "undone")
    return result, {"steps": config.end_to_end_steps, "loss_before": before, "loss_after": after, "kept": kept}


@contextlib.contextmanager
def _quantized_weights(modules: dict[str, nn.Module], quantized: dict[str, QuantizedWeight]) -> Iterator[None]:
    registered = []
    try:
        for name, q in quantized.items():
            linear = modules[name.removesuffix(".weight")]
            parametrize.register_parametrization(linear, "weight", _FromCodes(q), unsafe=True)
            registered.append(linear)
        yield
    finally:
        for linear in registered:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)


# ----------------------------------------------------------------------------------------------------------------
# the registry
@dataclass(frozen=True)
class QuantizationMethod:
    """A way to quantize weights: `quantize(model, bits, include=..., config=..., calibration_dataset=...,
    data_collator=...)` quantizes in place and returns a [`QuantizationReport`]; `description` completes the model
    card's sentence; `needs_data` says whether it takes calibration data (unless its config says data-free)."""

    quantize: Callable[..., QuantizationReport]
    description: str = ""
    needs_data: bool = False

    def __call__(self, model: PreTrainedModel, bits: int, **kwargs: Any) -> QuantizationReport:
        return self.quantize(model, bits, **kwargs)


QUANTIZATION_METHODS: dict[str, QuantizationMethod] = {
    "uniform": QuantizationMethod(
        uniform_quantize,
        "uniform symmetric round-to-nearest quantization per output channel (scale: the channel's largest absolute "
        "weight)",
    ),
    "nupes": QuantizationMethod(
        nupes_quantize,
        "NUPES non-uniform quantization by power exponent (a learned exponent per output channel or layer warps a "
        "uniform grid, `W = scale * sign(code) * (|code| / L) ** (1 / exponent)`; exponents and integer codes "
        "learned by block-wise output reconstruction on calibration data, or chosen from the weights alone in the "
        "data-free mode)",
        needs_data=True,
    ),
}


def get_quantization_method(name: str) -> QuantizationMethod:
    """The [`QuantizationMethod`] registered as `name` in [`QUANTIZATION_METHODS`].

    Example:

    ```python
    >>> from hf_nas.compression import get_quantization_method
    >>> get_quantization_method("uniform").quantize.__name__
    'uniform_quantize'
    ```
    """
    if name not in QUANTIZATION_METHODS:
        raise ValueError(f"Unknown quantization method {name!r}; allowed: {sorted(QUANTIZATION_METHODS)}.")
    return QUANTIZATION_METHODS[name]
