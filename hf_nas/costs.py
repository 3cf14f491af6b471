"""Costs of a subnet: parameters, multiply-accumulates (MACs) and latency.

[`count_parameters`] and [`count_macs`] are analytic: arithmetic on the config and the [`SubnetConfig`], with no
extraction and no forward pass, so a search can call them on thousands of candidates. Each equals what the extracted
subnet really has or does: `sum(p.numel() for p in extract_subnet(model, subnet).parameters())` for parameters, and
the MACs `torch.utils.flop_counter.FlopCounterMode` counts on its forward for MACs (see [`count_macs_measured`]).
[`measure_latency`] times the *extracted* subnet with `torch.utils.benchmark`; [`time_forward`] times any model. Both
follow one protocol (warm-up, then rounds until the spread of the times is small, see [`time_forward`]) and report
milliseconds; the search's latency objective, `hf-nas extract` and the model cards all use [`measure_latency`].
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import numbers
import statistics
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from .extraction import extract_subnet
from .models.families import FAMILIES, get_family
from .models.supernet import SupernetMixin
from .search_space import SubnetConfig
from .validation import check_device, check_min_run_time, check_positive_int, pair

__all__ = [
    "DEFAULT_MAX_RELATIVE_IQR",
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_WARMUP_RUNS",
    "LatencyResult",
    "NOISY_ACTIONS",
    "NoisyLatencyError",
    "check_latency_options",
    "count_macs",
    "count_macs_measured",
    "count_parameters",
    "layer_linear_macs",
    "layer_macs",
    "layer_parameters",
    "measure_latency",
    "non_layer_macs",
    "num_tokens",
    "time_forward",
]

logger = logging.getLogger(__name__)

# A size or a cost: a plain number, or a tensor of them (e.g. expected sizes under a mixture of choices).
Scalar = int | float | torch.Tensor


# ----------------------------------------------------------------------------------------------------------------
# argument checks
def _check_sequence_length(config: Any, sequence_length: int) -> int:
    check_positive_int("sequence_length", sequence_length)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and sequence_length > limit:
        raise ValueError(
            f"`sequence_length`={sequence_length} exceeds the model's max_position_embeddings={limit}; "
            f"allowed: 1 to {limit}."
        )
    return sequence_length


@dataclass(frozen=True)
class _Inputs:
    """What one forward pass sees: `tokens` per example (text: the sequence length; images: patches + CLS)."""

    tokens: int
    image_size: tuple[int, int] | None = None
    num_patches: int = 0

    def describe(self) -> str:
        if self.image_size is None:
            return f"{self.tokens} tokens"
        return f"{self.image_size[0]}x{self.image_size[1]} px ({self.tokens} tokens)"


def _resolve_inputs(config: Any, sequence_length: int | None, image_size: Any) -> _Inputs:
    """Check the input-size arguments against the model kind: text models take `sequence_length` (default 128),
    image models `image_size` (an int or (height, width); default: the config's)."""
    if get_family(config).is_image:
        if sequence_length is not None:
            raise ValueError(
                f"`sequence_length` is for text models; this {config.model_type} model takes images: pass "
                "`image_size` (an int or (height, width); default: the config's image_size)."
            )
        size = pair(config.image_size if image_size is None else image_size)
        if isinstance(image_size, bool) or any(v < 1 for v in size):
            raise ValueError(f"`image_size` must be a positive int or (height, width), got {image_size!r}.")
        patch = pair(config.patch_size)
        num_patches = (size[0] // patch[0]) * (size[1] // patch[1])
        if num_patches < 1:
            raise ValueError(
                f"`image_size`={image_size!r} is smaller than one patch ({patch[0]}x{patch[1]}); allowed: at least "
                "the patch size."
            )
        return _Inputs(num_patches + 1, size, num_patches)
    if image_size is not None:
        raise ValueError(
            f"`image_size` is for image models; this {getattr(config, 'model_type', 'text')} model takes text: pass "
            "`sequence_length`."
        )
    return _Inputs(_check_sequence_length(config, 128 if sequence_length is None else sequence_length))


# ----------------------------------------------------------------------------------------------------------------
# the architecture a cost is computed for
@dataclass(frozen=True)
class _Architecture:
    """What the cost formulas read: the subnet's sizes, the fixed head size and the (full) model config."""

    subnet: SubnetConfig
    attention_head_size: int
    config: Any
    head: _HeadCost


def _architecture(model: nn.Module, subnet: SubnetConfig | None) -> _Architecture:
    """The architecture of `subnet` in a supernet, or of a plain BERT model (vanilla or extracted) as built."""
    if isinstance(model, SupernetMixin):
        if subnet is None:
            subnet = model.active_subnet
        elif not isinstance(subnet, SubnetConfig):
            raise TypeError(f"`subnet` must be a SubnetConfig or None, got {type(subnet).__name__}.")
        elif subnet != model.max_subnet():
            model.search_space.validate(subnet)  # what extract_subnet accepts, so the cost is of a real model
        config = model.config
        return _Architecture(subnet, config.attention_head_size, config, _model_head(model))
    if subnet is not None:
        raise ValueError(
            f"`subnet` is only for supernets; {type(model).__name__} is a plain model whose architecture is its "
            "config. Pass subnet=None."
        )
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "num_attention_heads"):
        raise TypeError(
            f"Cannot read an architecture from {type(model).__name__}: expected an (elastic) BERT, ViT or BEiT model."
        )
    head_size = config.hidden_size // config.num_attention_heads
    layers = config.num_hidden_layers
    # An extracted heterogeneous subnet (`*SubnetConfig`) stores per-layer sizes; a vanilla model is uniform.
    heads = getattr(config, "layer_num_attention_heads", None) or (config.num_attention_heads,) * layers
    ffn = getattr(config, "layer_intermediate_sizes", None) or (config.intermediate_size,) * layers
    plain = SubnetConfig(layers, tuple(heads), tuple(ffn), config.hidden_size)
    return _Architecture(plain, head_size, config, _model_head(model))


def _model_head(model: nn.Module) -> _HeadCost:
    """The head cost of a supernet (by its vanilla class name) or of a plain model (by its classes)."""
    if isinstance(model, SupernetMixin):
        return _head_cost(model.config, model.static_class_name)
    return _plain_head_cost(model)


def _plain_head_cost(model: nn.Module) -> _HeadCost:
    """The head cost of a plain (vanilla or extracted) model, by its class or the first base class hf-nas knows."""
    for cls in type(model).__mro__:
        try:
            return _head_cost(model.config, cls.__name__)
        except (TypeError, ValueError):
            continue
    raise TypeError(
        f"No cost formulas for {type(model).__name__}; supported: supernets and plain models of the families "
        f"{sorted(FAMILIES)} with the heads {sorted(_HEAD_COSTS)} (and their subclasses)."
    )


def _base_model(model: nn.Module) -> nn.Module:
    """The backbone (`model.bert` for heads, the model itself for `*Model`)."""
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def _linear_params(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features  # weight + bias


# ----------------------------------------------------------------------------------------------------------------
# heads: one small class per kind, found by the vanilla class name (`static_class_name` of a supernet)
class _HeadCost(ABC):
    """Parameters and MACs of what a head class adds on top of the backbone's last hidden state."""

    @abstractmethod
    def num_parameters(self, model: nn.Module, hidden_size: int) -> int: ...

    @abstractmethod
    def macs(self, model: nn.Module, hidden_size: int, batch_size: int, sequence_length: int) -> int: ...


class _NoHead(_HeadCost):
    def num_parameters(self, model: nn.Module, hidden_size: int) -> int:
        return 0

    def macs(self, model: nn.Module, hidden_size: int, batch_size: int, sequence_length: int) -> int:
        return 0


@dataclass(frozen=True)
class _LinearHead(_HeadCost):
    """A linear layer `attribute` on the pooled output (`per_token=False`, once per sequence) or on every token."""

    attribute: str
    per_token: bool

    def num_parameters(self, model: nn.Module, hidden_size: int) -> int:
        return _linear_params(hidden_size, getattr(model, self.attribute).out_features)

    def macs(self, model: nn.Module, hidden_size: int, batch_size: int, sequence_length: int) -> int:
        rows = batch_size * sequence_length if self.per_token else batch_size
        return rows * hidden_size * getattr(model, self.attribute).out_features


class _MaskedLMHead(_HeadCost):
    """`cls.predictions`: transform (dense + LayerNorm) and the vocabulary decoder, usually tied to the word
    embeddings (weight) and to `cls.predictions.bias` (bias), and then counted once, as `parameters()` does."""

    def num_parameters(self, model: nn.Module, hidden_size: int) -> int:
        predictions = model.cls.predictions
        decoder = predictions.decoder
        vocab_size = decoder.out_features
        n = _linear_params(hidden_size, hidden_size) + 2 * hidden_size  # transform.dense + transform.LayerNorm
        n += predictions.bias.numel()
        if decoder.weight is not _base_model(model).embeddings.word_embeddings.weight:
            n += vocab_size * hidden_size
        if decoder.bias is not None and decoder.bias is not predictions.bias:
            n += vocab_size
        return n

    def macs(self, model: nn.Module, hidden_size: int, batch_size: int, sequence_length: int) -> int:
        vocab_size = model.cls.predictions.decoder.out_features
        return batch_size * sequence_length * hidden_size * (hidden_size + vocab_size)  # transform + decoder


# by task (the head's kind), whatever the family
_HEAD_COSTS: dict[str, _HeadCost] = {
    "feature-extraction": _NoHead(),
    "sequence-classification": _LinearHead("classifier", per_token=False),
    "image-classification": _LinearHead("classifier", per_token=False),
    "token-classification": _LinearHead("classifier", per_token=True),
    "question-answering": _LinearHead("qa_outputs", per_token=True),
    "fill-mask": _MaskedLMHead(),
}


def _head_cost(config: Any, class_name: str) -> _HeadCost:
    """The head cost of a class of the config's family, by its name (vanilla, elastic or subnet)."""
    try:
        task = get_family(config).task_of(class_name).name
    except ValueError as e:
        raise TypeError(f"No cost formulas for {class_name}: {e}") from e
    if task not in _HEAD_COSTS:
        raise TypeError(f"No cost formulas for heads of class {class_name!r}; supported tasks: {sorted(_HEAD_COSTS)}.")
    return _HEAD_COSTS[task]


# ----------------------------------------------------------------------------------------------------------------
# the cost model: one layer from its active sizes, the tokens of one input, and what lies outside the layers
def num_tokens(
    config: Any, sequence_length: int | None = None, image_size: int | tuple[int, int] | None = None
) -> int:
    """Tokens per example of one forward pass: the sequence length for text models, the patches plus the CLS token
    for image models.

    Args:
        config (`PretrainedConfig`): the model's config (it tells the family: text or images).
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence (at most
            `config.max_position_embeddings`).
        image_size (`int` or `(height, width)`, *optional*): image models: the input size, default
            `config.image_size`; `(height // patch) * (width // patch)` patches plus the CLS token.

    Returns:
        `int`: the tokens per example.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig
    >>> from hf_nas.costs import num_tokens
    >>> num_tokens(ElasticViTConfig(image_size=32, patch_size=8))  # 4 x 4 patches + CLS
    17
    ```
    """
    return _resolve_inputs(config, sequence_length, image_size).tokens


def _check_scalar(field: str, value: Any) -> Scalar:
    """A size: a tensor (not checked, it may carry gradients) or a real number >= 0."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{field}` must be a number or a tensor, got {value!r} of type {type(value).__name__}.")
    if not value >= 0:
        raise ValueError(f"`{field}` must be >= 0, got {value}.")
    return value


def layer_parameters(
    config: Any,
    hidden_size: Scalar,
    num_attention_heads: Scalar,
    intermediate_size: Scalar,
    *,
    attention_head_size: int,
) -> Scalar:
    """Parameters of one encoder layer with the given active sizes.

    BERT: query/key/value and attention output (weights and biases), the FFN (in and out, with biases) and two
    LayerNorms. ViT and BEiT: the same, with the query/key/value biases of the config (`qkv_bias`; BEiT has no key
    bias) and, for BEiT, the layer-scale vectors and the per-head relative position bias table when the config has
    them. The sizes may be plain numbers or tensors of the same shape (the formula is polynomial in them), e.g.
    expected sizes under a mixture of choices.

    Args:
        config (`PretrainedConfig`): the model's config (the family and its bias, layer-scale and position-bias
            options).
        hidden_size (`int` or `torch.Tensor`): hidden size `h`.
        num_attention_heads (`int` or `torch.Tensor`): attention heads kept in the layer.
        intermediate_size (`int` or `torch.Tensor`): FFN width kept in the layer.
        attention_head_size (`int`): the size of one head (fixed by the supernet).

    Returns:
        `int` (or `torch.Tensor` when a size is one): the parameters of the layer.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from transformers.models.bert.modeling_bert import BertLayer
    >>> from hf_nas.costs import layer_parameters
    >>> config = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64)
    >>> layer_parameters(config, 32, 4, 64, attention_head_size=8)
    8544
    >>> sum(p.numel() for p in BertLayer(config).parameters())
    8544
    ```
    """
    h = _check_scalar("hidden_size", hidden_size)
    heads = _check_scalar("num_attention_heads", num_attention_heads)
    ffn = _check_scalar("intermediate_size", intermediate_size)
    inner = heads * check_positive_int("attention_head_size", attention_head_size)
    n = _linear_params(inner, h) + _linear_params(h, ffn) + _linear_params(ffn, h)  # attention output, FFN in, out
    family = get_family(config)
    if not family.is_image:
        return n + 3 * _linear_params(h, inner) + 4 * h  # query, key, value; two LayerNorms
    beit = family.model_type == "beit"
    n += 3 * h * inner + inner * (2 if beit else 3 * bool(config.qkv_bias))  # q, k, v (BEiT: no key bias)
    n += 4 * h  # layernorm_before and layernorm_after
    if beit and config.layer_scale_init_value > 0:
        n += 2 * h  # lambda_1, lambda_2
    if beit and config.use_relative_position_bias:
        n += _relative_distances(config) * heads
    return n


def layer_linear_macs(
    hidden_size: Scalar, num_attention_heads: Scalar, intermediate_size: Scalar, *, attention_head_size: int
) -> Scalar:
    """MACs of the linear layers of one encoder layer, per token: query, key, value and attention output
    (`4 h a` with `a` = heads x head size) and the two FFN matrices (`2 h f`). Plain numbers or tensors.

    Example:

    ```python
    >>> from hf_nas.costs import layer_linear_macs
    >>> layer_linear_macs(32, 4, 64, attention_head_size=8)  # 4 * 32 * 32 + 2 * 32 * 64
    8192
    ```
    """
    h = _check_scalar("hidden_size", hidden_size)
    heads = _check_scalar("num_attention_heads", num_attention_heads)
    inner = heads * check_positive_int("attention_head_size", attention_head_size)
    ffn = _check_scalar("intermediate_size", intermediate_size)
    return 4 * h * inner + 2 * h * ffn  # q, k, v, attention output; FFN in and out


def layer_macs(
    hidden_size: Scalar,
    num_attention_heads: Scalar,
    intermediate_size: Scalar,
    *,
    attention_head_size: int,
    tokens: int,
    batch_size: int = 1,
) -> Scalar:
    """MACs of one encoder layer on `batch_size` examples of `tokens` tokens, as [`count_macs`] counts them: the
    linear layers on every token ([`layer_linear_macs`]) and the attention matmuls, scores `q k^T` and `probs v`
    (`2 T^2 a` per example, `a` = heads x head size). Bias additions, softmax, LayerNorm and elementwise ops are not
    counted.

    The sizes may be plain numbers or tensors: MACs are linear in each of `hidden_size`, `num_attention_heads` and
    `intermediate_size`, so with independent expected sizes the result is the expected MACs.

    Args:
        hidden_size (`int` or `torch.Tensor`): hidden size `h`.
        num_attention_heads (`int` or `torch.Tensor`): attention heads kept in the layer.
        intermediate_size (`int` or `torch.Tensor`): FFN width kept in the layer.
        attention_head_size (`int`): the size of one head.
        tokens (`int`): tokens per example (see [`num_tokens`]).
        batch_size (`int`, *optional*, defaults to 1): examples per forward pass.

    Returns:
        `int` (or `torch.Tensor` when a size is one): the MACs of the layer.

    Example:

    ```python
    >>> from hf_nas.costs import layer_macs
    >>> layer_macs(32, 4, 64, attention_head_size=8, tokens=16)  # 16 * 8192 + 2 * 16 * 16 * 32
    147456
    ```
    """
    linear = layer_linear_macs(
        hidden_size, num_attention_heads, intermediate_size, attention_head_size=attention_head_size
    )
    check_positive_int("tokens", tokens)
    check_positive_int("batch_size", batch_size)
    inner = num_attention_heads * attention_head_size
    # scores (B, nh, T, T) = q k^T, then probs @ v: T * head size MACs per score each
    return batch_size * tokens * linear + 2 * batch_size * tokens * tokens * inner


def non_layer_macs(
    model: nn.Module,
    hidden_size: int,
    sequence_length: int | None = None,
    batch_size: int = 1,
    image_size: int | tuple[int, int] | None = None,
) -> int:
    """MACs of one forward pass outside the encoder layers, at hidden size `hidden_size`: the patch projection of
    image models (`patches x hidden x channels x patch area`), the pooler (BERT: `h x h`, ViT: `h x` its width, once
    per example) and the head (see [`count_macs`]). [`count_macs`] is this plus [`layer_macs`] of every kept layer.

    Args:
        model (`nn.Module`): an elastic supernet or a plain model (vanilla or extracted) of a supported family.
        hidden_size (`int`): the hidden size of the subnet.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        batch_size (`int`, *optional*, defaults to 1): examples per forward pass.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).

    Returns:
        `int`: the MACs outside the layers.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.costs import non_layer_macs
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> non_layer_macs(ElasticBertForSequenceClassification(config), 32, sequence_length=16)  # pooler + classifier
    1088
    ```
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    arch = _architecture(model, None)
    inputs = _resolve_inputs(arch.config, sequence_length, image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    return _non_layer_macs(model, arch, check_positive_int("hidden_size", hidden_size), inputs, batch_size)


def _non_layer_macs(model: nn.Module, arch: _Architecture, h: int, inputs: _Inputs, batch_size: int) -> int:
    """Patch projection (images), pooler and head MACs at hidden size `h`."""
    config, macs = arch.config, 0
    pooler = getattr(_base_model(model), "pooler", None)
    if get_family(config).is_image:
        patch = pair(config.patch_size)
        macs += batch_size * inputs.num_patches * h * config.num_channels * patch[0] * patch[1]  # patch projection
        if get_family(config).model_type == "vit" and pooler is not None:
            macs += batch_size * h * _pooler_width(config, h)  # dense on the CLS state
    elif pooler is not None:
        macs += batch_size * h * h  # first token of each sequence
    return macs + arch.head.macs(model, h, batch_size, inputs.tokens)


# ----------------------------------------------------------------------------------------------------------------
# parameters
def count_parameters(model: nn.Module, subnet: SubnetConfig | None = None) -> int:
    """Number of parameters of the extracted `subnet`, computed without extracting it.

    The count is exactly `sum(p.numel() for p in extract_subnet(model, subnet).parameters())`: embeddings (the
    vocabulary is never cut), every kept layer, the pooler if the model has one, and the head; a masked-LM decoder
    tied to the word embeddings is counted once, as `parameters()` does. It is plain arithmetic on the config and
    `subnet` (a few microseconds), so a search can call it on thousands of candidates: [`layer_parameters`] of every
    kept layer plus the embeddings, pooler and head.

    Args:
        model (`nn.Module`):
            An elastic supernet (`ElasticBert*`). A plain model (e.g. an extracted subnet) is also accepted: its
            parameters are simply summed.
        subnet (`SubnetConfig`, *optional*):
            The subnet to count; defaults to `model.active_subnet`. It must lie in `model.search_space` (the whole
            supernet, `model.max_subnet()`, is always allowed), as for `extract_subnet`.

    Returns:
        `int`: the number of parameters (tied parameters counted once).

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, count_parameters, extract_subnet
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> subnet = model.search_space.smallest()
    >>> count_parameters(model, subnet) == sum(p.numel() for p in extract_subnet(model, subnet).parameters())
    True
    ```
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(model, SupernetMixin):
        if subnet is not None:
            raise ValueError(
                f"`subnet` is only for supernets; {type(model).__name__} is a plain model. Pass subnet=None."
            )
        return sum(p.numel() for p in model.parameters())
    arch = _architecture(model, subnet)
    config, s = arch.config, arch.subnet
    n = sum(
        layer_parameters(config, s.hidden_size, heads, ffn, attention_head_size=arch.attention_head_size)
        for heads, ffn in zip(s.num_attention_heads, s.intermediate_size, strict=True)
    )
    if get_family(config).is_image:
        n += _vision_non_layer_parameters(model, config, s)
    else:
        n += _text_non_layer_parameters(model, config, s.hidden_size)
    return n + arch.head.num_parameters(model, s.hidden_size)


def _text_non_layer_parameters(model: nn.Module, config: Any, h: int) -> int:
    """Embeddings (word, position and token-type tables of width `h`, and their LayerNorm) and the pooler."""
    n = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * h + 2 * h
    if getattr(_base_model(model), "pooler", None) is not None:
        n += _linear_params(h, h)
    return n


def _relative_distances(config: Any) -> int:
    """Rows of a BEiT relative position bias table (one column per head)."""
    window = [i // p for i, p in zip(pair(config.image_size), pair(config.patch_size), strict=True)]
    return (2 * window[0] - 1) * (2 * window[1] - 1) + 3


def _pooler_width(config: Any, hidden_size: int) -> int:
    """ViT's pooler follows the hidden size when it is as wide as the full model's; any other width is fixed."""
    width = getattr(config, "pooler_output_size", None) or config.hidden_size
    return hidden_size if width == config.hidden_size else width


def _vision_non_layer_parameters(model: nn.Module, config: Any, s: SubnetConfig) -> int:
    """Parameters of a ViT or BEiT backbone outside its layers, with the sizes of `s`: patch embeddings, the shared
    relative position bias, the final LayerNorm and the pooler (the head is counted by the caller)."""
    h = s.hidden_size
    beit = get_family(config).model_type == "beit"
    base = _base_model(model)
    embeddings = base.embeddings
    patch = pair(config.patch_size)
    n = config.num_channels * patch[0] * patch[1] * h + h  # patch projection (a convolution with bias)
    n += h  # CLS token
    if getattr(embeddings, "position_embeddings", None) is not None:
        n += embeddings.position_embeddings.shape[1] * h
    if getattr(embeddings, "mask_token", None) is not None:
        n += h
    if beit and getattr(base, "shared_position_bias", None) is not None:
        n += _relative_distances(config) * max(s.num_attention_heads)  # one column per head of the widest layer
    if not (beit and config.use_mean_pooling):
        n += 2 * h  # final layer norm
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        if beit:
            n += 2 * h if config.use_mean_pooling else 0  # the pooler's layer norm over the mean patch state
        else:
            n += _linear_params(h, _pooler_width(config, h))
    return n


# ----------------------------------------------------------------------------------------------------------------
# MACs
def count_macs(
    model: nn.Module,
    subnet: SubnetConfig | None = None,
    sequence_length: int | None = None,
    batch_size: int = 1,
    image_size: int | tuple[int, int] | None = None,
) -> int:
    """Multiply-accumulates of one forward pass of the extracted `subnet`, computed without extracting it.

    Counted, for `N = batch_size * sequence_length` tokens, hidden size `h` and, in layer `i`, `a_i` = heads x head
    size and FFN width `f_i`:
    - every linear layer, per token: query/key/value `3 N h a_i`, attention output `N a_i h`, FFN `2 N h f_i`;
    - the attention matmuls, per layer: scores `q k^T` and `probs v`, `2 * batch_size * T^2 * a_i`;
    - the pooler (`h x h`) and the sequence-classification classifier once per sequence, on the first token;
      token-classification and question-answering outputs per token; the masked-LM transform (`h x h`) and
      vocabulary decoder (`h x vocab_size`) per token.

    That is [`layer_macs`] of every kept layer plus [`non_layer_macs`] (patch projection, pooler, head).

    Not counted: bias additions, elementwise ops (residuals, activations, masking, scaling), softmax, LayerNorm and
    embedding lookups. This is exactly what `torch.utils.flop_counter.FlopCounterMode` counts (its FLOPs are 2 x MACs
    for `mm`/`addmm`/`bmm`), so `count_macs` equals [`count_macs_measured`].

    Args:
        model (`nn.Module`):
            An elastic supernet (`ElasticBert*`), or a plain BERT model (vanilla `Bert*` or an extracted
            `BertSubnet*`), whose architecture is then read from its config.
        subnet (`SubnetConfig`, *optional*):
            The subnet; defaults to `model.active_subnet`. Must be None for a plain model.
        sequence_length (`int`, *optional*, defaults to 128):
            Text models: tokens per sequence (at most `config.max_position_embeddings`).
        batch_size (`int`, *optional*, defaults to 1):
            Sequences (or images) per forward pass.
        image_size (`int` or `(height, width)`, *optional*):
            Image models (ViT, BEiT): the input size, default `config.image_size`; the sequence is its patches plus
            the CLS token, and the patch projection adds `patches x hidden x channels x patch area` MACs.

    Returns:
        `int`: the MACs of one forward pass.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, count_macs
    >>> from hf_nas.costs import count_macs_measured
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> subnet = model.search_space.smallest()
    >>> count_macs(model, subnet, sequence_length=16) == count_macs_measured(model, subnet, sequence_length=16)
    True
    ```
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    arch = _architecture(model, subnet)
    inputs = _resolve_inputs(arch.config, sequence_length, image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    s = arch.subnet
    macs = sum(
        layer_macs(
            s.hidden_size,
            heads,
            ffn,
            attention_head_size=arch.attention_head_size,
            tokens=inputs.tokens,
            batch_size=batch_size,
        )
        for heads, ffn in zip(s.num_attention_heads, s.intermediate_size, strict=True)
    )
    return macs + _non_layer_macs(model, arch, s.hidden_size, inputs, batch_size)


def _random_model_inputs(
    config: Any, batch_size: int, inputs: _Inputs, device: torch.device | str, seed: int
) -> dict[str, Any]:
    """Seeded random inputs for one forward: `input_ids` for text models, `pixel_values` for image models (with
    `interpolate_pos_encoding=True` when the size differs from the config's)."""
    if inputs.image_size is None:
        return _random_inputs(config.vocab_size, batch_size, inputs.tokens, device, seed)
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch_size, config.num_channels, *inputs.image_size, generator=generator)
    batch: dict[str, Any] = {"pixel_values": pixel_values.to(device)}
    if inputs.image_size != pair(config.image_size):
        batch["interpolate_pos_encoding"] = True
    return batch


def _random_inputs(
    vocab_size: int, batch_size: int, sequence_length: int, device: torch.device | str, seed: int
) -> dict[str, torch.Tensor]:
    """Random `input_ids` from a seeded generator (never the global RNG) and an all-ones `attention_mask`."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch_size, sequence_length), generator=generator)  # (B, T)
    attention_mask = torch.ones_like(input_ids)  # (B, T)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def count_macs_measured(
    model: nn.Module,
    subnet: SubnetConfig | None = None,
    sequence_length: int | None = None,
    batch_size: int = 1,
    image_size: int | tuple[int, int] | None = None,
) -> int:
    """MACs of one forward pass of the extracted `subnet`, counted by `torch.utils.flop_counter.FlopCounterMode`.

    Extracts `subnet` (a plain model is deep-copied instead), runs one forward in eval mode on random `input_ids` of
    shape `(batch_size, sequence_length)` (image models: random `pixel_values` of `image_size`) and returns the
    counted FLOPs // 2. Slow compared to [`count_macs`], which
    it checks; meant for tests and benchmarks.

    The copy runs with *eager* attention: on CPU, SDPA dispatches to `aten._scaled_dot_product_flash_attention_for_cpu`,
    for which FlopCounterMode (torch 2.13) has no formula, so it would silently miss the attention matmuls. Eager
    attention computes them as two `bmm`s, which it counts. The model passed in is not changed.

    Args:
        model (`nn.Module`): an elastic supernet, or a plain BERT model (then `subnet` must be None).
        subnet (`SubnetConfig`, *optional*): the subnet; defaults to `model.active_subnet`.
        sequence_length (`int`, *optional*, defaults to 128): tokens per sequence.
        batch_size (`int`, *optional*, defaults to 1): sequences per forward pass.

    Returns:
        `int`: the measured MACs.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.costs import count_macs_measured
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> count_macs_measured(ElasticBertModel(config), sequence_length=8) > 0
    True
    ```
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    arch = _architecture(model, subnet)  # validates `subnet` and the model kind
    model_inputs = _resolve_inputs(arch.config, sequence_length, image_size)
    check_positive_int("batch_size", batch_size)
    if isinstance(model, SupernetMixin):
        static = extract_subnet(model, arch.subnet)
    else:
        static = copy.deepcopy(model)
    static.set_attn_implementation("eager")
    static.eval()
    device = next(static.parameters()).device
    inputs = _random_model_inputs(static.config, batch_size, model_inputs, device, seed=0)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        static(**inputs)
    return counter.get_total_flops() // 2


# ----------------------------------------------------------------------------------------------------------------
# latency: one protocol (warm-up, rounds, spread check) for the search objective, extraction and model cards
DEFAULT_WARMUP_RUNS = 5
DEFAULT_MAX_RELATIVE_IQR = 0.25
DEFAULT_MAX_ROUNDS = 3
NOISY_ACTIONS = ("flag", "raise")
# Blocks a round times at least: the interquartile range of fewer blocks says nothing about the spread (of one block
# it is 0), so a round that `blocked_autorange` ends sooner is topped up with blocks of the same size.
_MIN_BLOCKS = 5


class NoisyLatencyError(RuntimeError):
    """A latency whose spread stayed above `max_relative_iqr` in every round (see [`time_forward`]).

    Args:
        message (`str`): what was measured, the spread, the threshold and what to do.
        result ([`LatencyResult`]): the least noisy round, with `noisy=True`.
    """

    def __init__(self, message: str, result: LatencyResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class LatencyResult:
    """Forward-pass latency of a model, as measured by [`time_forward`] / [`measure_latency`]. Times are in
    milliseconds: the fields end in `_ms` and [`to_dict`] says `"unit": "ms"`.

    Args:
        median_ms (`float`): median time of one forward pass, in milliseconds.
        iqr_ms (`float`): interquartile range of the per-pass times, in milliseconds.
        device (`str`): the torch device it ran on, e.g. `"cpu"` or `"cuda:0"`.
        batch_size (`int`): sequences per forward pass.
        sequence_length (`int`): tokens per sequence.
        num_threads (`int`): torch intra-op threads used.
        num_runs (`int`): forward passes timed in the kept round (blocks x passes per block).
        image_size (`list[int]`, *optional*): image models: the input `[height, width]` (`sequence_length` is then
            the number of patches plus the CLS token).
        noisy (`bool`, *optional*, defaults to `False`): True if `iqr_ms / median_ms` stayed above
            `max_relative_iqr` in every round: the machine was busy and the median is not to be trusted.
        rounds (`int`, *optional*, defaults to 1): measurement rounds run; the least noisy one is kept.
        warmup_runs (`int`, *optional*): untimed forward passes before the first round.
        max_relative_iqr (`float`, *optional*): the spread threshold the result was checked against.

    Example:

    ```python
    >>> from hf_nas.costs import LatencyResult
    >>> result = LatencyResult(1.5, 0.1, "cpu", 1, 128, 4, 200)
    >>> result.to_dict()["median_ms"], result.to_dict()["unit"], result.noisy
    (1.5, 'ms', False)
    >>> LatencyResult.from_dict(result.to_dict()) == result
    True
    ```
    """

    UNIT: ClassVar[str] = "ms"

    median_ms: float
    iqr_ms: float
    device: str
    batch_size: int
    sequence_length: int
    num_threads: int
    num_runs: int
    image_size: list[int] | None = None
    noisy: bool = False
    rounds: int = 1
    warmup_runs: int | None = None
    max_relative_iqr: float | None = None

    @property
    def relative_iqr(self) -> float:
        """`iqr_ms / median_ms`: the spread of the per-pass times relative to their median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    @classmethod
    def dict_keys(cls) -> tuple[str, ...]:
        """Every key [`to_dict`] may write: the fields and `"unit"` (optional fields are left out when None)."""
        return (*(f.name for f in dataclasses.fields(cls)), "unit")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict with `"unit": "ms"`; `image_size`, `warmup_runs` and
        `max_relative_iqr` are left out when None."""
        data = dataclasses.asdict(self)
        for key in ("image_size", "warmup_runs", "max_relative_iqr"):
            if data[key] is None:
                del data[key]
        return {**data, "unit": self.UNIT}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        """The result a [`to_dict`] wrote, also one saved before `unit`, `noisy`, `rounds`, `warmup_runs` and
        `max_relative_iqr` existed (they take their defaults)."""
        if not isinstance(data, dict):
            raise TypeError(f"`data` must be a dict from LatencyResult.to_dict(), got {type(data).__name__}.")
        unknown = sorted(set(data) - set(cls.dict_keys()))
        if unknown:
            raise ValueError(f"Unknown keys in the latency dict: {unknown}; allowed: {list(cls.dict_keys())}.")
        unit = data.get("unit", cls.UNIT)
        if unit != cls.UNIT:
            raise ValueError(f"The latency dict has `unit`={unit!r}; allowed: {cls.UNIT!r}.")
        return cls(**{k: v for k, v in data.items() if k != "unit"})


def check_latency_options(
    warmup_runs: Any, max_relative_iqr: Any, max_rounds: Any, on_noisy: Any
) -> tuple[int, float, int, str]:
    """Check the options of the spread check of [`time_forward`] and return them (the threshold as a float).

    Example:

    ```python
    >>> from hf_nas.costs import check_latency_options
    >>> check_latency_options(5, 0.25, 3, "flag")
    (5, 0.25, 3, 'flag')
    ```
    """
    if isinstance(warmup_runs, bool) or not isinstance(warmup_runs, int):
        raise TypeError(f"`warmup_runs` must be an int, got {warmup_runs!r} of type {type(warmup_runs).__name__}.")
    if warmup_runs < 0:
        raise ValueError(f"`warmup_runs` must be an int >= 0, got {warmup_runs}.")
    if isinstance(max_relative_iqr, bool) or not isinstance(max_relative_iqr, numbers.Real):
        raise TypeError(f"`max_relative_iqr` must be a number (e.g. 0.25), got {max_relative_iqr!r}.")
    if not max_relative_iqr > 0:  # also refuses NaN; math.inf accepts any spread
        raise ValueError(f"`max_relative_iqr` must be > 0 (math.inf accepts any spread), got {max_relative_iqr}.")
    check_positive_int("max_rounds", max_rounds)
    if on_noisy not in NOISY_ACTIONS:
        raise ValueError(f"`on_noisy`={on_noisy!r} is not allowed; allowed: {list(NOISY_ACTIONS)}.")
    return warmup_runs, float(max_relative_iqr), max_rounds, on_noisy


@dataclass(frozen=True)
class _Round:
    """One measurement round: median and interquartile range of the per-pass times of its blocks."""

    median_ms: float
    iqr_ms: float
    num_runs: int

    @property
    def relative_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf


def _time_round(timer: benchmark.Timer, min_run_time: float) -> _Round:
    """`blocked_autorange` for at least `min_run_time` seconds, topped up to `_MIN_BLOCKS` blocks of its size."""
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    number = measurement.number_per_run
    times = list(measurement.times)  # seconds per forward pass, one value per block
    while len(times) < _MIN_BLOCKS:
        times.extend(timer.timeit(number).times)
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return _Round(median_ms=median * 1e3, iqr_ms=(q3 - q1) * 1e3, num_runs=len(times) * number)


def _least_noisy_round(
    timer: benchmark.Timer, min_run_time: float, max_relative_iqr: float, max_rounds: int
) -> tuple[_Round, int]:
    """Rounds until one's spread is at most `max_relative_iqr` or `max_rounds` ran; the least noisy round and the
    number of rounds run."""
    rounds = [_time_round(timer, min_run_time)]
    while rounds[-1].relative_iqr > max_relative_iqr and len(rounds) < max_rounds:
        rounds.append(_time_round(timer, min_run_time))
    return min(rounds, key=lambda r: r.relative_iqr), len(rounds)


@contextlib.contextmanager
def _torch_threads(num_threads: int) -> Iterator[None]:
    """Run the warm-up with the intra-op threads the Timer times with."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _report_noisy(result: LatencyResult, what: str, on_noisy: str) -> None:
    message = (
        f"The latency of {what} is noisy: its interquartile range {result.iqr_ms:.3g} ms is "
        f"{result.relative_iqr:.0%} of its median {result.median_ms:.3g} ms in the least noisy of {result.rounds} "
        f"rounds (max_relative_iqr={result.max_relative_iqr:g}). The machine is probably busy: measure again on an "
        "idle one, or raise `min_run_time`, `max_rounds` or `max_relative_iqr`."
    )
    if on_noisy == "raise":
        raise NoisyLatencyError(message, result)
    logger.warning("%s The result is kept with noisy=True.", message)


def time_forward(
    model: nn.Module,
    batch_size: int,
    sequence_length: int | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    min_run_time: float = 1.0,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    *,
    warmup_runs: int = DEFAULT_WARMUP_RUNS,
    max_relative_iqr: float = DEFAULT_MAX_RELATIVE_IQR,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    on_noisy: str = "flag",
) -> LatencyResult:
    """Time the forward pass of any text or image model (supernet, vanilla or extracted) on random inputs.

    The model is moved to `device` (in place, like `model.to`) and run in eval mode under `torch.no_grad` (its
    training flag is restored afterwards) on random `input_ids` drawn from a generator seeded with `seed` and an
    all-ones `attention_mask` (image models: random `pixel_values`). The protocol, the same for the search's latency
    objective, extraction and model cards:

    1. warm-up: `warmup_runs` untimed forward passes (lazy initialization, allocator caches, CPU frequency);
    2. a round: `torch.utils.benchmark.Timer.blocked_autorange` times blocks of passes for at least `min_run_time`
       seconds (synchronizing accelerators), topped up to 5 blocks; its median and interquartile range (IQR) are
       those of the per-pass times of its blocks;
    3. spread check: if `IQR / median` exceeds `max_relative_iqr` (default 0.25), another round runs, up to
       `max_rounds` (default 3) in all, and the round with the smallest `IQR / median` is kept;
    4. if even that round is too spread, the result is marked `noisy=True` and a warning logged
       (`on_noisy="flag"`, the default), or [`NoisyLatencyError`] is raised (`on_noisy="raise"`).

    Args:
        model (`nn.Module`): a text model that takes `input_ids` and `attention_mask` and has `config.vocab_size`,
            or an image model that takes `pixel_values` and has `config.patch_size`.
        batch_size (`int`): sequences (or images) per forward pass.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence (at most
            `config.max_position_embeddings`).
        device (`str`, *optional*, defaults to `"cpu"`): torch device string, e.g. `"cpu"` or `"cuda:0"`.
        num_threads (`int`, *optional*): torch intra-op threads; defaults to `torch.get_num_threads()`.
        min_run_time (`float`, *optional*, defaults to 1.0): seconds of timed runs at least, per round.
        seed (`int`, *optional*, defaults to 0): seed of the random `input_ids` (or `pixel_values`).
        image_size (`int` or `(height, width)`, *optional*): image models: the input size, default
            `config.image_size` (another size interpolates the position embeddings).
        warmup_runs (`int`, *optional*, defaults to 5): untimed forward passes before the first round (>= 0).
        max_relative_iqr (`float`, *optional*, defaults to 0.25): the largest `IQR / median` accepted;
            `math.inf` accepts any spread.
        max_rounds (`int`, *optional*, defaults to 3): rounds at most while the spread is too large.
        on_noisy (`str`, *optional*, defaults to `"flag"`): what a still too spread result does: `"flag"` returns
            it with `noisy=True` and logs a warning, `"raise"` raises [`NoisyLatencyError`].

    Returns:
        [`LatencyResult`]: the kept round, with the conditions of the measurement.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.costs import time_forward
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> result = time_forward(ElasticBertModel(config), batch_size=1, sequence_length=8, min_run_time=0.05)
    >>> result.median_ms > 0, result.to_dict()["unit"], 1 <= result.rounds <= 3
    (True, 'ms', True)
    ```
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    config = getattr(model, "config", None)
    if not get_family(config).is_image and getattr(config, "vocab_size", None) is None:
        raise TypeError(
            f"`model` ({type(model).__name__}) has neither `config.vocab_size` (text) nor `config.patch_size` "
            "(images) to draw random inputs from."
        )
    check_positive_int("batch_size", batch_size)
    model_inputs = _resolve_inputs(config, sequence_length, image_size)
    parsed_device = check_device(device)
    num_threads = torch.get_num_threads() if num_threads is None else check_positive_int("num_threads", num_threads)
    min_run_time = check_min_run_time(min_run_time)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    warmup_runs, max_relative_iqr, max_rounds, on_noisy = check_latency_options(
        warmup_runs, max_relative_iqr, max_rounds, on_noisy
    )

    inputs = _random_model_inputs(config, batch_size, model_inputs, parsed_device, seed)
    description = f"batch {batch_size} x {model_inputs.describe()} on {parsed_device}"
    was_training = model.training
    model.to(parsed_device).eval()
    try:
        timer = benchmark.Timer(
            stmt="model(**inputs)",
            globals={"model": model, "inputs": inputs},
            num_threads=num_threads,
            label=type(model).__name__,
            description=description,
        )
        with torch.no_grad(), _torch_threads(num_threads):
            # grad mode is per thread, and the Timer runs the statement in this one
            for _ in range(warmup_runs):
                model(**inputs)  # lazy initialization and allocator caches stay out of the timings
            kept, rounds = _least_noisy_round(timer, min_run_time, max_relative_iqr, max_rounds)
    finally:
        model.train(was_training)
    result = LatencyResult(
        median_ms=kept.median_ms,
        iqr_ms=kept.iqr_ms,
        device=str(parsed_device),
        batch_size=batch_size,
        sequence_length=model_inputs.tokens,
        num_threads=num_threads,
        num_runs=kept.num_runs,
        image_size=None if model_inputs.image_size is None else list(model_inputs.image_size),
        noisy=kept.relative_iqr > max_relative_iqr,
        rounds=rounds,
        warmup_runs=warmup_runs,
        max_relative_iqr=max_relative_iqr,
    )
    if result.noisy:
        _report_noisy(result, f"{type(model).__name__} ({description})", on_noisy)
    return result


def measure_latency(
    model: nn.Module,
    subnet: SubnetConfig | None = None,
    batch_size: int = 1,
    sequence_length: int | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    min_run_time: float = 1.0,
    image_size: int | tuple[int, int] | None = None,
    *,
    warmup_runs: int = DEFAULT_WARMUP_RUNS,
    max_relative_iqr: float = DEFAULT_MAX_RELATIVE_IQR,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    on_noisy: str = "flag",
) -> LatencyResult:
    """Latency of one forward pass of the *extracted* `subnet` (a standalone copy, not the supernet).

    This is the one definition of a subnet's latency in hf-nas: the search's `latency` objective, `hf-nas extract`
    and the model cards all call it. The subnet is extracted with `extract_subnet` and timed with [`time_forward`]
    (warm-up, rounds of `torch.utils.benchmark`, spread check) on `device`, in eval mode, under `torch.no_grad`, on
    seeded random inputs of shape `(batch_size, sequence_length)` (or images of `image_size`); the supernet itself
    is neither moved nor changed.

    Args:
        model (`nn.Module`): an elastic supernet (`ElasticBert*`, `ElasticViT*`, `ElasticBeit*`).
        subnet (`SubnetConfig`, *optional*): the subnet; defaults to `model.active_subnet`.
        batch_size (`int`, *optional*, defaults to 1): sequences per forward pass.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        device (`str`, *optional*, defaults to `"cpu"`): torch device string, e.g. `"cpu"` or `"cuda:0"`.
        num_threads (`int`, *optional*): torch intra-op threads; defaults to `torch.get_num_threads()`.
        min_run_time (`float`, *optional*, defaults to 1.0): seconds of timed runs at least, per round.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).
        warmup_runs (`int`, *optional*, defaults to 5): untimed forward passes before timing.
        max_relative_iqr (`float`, *optional*, defaults to 0.25): the largest accepted `IQR / median`.
        max_rounds (`int`, *optional*, defaults to 3): rounds at most while the spread is larger.
        on_noisy (`str`, *optional*, defaults to `"flag"`): `"flag"` (keep a too spread result with `noisy=True`,
            and log a warning) or `"raise"` ([`NoisyLatencyError`]).

    Returns:
        [`LatencyResult`]: median and interquartile range in milliseconds, with the conditions of the measurement.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, measure_latency
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> result = measure_latency(model, model.search_space.smallest(), sequence_length=8, min_run_time=0.05)
    >>> result.sequence_length, result.device, result.max_relative_iqr
    (8, 'cpu', 0.25)
    ```
    """
    if not isinstance(model, SupernetMixin):
        raise TypeError(
            f"`model` must be an elastic supernet, got {type(model).__name__}; time a plain model with `time_forward`."
        )
    # Check everything before the (comparatively slow) extraction.
    check_positive_int("batch_size", batch_size)
    _resolve_inputs(model.config, sequence_length, image_size)
    check_device(device)
    if num_threads is not None:
        check_positive_int("num_threads", num_threads)
    check_min_run_time(min_run_time)
    check_latency_options(warmup_runs, max_relative_iqr, max_rounds, on_noisy)
    arch = _architecture(model, subnet)

    static = extract_subnet(model, arch.subnet)
    return time_forward(
        static,
        batch_size=batch_size,
        sequence_length=sequence_length,
        device=device,
        num_threads=num_threads,
        min_run_time=min_run_time,
        image_size=image_size,
        warmup_runs=warmup_runs,
        max_relative_iqr=max_relative_iqr,
        max_rounds=max_rounds,
        on_noisy=on_noisy,
    )
