"""Importance reordering: the full model is unchanged and the most important heads and neurons come first."""

from __future__ import annotations

import pytest
import torch

from hf_nas import SubnetConfig, reorder_by_importance
from hf_nas.importance import compute_importance

from .conftest import HEAD_NAMES, assert_outputs_close, make_supernet, random_batch


def labelled_batches(head: str, n: int = 3) -> list[dict[str, torch.Tensor]]:
    batches = []
    for seed in range(n):
        batch = random_batch(batch_size=4, seq_len=9, seed=seed)
        g = torch.Generator().manual_seed(100 + seed)
        if head == "BertForSequenceClassification":
            batch["labels"] = torch.randint(0, 3, (4,), generator=g)
        elif head in ("BertForTokenClassification", "BertForMaskedLM"):
            batch["labels"] = torch.randint(0, 3, (4, 9), generator=g)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_reordering_keeps_full_model_outputs(head):
    model = make_supernet(head)
    batch = random_batch(seed=7)
    with torch.no_grad():
        before = model(**batch)
    reorder_by_importance(model, labelled_batches(head), show_progress=False)
    with torch.no_grad():
        after = model(**batch)
    assert_outputs_close(after, before, atol=1e-5)


def test_reordering_sorts_heads_and_neurons():
    model = make_supernet("BertForSequenceClassification")
    batches = labelled_batches("BertForSequenceClassification")
    original = compute_importance(model, batches, show_progress=False)
    # Random init: the original order is not already sorted, so the test can see a reordering happen.
    assert any(not torch.equal(h, h.sort(descending=True).values) for h in original.heads)
    returned = reorder_by_importance(model, batches, show_progress=False)
    measured = compute_importance(model, batches, show_progress=False)
    for layer in range(len(original.heads)):
        expected_heads = original.heads[layer].sort(descending=True).values
        expected_neurons = original.neurons[layer].sort(descending=True).values
        torch.testing.assert_close(returned.heads[layer], expected_heads)
        # Measuring again after the permutation finds the same scores, now in descending order.
        torch.testing.assert_close(measured.heads[layer], expected_heads, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(measured.neurons[layer], expected_neurons, rtol=1e-4, atol=1e-9)


def test_most_important_head_is_kept_by_slicing():
    model = make_supernet("BertForSequenceClassification")
    batches = labelled_batches("BertForSequenceClassification")
    original = compute_importance(model, batches, show_progress=False)
    best = [int(h.argmax()) for h in original.heads]
    hd = model.config.attention_head_size
    old_query = [layer.attention.self.query.weight.detach().clone() for layer in model.elastic_layers()]
    reorder_by_importance(model, batches, show_progress=False)
    for layer, query, b in zip(model.elastic_layers(), old_query, best, strict=True):
        # The first head's query rows are now the rows of the formerly most important head.
        torch.testing.assert_close(layer.attention.self.query.weight[:hd], query[b * hd : (b + 1) * hd])


def test_reordering_restores_subnet_and_mode():
    model = make_supernet("BertForSequenceClassification")
    subnet = SubnetConfig.uniform(2, 2, 32, 32)
    model.set_subnet(subnet)
    model.train()
    reorder_by_importance(model, labelled_batches("BertForSequenceClassification"), show_progress=False)
    assert model.active_subnet == subnet
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


def test_empty_batches_and_bad_num_batches():
    model = make_supernet("BertForSequenceClassification")
    with pytest.raises(ValueError, match="empty"):
        reorder_by_importance(model, [], show_progress=False)
    with pytest.raises(ValueError, match="num_batches"):
        reorder_by_importance(model, labelled_batches("BertForSequenceClassification"), num_batches=0)
