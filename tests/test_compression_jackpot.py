"""Lottery Jackpots: the short restriction keeps the sparsity exact and swaps only candidates across the threshold; the
search starts from global magnitude pruning and never changes a weight; the fine-tuning baseline keeps its zeros."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset

from hf_nas.compression import (
    DistillationConfig,
    JackpotConfig,
    cosine_share,
    finetune_sparse,
    jackpot_prune,
    magnitude_masks,
    magnitude_prune,
    prunable_weights,
    short_restriction,
    sparsity_report,
)
from hf_nas.compression import jackpot as jackpot_module

from .conftest import TINY, make_supernet, make_vanilla
from .test_compression import clone_state


def tiny_data(rows: int = 24, seq_len: int = 7, num_labels: int = TINY["num_labels"], seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY["vocab_size"], (rows, seq_len), generator=generator)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": [i % num_labels for i in range(rows)]})


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([r["input_ids"] for r in rows]),
        "attention_mask": torch.ones(len(rows), len(rows[0]["input_ids"]), dtype=torch.long),
        "labels": torch.tensor([r["labels"] for r in rows]),
    }


# ----------------------------------------------------------------------------------------------------------------
# the short restriction
def random_state(seed: int, sizes=((6, 8), (4, 12), (10,))) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    scores = [torch.rand(size, generator=generator) for size in sizes]
    keep = [(torch.rand(size, generator=generator) > 0.6).float() for size in sizes]  # not the top-k: candidates
    return scores, keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_short_restriction_swaps_a_share_of_the_candidates_across_the_threshold(seed, share):
    scores, keep = random_state(seed)
    before = torch.cat([m.flatten() for m in keep]).bool()  # (N,)
    flat = torch.cat([s.flatten() for s in scores])  # (N,)
    pruned = int((~before).sum())
    threshold = flat.kthvalue(pruned).values
    enter = ~before & (flat > threshold)
    leave = before & (flat <= threshold)
    expected = int(share * min(int(enter.sum()), int(leave.sum())))

    swapped = short_restriction(scores, keep, share)

    after = torch.cat([m.flatten() for m in keep]).bool()
    assert swapped == expected and int((~after).sum()) == pruned  # exact sparsity
    entered, left = ~before & after, before & ~after
    assert int(entered.sum()) == int(left.sum()) == swapped
    assert torch.all(flat[entered] > threshold) and torch.all(flat[left] <= threshold)  # across the threshold only
    if swapped:  # the best of each side: every entered one outscores every pruned one left out ...
        assert flat[entered].min() >= torch.cat([flat[enter & ~entered], torch.tensor([-1.0])]).max()
        assert flat[left].max() <= torch.cat([flat[leave & ~left], torch.tensor([2.0])]).min()  # worst kept leave
    if share == 1.0:
        assert int(((flat > threshold) != after).sum()) <= 1  # all candidates swapped: the top-k mask (up to a tie)


def test_short_restriction_of_the_2_4_pattern_keeps_2_of_every_4():
    generator = torch.Generator().manual_seed(3)
    scores = [torch.rand(8, 16, generator=generator), torch.rand(4, 8, generator=generator)]
    keep = [torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(8, 4), torch.tensor([0.0, 1.0, 0.0, 1.0]).repeat(4, 2)]
    before = [m.clone() for m in keep]
    candidates = 0
    for score, mask in zip(scores, keep, strict=True):
        groups, kept = score.view(-1, 4), mask.view(-1, 4).bool()
        best_pruned = groups.masked_fill(kept, -1).max(1).values
        worst_kept = groups.masked_fill(~kept, 2).min(1).values
        candidates += int((best_pruned > worst_kept).sum())
    swapped = short_restriction(scores, keep, 0.5, pattern="2:4")
    assert swapped == int(0.5 * candidates) > 0
    changed = 0
    for score, mask, old in zip(scores, keep, before, strict=True):
        assert torch.all(mask.view(-1, 4).sum(1) == 2)
        moved = (mask != old).view(-1, 4).any(1)  # (G,) the groups that swapped, one pair each
        changed += int(moved.sum())
        assert torch.all((mask != old).view(-1, 4).sum(1)[moved] == 2)
        entered = (mask.bool() & ~old.bool()).view(-1, 4)
        left = (~mask.bool() & old.bool()).view(-1, 4)
        g = score.view(-1, 4)
        assert torch.all(g[entered] > g[left])  # each swap brings a higher score in
    assert changed == swapped


def test_cosine_share_decays_from_the_initial_share_to_zero():
    shares = [cosine_share(step, 100, 0.4) for step in range(100)]
    assert shares[0] == 0.4 and all(a >= b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[-1] < 0.001 and cosine_share(50, 100, 0.4) == pytest.approx(0.2)


# ----------------------------------------------------------------------------------------------------------------
# the search
@pytest.mark.parametrize("pattern, sparsity", [("unstructured", 0.7), ("2:4", 0.5)])
def test_search_keeps_the_exact_sparsity_at_every_step(monkeypatch, pattern, sparsity):
    model = make_vanilla("BertForSequenceClassification")
    total = sum(w.numel() for w in prunable_weights(model).values())
    restriction = jackpot_module.short_restriction
    seen = []

    def checked(scores, keep, share, pattern_=pattern):
        before = torch.cat([m.flatten() for m in keep]).bool()
        swapped = restriction(scores, keep, share, pattern_)
        after = torch.cat([m.flatten() for m in keep]).bool()
        flat = torch.cat([s.detach().flatten() for s in scores])
        zeros = int((~after).sum())
        assert zeros == int((~before).sum()) == round(sparsity * total)
        if pattern_ == "unstructured" and swapped:
            threshold = flat.kthvalue(zeros).values
            assert torch.all(flat[~before & after] > threshold) and torch.all(flat[before & ~after] <= threshold)
        else:
            assert all(torch.all(m.view(-1, 4).sum(1) == 2) for m in keep)
        seen.append((share, swapped))
        return swapped

    monkeypatch.setattr(jackpot_module, "short_restriction", checked)
    config = JackpotConfig(max_steps=6, batch_size=8, learning_rate=5e-3, swap_share=0.5, logging_steps=3)
    report = jackpot_prune(
        model, sparsity, train_dataset=tiny_data(), data_collator=collate, config=config, pattern=pattern
    )
    assert [round(share, 6) for share, _ in seen] == [round(cosine_share(s, 6, 0.5), 6) for s in range(6)]
    assert sum(swapped for _, swapped in seen) > 0  # the mask did move
    assert report.zeros == round(sparsity * total) and report.method == "jackpot" and report.pattern == pattern
    assert sparsity_report(model).layers == report.layers


def test_magnitude_initialization_equals_global_magnitude_pruning():
    model = make_vanilla("BertForSequenceClassification")
    reference = copy.deepcopy(model)
    magnitude_prune(reference, 0.6)
    config = JackpotConfig(max_steps=3, batch_size=8, swap_share=0.0)  # scores train, the mask never swaps
    jackpot_prune(model, 0.6, train_dataset=tiny_data(), data_collator=collate, config=config)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    masks = magnitude_masks(prunable_weights(make_vanilla("BertForSequenceClassification")), 0.6)
    for name, weight in prunable_weights(model).items():
        assert torch.equal(weight == 0, masks[name]), name


def test_the_mask_only_search_leaves_every_weight_untouched():
    model = make_vanilla("BertForSequenceClassification")
    before = clone_state(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    config = JackpotConfig(max_steps=5, batch_size=8, learning_rate=1e-2, swap_share=1.0)
    report = jackpot_prune(model, 0.5, train_dataset=tiny_data(), data_collator=collate, config=config)
    names = set(prunable_weights(model))
    masks = magnitude_masks(prunable_weights(make_vanilla("BertForSequenceClassification")), 0.5)
    moved = sum(int(((model.state_dict()[n] == 0) != masks[n]).sum()) for n in names)
    assert moved > 0  # the search changed the mask ...
    for name, tensor in before.items():
        after = model.state_dict()[name]
        if name in names:  # ... and every weight is its old value or zero
            assert torch.all((after == tensor) | (after == 0)), name
        else:  # embeddings, LayerNorms, biases, pooler, classifier: unchanged
            assert torch.equal(after, tensor), name
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not any("parametrizations" in n for n in model.state_dict())  # plain weights again
    assert report.zeros == round(0.5 * report.total)


def test_search_runs_on_an_extracted_per_layer_subnet():
    from .test_compression import PER_LAYER

    model = make_supernet("BertForSequenceClassification").extract_subnet(PER_LAYER)
    config = JackpotConfig(max_steps=2, batch_size=8)
    report = jackpot_prune(model, 0.8, train_dataset=tiny_data(), data_collator=collate, config=config)
    assert (
        report.share == pytest.approx(0.8, abs=1e-3) and type(model).__name__ == "BertSubnetForSequenceClassification"
    )


def test_the_search_is_reproducible_and_restores_the_global_rng():
    results = []
    for _ in range(2):
        model = make_vanilla("BertForSequenceClassification", hidden_dropout_prob=0.1)
        torch.manual_seed(123)
        config = JackpotConfig(max_steps=3, batch_size=8, learning_rate=1e-2, swap_share=1.0)
        jackpot_prune(model, 0.5, train_dataset=tiny_data(), data_collator=collate, config=config)
        results.append((clone_state(model), torch.rand(1)))
    assert all(torch.equal(results[0][0][n], results[1][0][n]) for n in results[0][0])
    assert torch.equal(results[0][1], results[1][1])  # the caller's RNG state as it was


def test_finetune_sparse_trains_the_weights_and_keeps_the_zeros():
    dense = make_vanilla("BertForSequenceClassification")
    model = copy.deepcopy(dense)
    magnitude_prune(model, 0.7)
    zeros = {n: w == 0 for n, w in prunable_weights(model).items()}
    before = clone_state(model)
    config = DistillationConfig(max_steps=4, batch_size=8, learning_rate=1e-3)
    report = finetune_sparse(model, train_dataset=tiny_data(), data_collator=collate, config=config, teacher=dense)
    for name, weight in prunable_weights(model).items():
        assert torch.equal(weight == 0, zeros[name]), name  # the same zeros, no more, no fewer
    assert not torch.equal(model.state_dict()["classifier.weight"], before["classifier.weight"])  # trained
    assert report.method == "magnitude+finetune" and report.share == pytest.approx(0.7, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sparsity": 1.0}, ValueError, r"`sparsity` must be a float with 0 < sparsity < 1"),
        ({"sparsity": 0.0}, ValueError, r"`sparsity` must be a float with 0 < sparsity < 1"),
        ({"sparsity": 0.7, "pattern": "2:4"}, ValueError, r"'2:4' keeps 2 of every 4 weights: its sparsity is 0\.5"),
        (
            {"pattern": "4:8"},
            ValueError,
            r"`pattern` '4:8' is not a sparsity pattern; allowed: \['unstructured', '2:4'\]",
        ),
        ({"config": DistillationConfig()}, TypeError, r"`config` must be a JackpotConfig, got DistillationConfig"),
    ],
)
def test_bad_search_arguments_are_refused(kwargs, error, match):
    model = make_vanilla("BertForSequenceClassification")
    before = clone_state(model)
    options = {"sparsity": 0.5, "train_dataset": tiny_data(), "data_collator": collate, **kwargs}
    sparsity = options.pop("sparsity")
    with pytest.raises(error, match=match):
        jackpot_prune(model, sparsity, **options)
    assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())


def test_a_supernet_and_bad_configs_are_refused():
    with pytest.raises(TypeError, match=r"is an elastic supernet .*Lottery Jackpots search works on an extracted"):
        jackpot_prune(
            make_supernet("BertForSequenceClassification"), 0.5, train_dataset=tiny_data(), data_collator=collate
        )
    with pytest.raises(TypeError, match=r"is an elastic supernet .*sparse fine-tuning works on an extracted"):
        finetune_sparse(
            make_supernet("BertForSequenceClassification"), train_dataset=tiny_data(), data_collator=collate
        )
    with pytest.raises(ValueError, match=r"`swap_share` must be >= 0\.0 and <= 1\.0, got 1\.5"):
        JackpotConfig(swap_share=1.5)
    with pytest.raises(ValueError, match=r"`max_steps` must be a positive int, got 0"):
        JackpotConfig(max_steps=0)
    with pytest.raises(ValueError, match="`task_loss_weight` and `kd_loss_weight` are both 0"):
        DistillationConfig(task_loss_weight=0, kd_loss_weight=0)
    with pytest.raises(ValueError, match=r"The training batches need `labels`"):
        data = Dataset.from_dict({"input_ids": [[5, 6, 7]] * 4})
        jackpot_prune(
            make_vanilla("BertForSequenceClassification"),
            0.5,
            train_dataset=data,
            data_collator=lambda rows: {"input_ids": torch.tensor([r["input_ids"] for r in rows])},
            config=JackpotConfig(max_steps=1, batch_size=2),
        )
