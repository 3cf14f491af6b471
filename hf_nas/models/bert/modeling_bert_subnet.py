"""BERT with a different number of attention heads and FFN width in each layer.

This file is self-contained (it imports only torch, transformers and huggingface_hub): hf-nas copies it into the
folder of every extracted heterogeneous subnet, so that

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

loads the subnet on a machine without hf-nas. The modules and parameter names are vanilla BERT's; only the shapes
of each layer's query/key/value, attention output and FFN projections differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

__all__ = [
    "BertSubnetConfig",
    "BertSubnetForMaskedLM",
    "BertSubnetForQuestionAnswering",
    "BertSubnetForSequenceClassification",
    "BertSubnetForTokenClassification",
    "BertSubnetModel",
]

# >>> shared subnet code: copied from models/subnet_common.py of hf-nas; edit it there, not here >>>


@dataclass(kw_only=True, eq=False, repr=False)
class LayerSizesConfigMixin:
    r"""Per-layer sizes, mixed into a vanilla config class (listed before it).

    `hidden_size // num_attention_heads` is the attention head size, as in the vanilla model; layer `i` has
    `layer_num_attention_heads[i]` heads of that size and an FFN (MLP) of width `layer_intermediate_sizes[i]`.
    Both default to the uniform sizes of the vanilla fields.
    """

    layer_num_attention_heads: list[int] | None = None
    layer_intermediate_sizes: list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.layer_num_attention_heads is None:
            self.layer_num_attention_heads = [self.num_attention_heads] * self.num_hidden_layers
        if self.layer_intermediate_sizes is None:
            self.layer_intermediate_sizes = [self.intermediate_size] * self.num_hidden_layers
        for name in ("layer_num_attention_heads", "layer_intermediate_sizes"):
            values = getattr(self, name)
            if len(values) != self.num_hidden_layers:
                raise ValueError(
                    f"`{name}` has {len(values)} entries but num_hidden_layers is {self.num_hidden_layers}."
                )
            if any(int(v) < 1 for v in values):
                raise ValueError(f"`{name}` entries must be >= 1, got {list(values)}.")


@dataclass(frozen=True)
class LayerLayout:
    """Where a vanilla model keeps the modules whose shapes follow a layer's head count and FFN width.

    Args:
        layers: the path of the layer list in the base model (`encoder.layer`).
        attention: the path, in a layer, of the module that splits the heads (its `num_attention_heads`, and
            `all_head_size` if it has one, are set to the layer's).
        qkv: the paths of the query, key and value projections (`hidden -> heads * head_size`).
        attention_output: the path of the projection of the merged heads (`heads * head_size -> hidden`).
        ffn_input: the path of the FFN's first projection (`hidden -> intermediate`).
        ffn_output: the path of the FFN's second projection (`intermediate -> hidden`).
    """

    layers: str
    attention: str
    qkv: tuple[str, str, str]
    attention_output: str
    ffn_input: str
    ffn_output: str


def _resize_linear(
    root: nn.Module, path: str, in_features: int | None = None, out_features: int | None = None
) -> None:
    """Replace the `nn.Linear` at `path` by one of the new shape, with a bias if it had one (fresh weights: the
    checkpoint fills them)."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path)
    old = getattr(parent, name)
    new = nn.Linear(
        old.in_features if in_features is None else in_features,
        old.out_features if out_features is None else out_features,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    setattr(parent, name, new)


def resize_layers(layers: nn.ModuleList, config: LayerSizesConfigMixin, layout: LayerLayout) -> None:
    """Give every layer its own head count and FFN width; the model was built at the uniform size first."""
    head_size = config.hidden_size // config.num_attention_heads
    sizes = zip(layers, config.layer_num_attention_heads, config.layer_intermediate_sizes, strict=True)
    for layer, heads, ffn in sizes:
        inner = heads * head_size
        for path in layout.qkv:
            _resize_linear(layer, path, out_features=inner)
        _resize_linear(layer, layout.attention_output, in_features=inner)
        _resize_linear(layer, layout.ffn_input, out_features=ffn)
        _resize_linear(layer, layout.ffn_output, in_features=ffn)
        attention = layer.get_submodule(layout.attention)
        attention.num_attention_heads = heads
        if hasattr(attention, "all_head_size"):
            attention.all_head_size = inner


class SubnetModelMixin:
    """Mixed into a vanilla model class (listed before it): builds the vanilla model, then resizes its layers to
    the config's per-layer sizes. A family sets `layer_layout` and may extend `resize_layers`."""

    layer_layout: ClassVar[LayerLayout]

    def __init__(self, config: LayerSizesConfigMixin, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.resize_layers(config)
        self.post_init()

    def resize_layers(self, config: LayerSizesConfigMixin) -> None:
        layers = self.base_model.get_submodule(self.layer_layout.layers)
        resize_layers(layers, config, self.layer_layout)


# <<< shared subnet code <<<


@strict
class BertSubnetConfig(LayerSizesConfigMixin, BertConfig):
    r"""[`BertConfig`] with per-layer sizes: layer `i` has `layer_num_attention_heads[i]` heads of size
    `hidden_size // num_attention_heads` and an FFN of width `layer_intermediate_sizes[i]`."""

    model_type = "bert_subnet"


class _BertSubnetMixin(SubnetModelMixin):
    layer_layout = LayerLayout(
        layers="encoder.layer",
        attention="attention.self",
        qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
        attention_output="attention.output.dense",
        ffn_input="intermediate.dense",
        ffn_output="output.dense",
    )


class BertSubnetModel(_BertSubnetMixin, BertModel):
    config_class = BertSubnetConfig


class BertSubnetForSequenceClassification(_BertSubnetMixin, BertForSequenceClassification):
    config_class = BertSubnetConfig


class BertSubnetForTokenClassification(_BertSubnetMixin, BertForTokenClassification):
    config_class = BertSubnetConfig


class BertSubnetForQuestionAnswering(_BertSubnetMixin, BertForQuestionAnswering):
    config_class = BertSubnetConfig


class BertSubnetForMaskedLM(_BertSubnetMixin, BertForMaskedLM):
    config_class = BertSubnetConfig
