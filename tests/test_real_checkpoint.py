"""The real all-MiniLM-L6-v2 BERT checkpoint (6 layers, hidden 384, 12 heads): loads into a supernet with no key
mapping, equals vanilla BERT at full size, and its subnets extract, save with the tokenizer and reload."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from hf_nas import (
    BertSubnetForSequenceClassification,
    ElasticBertForSequenceClassification,
    SubnetConfig,
    save_subnet,
)

pytestmark = pytest.mark.slow

SENTENCES = ["The movie was wonderful.", "I did not enjoy the long and tedious second half of the film at all."]
# The default space keeps evenly spaced layers and always the last one (layer_rule "spread"): 4 of 6 -> (0, 2, 3, 5).
VANILLA_UNIFORM = SubnetConfig.uniform(4, 9, 768, 288, layers=(0, 2, 3, 5))  # 9 heads x 32 == 288
HETEROGENEOUS = SubnetConfig(3, (9, 3, 6), (1536, 384, 768), 288, layers=(1, 3, 5))


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert not encoded["attention_mask"].all(), "the batch has padding"
    return dict(encoded)


@pytest.fixture(scope="module")
def supernet(minilm_path):
    torch.manual_seed(0)
    return ElasticBertForSequenceClassification.from_pretrained(minilm_path, num_labels=2).eval()


def test_checkpoint_loads_with_only_the_head_newly_initialized(minilm_path):
    with safe_open(os.fspath(minilm_path / "model.safetensors"), "pt") as f:
        checkpoint_keys = set(f.keys())
    torch.manual_seed(0)
    model, info = ElasticBertForSequenceClassification.from_pretrained(
        minilm_path, num_labels=2, output_loading_info=True
    )
    new = {"classifier.weight", "classifier.bias"}
    new |= {
        k
        for k in ("bert.pooler.dense.weight", "bert.pooler.dense.bias")
        if k.removeprefix("bert.") not in checkpoint_keys
    }
    assert info["missing_keys"] == new
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.model_type == "elastic_bert" and model.config.num_labels == 2
    assert model.max_subnet() == SubnetConfig.uniform(6, 12, 1536, 384)
    assert model.search_space.attention_head_size == 32
    assert model.search_space.hidden_size == (192, 288, 384)
    assert model.search_space.layer_rule == "spread" and model.search_space.num_supernet_layers == 6
    assert model.search_space.contains(VANILLA_UNIFORM) and model.search_space.contains(HETEROGENEOUS)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_full_size_equals_vanilla(minilm_path, batch, attn_implementation):
    torch.manual_seed(0)
    supernet = ElasticBertForSequenceClassification.from_pretrained(
        minilm_path, num_labels=2, attn_implementation=attn_implementation
    ).eval()
    torch.manual_seed(0)
    vanilla = BertForSequenceClassification.from_pretrained(
        minilm_path, num_labels=2, attn_implementation=attn_implementation
    ).eval()
    # With the same seed the new classifier is the same.
    assert torch.equal(supernet.classifier.weight, vanilla.classifier.weight)
    assert torch.equal(supernet.classifier.bias, vanilla.classifier.bias)
    with torch.no_grad():
        expected = vanilla(**batch, output_hidden_states=True)
        actual = supernet(**batch, output_hidden_states=True)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=0)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 7
    for a, e in zip(actual.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("subnet", "model_class", "remote_code"),
    [
        (VANILLA_UNIFORM, BertForSequenceClassification, False),
        (HETEROGENEOUS, BertSubnetForSequenceClassification, True),
    ],
    ids=["vanilla", "heterogeneous"],
)
def test_extract_save_with_tokenizer_and_reload(
    supernet, tokenizer, batch, tmp_path, subnet, model_class, remote_code
):
    # A large random classifier, so the logits are not all close to zero.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        supernet.classifier.weight.copy_(torch.randn(supernet.classifier.weight.shape, generator=generator))
        supernet.classifier.bias.copy_(torch.randn(2, generator=generator))
        with supernet.subnet(subnet):
            expected = supernet(**batch, output_hidden_states=True)
    assert supernet.active_subnet == supernet.max_subnet()

    extracted = supernet.extract_subnet(subnet)
    assert type(extracted) is model_class
    with torch.no_grad():
        actual = extracted(**batch, output_hidden_states=True)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.hidden_states[-1], expected.hidden_states[-1], atol=1e-5, rtol=0)
    assert expected.hidden_states[-1].shape[-1] == subnet.hidden_size

    folder = tmp_path / "subnet"
    save_subnet(supernet, folder, subnet, processor=tokenizer)
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert ("modeling_bert_subnet.py" in files) == remote_code
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == ("bert_subnet" if remote_code else "bert")
    assert ("auto_map" in config) == remote_code

    reloaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    reloaded_batch = dict(reloaded_tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    assert reloaded_batch.keys() == batch.keys()
    assert all(torch.equal(reloaded_batch[k], batch[k]) for k in batch)
    kwargs = {"trust_remote_code": True} if remote_code else {}
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True, **kwargs)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(reloaded).__name__ == model_class.__name__
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**reloaded_batch).logits, expected.logits, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in reloaded.parameters()) < sum(p.numel() for p in supernet.parameters())
