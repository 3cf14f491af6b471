"""Unstructured sparsity of the encoder layers' linear weights, and the registry of the methods that make it.

The weights concerned ([`prunable_weights`]) are those of every `nn.Linear` inside the encoder layers of a BERT, ViT
or BEiT model (query, key, value, attention output, FFN in and out): embeddings, LayerNorms, biases, the pooler and
every head keep their values. [`magnitude_prune`] zeroes the smallest-magnitude share of them, globally;
[`sparsity_report`] measures the zeros of the same weights in any model (a reloaded checkpoint, a supernet).
[`SPARSITY_METHODS`] maps each method name of `hf-nas compress --method` to its [`SparsityMethod`].

Example:

```python
>>> from transformers import BertConfig, BertForSequenceClassification
>>> from hf_nas.compression import magnitude_prune, sparsity_report
>>> model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
...                                                  num_attention_heads=4, intermediate_size=64))
>>> report = magnitude_prune(model, 0.5)
>>> report.zeros, report.total, report.share
(8192, 16384, 0.5)
>>> sparsity_report(model).zeros  # measured again: the same zeros
8192
```
"""

from __future__ import annotations

import fnmatch
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ..models.families import get_family
from ..models.supernet import SupernetMixin

__all__ = [
    "PATTERNS",
    "SPARSITY_METHODS",
    "LayerSparsity",
    "SparsityMethod",
    "SparsityReport",
    "check_compressible",
    "check_pattern",
    "check_sparsity",
    "get_sparsity_method",
    "magnitude_masks",
    "magnitude_prune",
    "prunable_weights",
    "register_sparsity_method",
    "sparsity_report",
]

# The layouts of the zeros: anywhere (`unstructured`, the share is over all weights together), or 2 of every 4
# consecutive weights of a row (`2:4`, NVIDIA's semi-structured sparsity; the share is then 0.5 exactly).
PATTERNS = ("unstructured", "2:4")


# ----------------------------------------------------------------------------------------------------------------
# the report
@dataclass(frozen=True)
class LayerSparsity:
    """The zeros of one weight tensor: `zeros` of its `total` entries."""

    zeros: int
    total: int

    @property
    def share(self) -> float:
        """`zeros / total` (0.0 for an empty tensor)."""
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"zeros": self.zeros, "total": self.total, "share": self.share}


