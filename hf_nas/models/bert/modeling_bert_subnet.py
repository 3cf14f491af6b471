"""BERT with a different number of attention heads and FFN width in each layer.

This file is self-contained (it imports only torch, transformers and huggingface_hub): hf-nas copies it into the
folder of every extracted heterogeneous subnet, so that

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

loads the subnet on a machine without hf-nas. The modules and parameter names are vanilla BERT's; only the shapes
of each layer's query/key/value, attention output and FFN projections differ.
"""

from __future__ import annotations

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


@strict
class BertSubnetConfig(BertConfig):
    r"""[`BertConfig`] with per-layer sizes.

    `hidden_size // num_attention_heads` is the attention head size, as in BERT; layer `i` has
    `layer_num_attention_heads[i]` heads of that size and an FFN of width `layer_intermediate_sizes[i]`.
    """

    model_type = "bert_subnet"
    layer_num_attention_heads: list[int] | None = None
    layer_intermediate_sizes: list[int] | None = None

    def __post_init__(self, **kwargs):
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


def _resize_layers(encoder: nn.Module, config: BertSubnetConfig) -> None:
    """Give every layer its own head count and FFN width (built at the uniform size first)."""
    hidden = config.hidden_size
    head_size = config.hidden_size // config.num_attention_heads
    layers = zip(encoder.layer, config.layer_num_attention_heads, config.layer_intermediate_sizes, strict=True)
    for layer, heads, ffn in layers:
        inner = heads * head_size
        attention = layer.attention.self
        attention.query = nn.Linear(hidden, inner)
        attention.key = nn.Linear(hidden, inner)
        attention.value = nn.Linear(hidden, inner)
        attention.num_attention_heads = heads
        attention.all_head_size = inner
        layer.attention.output.dense = nn.Linear(inner, hidden)
        layer.intermediate.dense = nn.Linear(hidden, ffn)
        layer.output.dense = nn.Linear(ffn, hidden)


class BertSubnetModel(BertModel):
    config_class = BertSubnetConfig

    def __init__(self, config: BertSubnetConfig, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        _resize_layers(self.encoder, config)
        self.post_init()


class BertSubnetForSequenceClassification(BertForSequenceClassification):
    config_class = BertSubnetConfig

    def __init__(self, config: BertSubnetConfig):
        super().__init__(config)
        _resize_layers(self.bert.encoder, config)
        self.post_init()


class BertSubnetForTokenClassification(BertForTokenClassification):
    config_class = BertSubnetConfig

    def __init__(self, config: BertSubnetConfig):
        super().__init__(config)
        _resize_layers(self.bert.encoder, config)
        self.post_init()


class BertSubnetForQuestionAnswering(BertForQuestionAnswering):
    config_class = BertSubnetConfig

    def __init__(self, config: BertSubnetConfig):
        super().__init__(config)
        _resize_layers(self.bert.encoder, config)
        self.post_init()


class BertSubnetForMaskedLM(BertForMaskedLM):
    config_class = BertSubnetConfig

    def __init__(self, config: BertSubnetConfig):
        super().__init__(config)
        _resize_layers(self.bert.encoder, config)
        self.post_init()
