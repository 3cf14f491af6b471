"""Elastic BERT supernet: the vanilla BERT architecture built from elastic modules, with vanilla parameter names.

Depth keeps the layers `subnet.layers` (an ordered subset); each kept layer runs its first `num_attention_heads[i]` heads and
first `intermediate_size[i]` FFN neurons (importance-ordered by `hf_nas.importance.reorder_by_importance`); every
module reads and writes the first `hidden_size` channels of the residual stream.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertPreTrainedModel,
)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPoolingAndCrossAttentions
from transformers.pytorch_utils import apply_chunking_to_forward
from transformers.utils.output_capturing import capture_outputs

from ...modules import ElasticEmbedding, ElasticLayer, ElasticLayerNorm, ElasticLinear, ElasticSelfAttention
from ...modules.attention import head_permutation_index
from ...search_space import SubnetConfig
from ..supernet import SupernetMixin, set_active_layers
from .configuration_elastic_bert import ElasticBertConfig

__all__ = [
    "ElasticBertForMaskedLM",
    "ElasticBertForQuestionAnswering",
    "ElasticBertForSequenceClassification",
    "ElasticBertForTokenClassification",
    "ElasticBertModel",
    "ElasticBertPreTrainedModel",
]


class ElasticBertEmbeddings(nn.Module):
    """Word, position and token-type embeddings, summed and normalized over the active hidden channels."""

    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.word_embeddings = ElasticEmbedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = ElasticEmbedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = ElasticEmbedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False)
        self.token_type_ids = nn.Buffer(torch.zeros(self.position_ids.size(), dtype=torch.long), persistent=False)

    def set_active(self, hidden_size: int) -> None:
        for module in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings, self.LayerNorm):
            module.set_active(hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        input_shape = input_ids.size() if input_ids is not None else inputs_embeds.size()[:-1]
        batch_size, seq_length = input_shape
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_length]  # (1, T)
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :seq_length].expand(batch_size, seq_length)  # (B, T)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, h)
        embeddings = (
            inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        )
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


class ElasticBertSelfAttention(ElasticSelfAttention):
    def __init__(self, config: ElasticBertConfig):
        super().__init__(config, config.hidden_size, config.num_attention_heads, config.attention_head_size)


class ElasticBertSelfOutput(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.dense = ElasticLinear(config.hidden_size, config.hidden_size)
        self.LayerNorm = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))  # (B, T, h)
        return self.LayerNorm(hidden_states + input_tensor)


class ElasticBertAttention(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.self = ElasticBertSelfAttention(config)
        self.output = ElasticBertSelfOutput(config)

    def set_active(self, hidden_size: int, num_attention_heads: int) -> None:
        self.self.set_active(hidden_size=hidden_size, num_attention_heads=num_attention_heads)
        self.output.dense.set_active(
            in_features=num_attention_heads * self.self.attention_head_size, out_features=hidden_size
        )
        self.output.LayerNorm.set_active(hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        attention_output, attn_weights = self.self(hidden_states, attention_mask=attention_mask, **kwargs)
        return self.output(attention_output, hidden_states), attn_weights


class ElasticBertIntermediate(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.dense = ElasticLinear(config.hidden_size, config.intermediate_size)
        act = config.hidden_act
        self.intermediate_act_fn = ACT2FN[act] if isinstance(act, str) else act

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, f)


class ElasticBertOutput(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.dense = ElasticLinear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))  # (B, T, h)
        return self.LayerNorm(hidden_states + input_tensor)


class ElasticBertLayer(ElasticLayer, GradientCheckpointingLayer):
    """BERT's post-norm layer: attention (`attention.self`, `attention.output`), then the FFN (`intermediate`,
    `output`), each with a residual connection and a layer norm."""

    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.chunk_size_feed_forward = config.chunk_size_feed_forward
        self.seq_len_dim = 1
        self.attention = ElasticBertAttention(config)
        self.intermediate = ElasticBertIntermediate(config)
        self.output = ElasticBertOutput(config)

    def set_active(self, hidden_size: int, num_attention_heads: int, intermediate_size: int) -> None:
        self.attention.set_active(hidden_size, num_attention_heads)
        self.intermediate.dense.set_active(in_features=hidden_size, out_features=intermediate_size)
        self.output.dense.set_active(in_features=intermediate_size, out_features=hidden_size)
        self.output.LayerNorm.set_active(hidden_size)

    # -- importance reordering: which modules emit heads / neurons, and how to permute them -------------------
    @property
    def attention_head_size(self) -> int:
        return self.attention.self.attention_head_size

    @property
    def max_num_attention_heads(self) -> int:
        return self.attention.self.max_num_attention_heads

    @property
    def max_intermediate_size(self) -> int:
        return self.intermediate.dense.max_out_features

    def head_projection(self) -> ElasticLinear:
        """The linear layer whose input is the concatenated head outputs (B, T, heads * head_size)."""
        return self.attention.output.dense

    def neuron_projection(self) -> ElasticLinear:
        """The linear layer whose input is the activated FFN neurons (B, T, intermediate_size)."""
        return self.output.dense

    def qkv_projections(self) -> tuple[ElasticLinear, ElasticLinear, ElasticLinear]:
        """The query, key and value projections, each (B, T, hidden) -> (B, T, heads * head_size)."""
        return self.attention.self.qkv_projections()

    def ffn_projections(self) -> tuple[ElasticLinear, ElasticLinear]:
        return self.intermediate.dense, self.output.dense

    def permute_heads(self, order: torch.Tensor) -> None:
        self.attention.self.permute_heads(order)
        self.attention.output.dense.permute_in_features(head_permutation_index(order, self.attention_head_size))

    def permute_neurons(self, order: torch.Tensor) -> None:
        self.intermediate.dense.permute_out_features(order)
        self.output.dense.permute_in_features(order)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        attention_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
        return apply_chunking_to_forward(
            self.feed_forward_chunk, self.chunk_size_feed_forward, self.seq_len_dim, attention_output
        )

    def feed_forward_chunk(self, attention_output: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(attention_output), attention_output)


class ElasticBertEncoder(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([ElasticBertLayer(config) for _ in range(config.num_hidden_layers)])
        self.active_layers = tuple(range(config.num_hidden_layers))  # indices of the layers that run

    def set_active(self, subnet: SubnetConfig) -> None:
        self.active_layers = set_active_layers(self.layer, subnet)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        for i in self.active_layers:
            hidden_states = self.layer[i](hidden_states, attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class ElasticBertPooler(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.dense = ElasticLinear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, h)


class ElasticBertPredictionHeadTransform(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.dense = ElasticLinear(config.hidden_size, config.hidden_size)
        act = config.hidden_act
        self.transform_act_fn = ACT2FN[act] if isinstance(act, str) else act
        self.LayerNorm = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class ElasticBertLMPredictionHead(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.transform = ElasticBertPredictionHeadTransform(config)
        # Tied to the word embeddings (vocab, hidden): slicing its input columns matches the embeddings' slice.
        self.decoder = ElasticLinear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))  # (B, T, V)


class ElasticBertOnlyMLMHead(nn.Module):
    def __init__(self, config: ElasticBertConfig):
        super().__init__()
        self.predictions = ElasticBertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class ElasticBertPreTrainedModel(SupernetMixin, BertPreTrainedModel):
    config: ElasticBertConfig
    config_class = ElasticBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["ElasticBertEmbeddings", "ElasticBertLayer"]
    _can_record_outputs = {"hidden_states": ElasticBertLayer, "attentions": ElasticBertSelfAttention}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ElasticBertLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, ElasticBertEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            init.zeros_(module.token_type_ids)

    def elastic_layers(self) -> list[ElasticBertLayer]:
        """The transformer layers, in order (all of them, whatever the active depth)."""
        return list(self.base_model.encoder.layer)


class ElasticBertModel(ElasticBertPreTrainedModel):
    """The elastic BERT encoder (embeddings, layers, optional pooler).

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> model = ElasticBertModel(ElasticBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                                            intermediate_size=64, vocab_size=99))
    >>> with model.subnet(model.search_space.smallest()):
    ...     model(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.shape
    torch.Size([1, 3, 16])
    ```
    """

    static_class_name = "BertModel"

    def __init__(self, config: ElasticBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.config = config
        self.gradient_checkpointing = False
        self.embeddings = ElasticBertEmbeddings(config)
        self.encoder = ElasticBertEncoder(config)
        self.pooler = ElasticBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def static_init_kwargs(self) -> dict:
        return {"add_pooling_layer": self.pooler is not None}

    def _apply_subnet(self, subnet: SubnetConfig) -> None:
        self.embeddings.set_active(subnet.hidden_size)
        self.encoder.set_active(subnet)
        if self.pooler is not None:
            self.pooler.dense.set_active(in_features=subnet.hidden_size, out_features=subnet.hidden_size)

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        embedding_output = self.embeddings(
            input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds
        )  # (B, T, h)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        encoder_outputs = self.encoder(
            embedding_output, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        sequence_output = encoder_outputs.last_hidden_state
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, pooler_output=pooled_output
        )


def _classifier_dropout(config: ElasticBertConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class ElasticBertForSequenceClassification(ElasticBertPreTrainedModel):
    """Elastic BERT with the vanilla sequence-classification head (pooler, dropout, linear).

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> from hf_nas import ElasticBertForSequenceClassification
    >>> folder = tempfile.mkdtemp()  # a vanilla BERT checkpoint (a Hub id or a folder)
    >>> config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=64)
    >>> BertForSequenceClassification(config).save_pretrained(folder)
    >>> model = ElasticBertForSequenceClassification.from_pretrained(folder, num_labels=2)
    >>> small = model.extract_subnet(model.search_space.smallest())  # per-layer sizes
    >>> type(small).__name__, small.config.num_hidden_layers
    ('BertSubnetForSequenceClassification', 1)
    ```
    """

    static_class_name = "BertForSequenceClassification"
    forward = BertForSequenceClassification.forward  # the vanilla forward: same head, same loss rules

    def __init__(self, config: ElasticBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.config = config
        self.bert = ElasticBertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = ElasticLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def head_modules(self) -> list[ElasticLinear]:
        return [self.classifier]


class ElasticBertForTokenClassification(ElasticBertPreTrainedModel):
    static_class_name = "BertForTokenClassification"
    forward = BertForTokenClassification.forward

    def __init__(self, config: ElasticBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = ElasticBertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = ElasticLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def head_modules(self) -> list[ElasticLinear]:
        return [self.classifier]


class ElasticBertForQuestionAnswering(ElasticBertPreTrainedModel):
    static_class_name = "BertForQuestionAnswering"
    forward = BertForQuestionAnswering.forward

    def __init__(self, config: ElasticBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = ElasticBertModel(config, add_pooling_layer=False)
        self.qa_outputs = ElasticLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def head_modules(self) -> list[ElasticLinear]:
        return [self.qa_outputs]


class ElasticBertForMaskedLM(ElasticBertPreTrainedModel):
    static_class_name = "BertForMaskedLM"
    forward = BertForMaskedLM.forward
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: ElasticBertConfig):
        super().__init__(config)
        self.bert = ElasticBertModel(config, add_pooling_layer=False)
        self.cls = ElasticBertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def _apply_subnet(self, subnet: SubnetConfig) -> None:
        self.bert.activate_subnet(subnet)
        transform = self.cls.predictions.transform
        transform.dense.set_active(in_features=subnet.hidden_size, out_features=subnet.hidden_size)
        transform.LayerNorm.set_active(subnet.hidden_size)
        self.cls.predictions.decoder.set_active(in_features=subnet.hidden_size)