@dataclass(frozen=True)
class SparsityReport:
    """The zeros of the encoder linear weights, per parameter name and overall.

    Args:
        layers (`dict[str, LayerSparsity]`): parameter name (`bert.encoder.layer.0.attention.self.query.weight`)
            to its zeros, in the model's order.
        method (`str`, *optional*): the method that made the zeros (`magnitude`); `None` for a measurement.
        target (`float`, *optional*): the sparsity asked of `method`.
        pattern (`str`, *optional*, defaults to `"unstructured"`): the layout of the zeros ([`PATTERNS`]).

    Example:

    ```python
    >>> from hf_nas.compression import LayerSparsity, SparsityReport
    >>> report = SparsityReport({"a.weight": LayerSparsity(3, 4), "b.weight": LayerSparsity(1, 4)}, "magnitude", 0.5)
    >>> report.zeros, report.total, report.share
    (4, 8, 0.5)
    >>> SparsityReport.from_dict(report.to_dict()) == report
    True
    ```
    """

    layers: dict[str, LayerSparsity]
    method: str | None = None
    target: float | None = None
    pattern: str = "unstructured"

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers.values())

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def share(self) -> float:
        """The overall sparsity: all zeros over all weights (0.0 without weights)."""
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: method, target, pattern, overall zeros/total/share and `layers`."""
        return {
            "method": self.method,
            "target": self.target,
            "pattern": self.pattern,
            "zeros": self.zeros,
            "total": self.total,
            "share": self.share,
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparsityReport:
        """The report of [`to_dict`] (e.g. read back from `compression.json`)."""
        layers = {name: LayerSparsity(int(d["zeros"]), int(d["total"])) for name, d in data["layers"].items()}
        return cls(layers, data.get("method"), data.get("target"), data.get("pattern", "unstructured"))


# ----------------------------------------------------------------------------------------------------------------
# the weights
def check_compressible(model: Any, action: str) -> None:
    """Refuse what compression cannot work on, naming `action` (e.g. `"magnitude pruning"`): an elastic supernet
    (extract a subnet first) or anything that is not a transformers `PreTrainedModel`.

    Example:

    ```python
    >>> from torch import nn
    >>> from hf_nas.compression import check_compressible
    >>> check_compressible(nn.Linear(2, 2), "ONNX export")
    Traceback (most recent call last):
        ...
    TypeError: `model` must be a transformers PreTrainedModel, got Linear.
    ```
    """
    if isinstance(model, SupernetMixin):
        raise TypeError(
            f"`model` is an elastic supernet ({type(model).__name__}); {action} works on an extracted subnet: extract "
            "one first (`hf_nas.extract_subnet`, `hf-nas extract`)."
        )
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"`model` must be a transformers PreTrainedModel, got {type(model).__name__}.")


def _check_include(include: Any) -> tuple[str, ...] | None:
    if include is None:
        return None
    patterns = (include,) if isinstance(include, str) else include
    if not isinstance(patterns, Sequence) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"`include` must be a glob pattern or a non-empty sequence of them, got {include!r}.")
    return tuple(patterns)


def prunable_weights(model: PreTrainedModel, include: str | Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The weights of every `nn.Linear` inside the encoder layers of `model`, by parameter name, in the model's order.

    Args:
        model (`PreTrainedModel`): a BERT, ViT or BEiT model: vanilla, an extracted per-layer subnet or a supernet.
        include (`str` or `Sequence[str]`, *optional*): glob patterns (`fnmatch`) on the parameter names; only the
            weights matching one of them are kept (default: all). Each pattern must match at least one weight.

    Returns:
        `dict[str, nn.Parameter]`: e.g. `bert.encoder.layer.0.attention.self.query.weight` to that parameter.

    Example:

    ```python
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from hf_nas.compression import prunable_weights
    >>> model = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                                             intermediate_size=64, image_size=32, patch_size=8))
    >>> list(prunable_weights(model))
    ['vit.layers.0.attention.q_proj.weight', 'vit.layers.0.attention.k_proj.weight', 'vit.layers.0.attention.v_proj.weight', 'vit.layers.0.attention.o_proj.weight', 'vit.layers.0.mlp.fc1.weight', 'vit.layers.0.mlp.fc2.weight']
    >>> list(prunable_weights(model, include="*.mlp.*"))
    ['vit.layers.0.mlp.fc1.weight', 'vit.layers.0.mlp.fc2.weight']
    ```
    """
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"`model` must be a transformers PreTrainedModel, got {type(model).__name__}.")
    patterns = _check_include(include)
    layers = model.base_model.get_submodule(get_family(model.config).vanilla_layers)
    linears = {id(m) for layer in layers for m in layer.modules() if isinstance(m, nn.Linear)}
    weights = {f"{name}.weight": m.weight for name, m in model.named_modules() if id(m) in linears}
    if patterns is None:
        return weights
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in weights):
            raise ValueError(
                f"`include` pattern {pattern!r} matches none of the encoder linear weights, e.g. {list(weights)[:3]}."
            )
    return {n: w for n, w in weights.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


@torch.no_grad()
def sparsity_report(model: PreTrainedModel, *, include: str | Sequence[str] | None = None) -> SparsityReport:
    """Measure the exact zeros of the weights of [`prunable_weights`] in any model of a supported family.

    Example:

    ```python
    >>> from transformers import BertConfig, BertModel
    >>> from hf_nas.compression import sparsity_report
    >>> model = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                              intermediate_size=64))
    >>> report = sparsity_report(model)
    >>> report.share, report.total, report.method
    (0.0, 8192, None)
    ```
    """
    weights = prunable_weights(model, include)
    return SparsityReport({n: LayerSparsity(int((w == 0).sum()), w.numel()) for n, w in weights.items()})


# ----------------------------------------------------------------------------------------------------------------
# magnitude pruning
def check_sparsity(sparsity: Any, name: str = "sparsity") -> float:
    """`sparsity` as a float with 0 < sparsity < 1 (bools refused); `name` is the option named in the errors.

    Example:

    ```python
    >>> from hf_nas.compression import check_sparsity
    >>> check_sparsity(0.5)
    0.5
    >>> check_sparsity(1)
    Traceback (most recent call last):
        ...
    ValueError: `sparsity` must be a float with 0 < sparsity < 1 (the share of zeros), got 1.
    ```
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(f"`{name}` must be a float, got {sparsity!r} of type {type(sparsity).__name__}.")
    if not 0 < sparsity < 1:
        raise ValueError(f"`{name}` must be a float with 0 < {name} < 1 (the share of zeros), got {sparsity}.")
    return float(sparsity)


def check_pattern(pattern: Any, sparsity: float | None = None, name: str = "pattern") -> str:
    """`pattern` if it is one of [`PATTERNS`]; `2:4` also needs `sparsity` (when given) to be 0.5.

    Example:

    ```python
    >>> from hf_nas.compression import check_pattern
    >>> check_pattern("2:4", 0.5)
    '2:4'
    >>> check_pattern("2:4", 0.7)
    Traceback (most recent call last):
        ...
    ValueError: `pattern` '2:4' keeps 2 of every 4 weights: its sparsity is 0.5, got 0.7.
    ```
    """
    if pattern not in PATTERNS:
        raise ValueError(f"`{name}` {pattern!r} is not a sparsity pattern; allowed: {list(PATTERNS)}.")
    if pattern == "2:4" and sparsity is not None and sparsity != 0.5:
        raise ValueError(f"`{name}` '2:4' keeps 2 of every 4 weights: its sparsity is 0.5, got {sparsity}.")
    return pattern


def _prune_masks(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Boolean masks of the `k` smallest scores over all tensors together; ties at the threshold go to the earliest
    entries (tensors in order, each flattened), as a stable sort would."""
    flat = torch.cat([s.flatten() for s in scores])  # (N,)
    threshold = flat.kthvalue(k).values
    left = k - int((flat < threshold).sum())  # ties at the threshold still to prune
    masks = []
    for score in scores:
        mask = score < threshold
        ties = (score == threshold).flatten().nonzero().squeeze(1)  # (T,)
        take = ties[:left]
        mask.view(-1)[take] = True
        left -= take.numel()
        masks.append(mask)
    return masks


def _semi_structured_masks(scores: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    """Boolean masks pruning the 2 smallest scores of every 4 consecutive entries of each row (ties to the earlier)."""
    masks = []
    for name, score in zip(names, scores, strict=True):
        if score.ndim != 2 or score.shape[1] % 4:
            raise ValueError(
                f"The 2:4 pattern groups 4 consecutive input weights; {name} has shape {tuple(score.shape)}, whose "
                "input size is not a multiple of 4."
            )
        groups = score.reshape(-1, 4)  # (R * I / 4, 4)
        order = torch.sort(groups, dim=1, stable=True).indices  # (G, 4) smallest first
        mask = torch.zeros_like(groups, dtype=torch.bool)
        mask.scatter_(1, order[:, :2], True)
        masks.append(mask.view_as(score))
    return masks


@torch.no_grad()
def magnitude_masks(
    weights: Mapping[str, torch.Tensor], sparsity: float, pattern: str = "unstructured"
) -> dict[str, torch.Tensor]:
    """The masks of magnitude pruning: True where a weight is pruned. `unstructured`: the `round(sparsity * total)`
    weights of smallest absolute value over all `weights` together (ties broken by position, so the count is exact);
    `2:4`: the 2 of smallest absolute value in every 4 consecutive weights of a row.

    Args:
        weights (`Mapping[str, torch.Tensor]`): e.g. [`prunable_weights`] of a model.
        sparsity (`float`): the share to prune, 0 < sparsity < 1 (0.5 for `2:4`).
        pattern (`str`, *optional*, defaults to `"unstructured"`): one of [`PATTERNS`].

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.compression import magnitude_masks
    >>> masks = magnitude_masks({"w": torch.tensor([[0.1, -3.0, 2.0, -0.2]])}, 0.5, "2:4")
    >>> masks["w"].tolist()
    [[True, False, False, True]]
    ```
    """
    sparsity = check_sparsity(sparsity)
    pattern = check_pattern(pattern, sparsity)
    if not weights:
        raise ValueError("No weights to prune.")
    device = next(iter(weights.values())).device
    scores = [w.detach().abs().to(device=device, dtype=torch.float32) for w in weights.values()]
    if not all(bool(torch.isfinite(s).all()) for s in scores):
        raise ValueError("The model has non-finite (NaN or inf) encoder weights; magnitude pruning needs finite ones.")
    if pattern == "2:4":
        return dict(zip(weights, _semi_structured_masks(scores, list(weights)), strict=True))
    k = round(sparsity * sum(s.numel() for s in scores))
    if k == 0:
        return {name: torch.zeros_like(s, dtype=torch.bool) for name, s in zip(weights, scores, strict=True)}
    return dict(zip(weights, _prune_masks(scores, k), strict=True))


@torch.no_grad()
def magnitude_prune(
    model: PreTrainedModel,
    sparsity: float,
    *,
    include: str | Sequence[str] | None = None,
    pattern: str = "unstructured",
) -> SparsityReport:
    """Global magnitude pruning, in place: of the weights of [`prunable_weights`] taken together, the
    `round(sparsity * total)` of smallest absolute value become exactly zero (ties broken by position, so the count
    is exact; weights that were already zero count among them). With `pattern="2:4"`, the 2 of smallest absolute value
    in every 4 consecutive weights of each row instead ([`magnitude_masks`]).

    Args:
        model (`PreTrainedModel`): an extracted subnet or a vanilla BERT, ViT or BEiT model (not a supernet).
        sparsity (`float`): the share of zeros, 0 < sparsity < 1 (0.5 with `pattern="2:4"`).
        include (`str` or `Sequence[str]`, *optional*): glob patterns restricting the weights (see
            [`prunable_weights`]); `sparsity` is then the share of zeros among those.
        pattern (`str`, *optional*, defaults to `"unstructured"`): the layout of the zeros, one of [`PATTERNS`].

    Returns:
        [`SparsityReport`]: the zeros of each pruned weight and overall, with `method="magnitude"`.

    Example:

    ```python
    >>> from transformers import BertConfig, BertModel
    >>> from hf_nas.compression import magnitude_prune
    >>> model = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                              intermediate_size=64))
    >>> embeddings = model.embeddings.word_embeddings.weight.clone()
    >>> report = magnitude_prune(model, 0.3)
    >>> report.zeros == round(0.3 * 8192), report.method, report.target
    (True, 'magnitude', 0.3)
    >>> bool((model.embeddings.word_embeddings.weight == embeddings).all())  # embeddings and heads untouched
    True
    ```
    """
    check_compressible(model, "magnitude pruning")
    sparsity = check_sparsity(sparsity)
    pattern = check_pattern(pattern, sparsity)
    weights = prunable_weights(model, include)
    if not weights:
        raise ValueError("`model` has no encoder layers, so no weights to prune.")
    for name, mask in magnitude_masks(weights, sparsity, pattern).items():
        weights[name].masked_fill_(mask.to(weights[name].device), 0)
    measured = sparsity_report(model, include=include)
    return SparsityReport(measured.layers, method="magnitude", target=sparsity, pattern=pattern)


# ----------------------------------------------------------------------------------------------------------------
# the registry
@dataclass(frozen=True)
class SparsityMethod:
    """A way to make weights sparse: `prune(model, sparsity, include=..., pattern=..., **data)` prunes in place and
    returns a [`SparsityReport`]; `description` completes the model card's "Compressed ... by" sentence. A method
    with `needs_data=True` (a search, a fine-tuning) also takes `train_dataset` and `data_collator` keyword
    arguments, and `config`, its settings."""

    prune: Callable[..., SparsityReport]
    description: str = field(default="")
    needs_data: bool = False

    def __call__(self, model: PreTrainedModel, sparsity: float, **kwargs: Any) -> SparsityReport:
        return self.prune(model, sparsity, **kwargs)


SPARSITY_METHODS: dict[str, SparsityMethod] = {
    "magnitude": SparsityMethod(
        magnitude_prune,
        "magnitude pruning (the weights of smallest absolute value set to zero, without retraining)",
    ),
}


def register_sparsity_method(name: str, method: SparsityMethod) -> SparsityMethod:
    """Add a sparsity method that `hf-nas compress --method` can choose (`hf_nas.compression` registers its own)."""
    if not isinstance(method, SparsityMethod):
        raise TypeError(f"`method` must be a SparsityMethod, got {type(method).__name__}.")
    SPARSITY_METHODS[name] = method
    return method


def get_sparsity_method(name: str) -> SparsityMethod:
    """The [`SparsityMethod`] registered as `name` in [`SPARSITY_METHODS`].

    Example:

    ```python
    >>> from hf_nas.compression import get_sparsity_method
    >>> get_sparsity_method("magnitude").prune.__name__
    'magnitude_prune'
    ```
    """
    if name not in SPARSITY_METHODS:
        raise ValueError(f"Unknown sparsity method {name!r}; allowed: {sorted(SPARSITY_METHODS)}.")
    return SPARSITY_METHODS[name]
