"""Block-wise training and rating (DNA-style supervised mode): blocks, the block loss against a teacher, isolation of
the blocks, saving and merging blocks trained apart, resuming, the rating objective and the re-coupling hook."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from transformers import BeitConfig, BeitForImageClassification, ViTConfig, ViTForImageClassification

import hf_nas
from hf_nas import SearchSpace, SubnetConfig, SupernetTrainingArguments
from hf_nas.blockwise import (
    BlockCandidate,
    BlockSplit,
    BlockwiseRatingObjective,
    BlockwiseTrainer,
    BlockwiseTrainingArguments,
    SupervisedBlockRater,
    block_candidates,
    build_batches,
    default_num_blocks,
    full_hidden_states,
    layer_call_arguments,
    load_blocks,
    rating_features,
    recouple,
    supervised_block_loss,
    teacher_boundaries,
)
from hf_nas.search.objectives import get_objective, pad_and_stack

from .conftest import make_supernet, make_vanilla, random_batch, randomize_parameters

FOUR_LAYERS = {"num_hidden_layers": 4}


def supernet_of(vanilla, folder, cls=hf_nas.ElasticBertForSequenceClassification, layer_rule="spread"):
    """The supernet holding `vanilla`'s weights (loaded from its checkpoint, no key mapping), eval mode."""
    vanilla.save_pretrained(folder)
    model = cls.from_pretrained(folder).eval()
    model.search_space = SearchSpace.from_dict({**model.search_space.to_dict(), "layer_rule": layer_rule})
    return model


@pytest.fixture
def teacher():
    return make_vanilla("BertForSequenceClassification", **FOUR_LAYERS)


@pytest.fixture
def supernet(teacher, tmp_path):
    return supernet_of(teacher, tmp_path / "teacher")


def train_rows(n: int = 8) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for i in range(n):
        length = 5 + i % 4
        ids = torch.randint(1, 99, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": i % 3})
    return rows


def block_args(tmp_path, name: str = "run", **kwargs) -> BlockwiseTrainingArguments:
    defaults = {
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "num_blocks": 2,
        "logging_steps": 1,
    }
    return BlockwiseTrainingArguments(str(tmp_path / name), **{**defaults, **kwargs})


def block_state(model, split: BlockSplit, block: int) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in split.parameter_names(model, block)}


# ----------------------------------------------------------------------------------------------------------------
# blocks and candidates
def test_even_split_and_default_block_count():
    assert BlockSplit.even(6).block_sizes == (2, 2, 2)
    assert BlockSplit.even(12).block_sizes == (3, 3, 3, 3)
    assert BlockSplit.even(7, 3).block_sizes == (3, 2, 2)
    assert [default_num_blocks(n) for n in (1, 2, 4, 6, 12, 24)] == [1, 2, 2, 3, 4, 6]
    split = BlockSplit.even(7, 3)
    assert split.boundaries == (0, 3, 5, 7)
    assert [split.block_of(i) for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    assert BlockSplit.from_dict(split.to_dict()) == split
    with pytest.raises(ValueError, match="num_blocks.*allowed: 1 to 3"):
        BlockSplit.even(3, 4)
    with pytest.raises(ValueError, match="allowed: 0 to 2"):
        split.layers_of(3)


def test_candidates_are_the_subnet_restricted_to_each_block():
    split = BlockSplit.even(6, 3)
    subnet = SubnetConfig(4, (1, 2, 3, 4), (10, 20, 30, 40), 32, layers=(0, 2, 3, 5))
    candidates = split.split(subnet)
    assert [c.layers for c in candidates] == [(0,), (2, 3), (5,)]
    assert candidates[1].num_attention_heads == (2, 3) and candidates[1].intermediate_size == (20, 30)
    assert candidates[2].as_subnet() == SubnetConfig(1, (4,), (40,), 32, layers=(5,))
    deep_only = split.split(SubnetConfig(1, (4,), (40,), 16, layers=(5,)))  # spread keeps the last layer
    assert deep_only[0].is_empty and deep_only[1].is_empty and not deep_only[2].is_empty
    with pytest.raises(ValueError, match="keeps no layer"):
        deep_only[0].as_subnet()
    # distinct candidates, empty ones only on request
    subnets = [subnet, subnet, SubnetConfig(1, (4,), (40,), 16, layers=(5,))]
    assert len(block_candidates(subnets, split, 0)) == 1
    assert len(block_candidates(subnets, split, 0, include_empty=True)) == 2


def test_teacher_boundaries_map_blocks_to_teacher_layers():
    split = BlockSplit.even(6, 3)
    assert teacher_boundaries(split, 6) == (0, 2, 4, 6)
    assert teacher_boundaries(split, 12) == (0, 4, 8, 12)
    assert teacher_boundaries(split, 3) == (0, 1, 2, 3)


# ----------------------------------------------------------------------------------------------------------------
# the supervised block loss
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_supervised_loss_is_zero_for_the_teachers_own_block(teacher, tmp_path, attn):
    teacher.config._attn_implementation = attn
    supernet = supernet_of(teacher, tmp_path / "t")
    supernet.config._attn_implementation = attn
    split = BlockSplit.even(4, 2)
    batch = random_batch(batch_size=3, seq_len=9)  # later rows end in padding
    states = full_hidden_states(teacher, batch)
    args, kwargs = layer_call_arguments(supernet, batch)
    mask = batch["attention_mask"]
    space = supernet.search_space
    for block in range(split.num_blocks):
        full = split.candidate(supernet.max_subnet(), block)
        x, y = states[split.boundaries[block]], states[split.boundaries[block + 1]]
        loss = supervised_block_loss(supernet, full, x, y, args, kwargs, mask)
        assert loss.item() < 1e-10, (block, loss.item())
        smaller = split.candidate(space.smallest(), block)  # fewer heads, FFN, hidden and layers
        assert supervised_block_loss(supernet, smaller, x, y, args, kwargs, mask).item() > 1e-4


def vit_pair(tmp_path, family: str):
    if family == "vit":
        config = ViTConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, image_size=16,
            patch_size=8, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )  # fmt: skip
        vanilla, cls = ViTForImageClassification(config), hf_nas.ElasticViTForImageClassification
    else:
        config = BeitConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, image_size=16,
            patch_size=8, num_labels=3, use_relative_position_bias=True, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, layer_scale_init_value=0.5,
        )  # fmt: skip
        vanilla, cls = BeitForImageClassification(config), hf_nas.ElasticBeitForImageClassification
    torch.manual_seed(0)
    vanilla = randomize_parameters(vanilla).eval()
    return vanilla, supernet_of(vanilla, tmp_path / family, cls)


@pytest.mark.parametrize("family", ["vit", "beit"])
def test_supervised_loss_is_zero_for_the_teachers_own_block_images(tmp_path, family):
    teacher, supernet = vit_pair(tmp_path, family)
    batch = {"pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))}
    split = BlockSplit.even(4, 2)
    states = full_hidden_states(teacher, batch)
    args, kwargs = layer_call_arguments(supernet, batch)
    for block in range(2):
        full = split.candidate(supernet.max_subnet(), block)
        x, y = states[split.boundaries[block]], states[split.boundaries[block + 1]]
        assert supervised_block_loss(supernet, full, x, y, args, kwargs).item() < 1e-10


def test_a_blocks_loss_reaches_only_its_own_layers(supernet, teacher):
    supernet.train()
    split = BlockSplit.even(4, 2)
    batch = random_batch()
    states = full_hidden_states(teacher, batch)
    args, kwargs = layer_call_arguments(supernet, batch)
    for block in range(2):
        supernet.zero_grad(set_to_none=True)
        candidate = split.candidate(supernet.search_space.sample(seed=block), block)
        if candidate.is_empty:
            candidate = split.candidate(supernet.max_subnet(), block)
        # an input still attached to the graph of the layers before the block must not pass gradients back to them
        own_states = supernet(**batch, output_hidden_states=True).hidden_states
        x, y = own_states[split.boundaries[block]], states[split.boundaries[block + 1]]
        assert x.requires_grad
        (supervised_block_loss(supernet, candidate, x, y, args, kwargs, batch["attention_mask"])).backward()
        own = set(split.parameter_names(supernet, block))
        for name, p in supernet.named_parameters():
            if name not in own:
                assert p.grad is None, f"gradient leaked into {name} from block {block}"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in supernet.named_parameters() if n in own)


# ----------------------------------------------------------------------------------------------------------------
# the trainer
def test_training_one_block_changes_nothing_else(supernet, teacher, tmp_path):
    before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
    flags = {n: p.requires_grad for n, p in supernet.named_parameters()}
    trainer = BlockwiseTrainer(
        model=supernet,
        args=block_args(tmp_path, blocks="1"),
        teacher_model=teacher,
        train_dataset=train_rows(),
        data_collator=pad_and_stack,
    )
    trainer.train()
    own = set(trainer.split.parameter_names(supernet, 1))
    changed = {n for n, p in supernet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= own
    assert {n: p.requires_grad for n, p in supernet.named_parameters()} == flags  # restored after train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs and all("loss_block_1" in log and "loss_block_0" not in log for log in logs)


def test_blocks_trained_together_equal_blocks_trained_apart(supernet, teacher, tmp_path):
    """Two blocks trained in one run (shared data, per-block clipping) end as if each had run alone; each one saved
    by its own run and merged with load_blocks gives the jointly trained supernet."""
    start = copy.deepcopy(supernet)
    joint = BlockwiseTrainer(
        model=supernet,
        args=block_args(tmp_path, "joint", max_grad_norm=0.05),
        teacher_model=teacher,
        train_dataset=train_rows(),
        data_collator=pad_and_stack,
    )
    joint.train()
    merged = copy.deepcopy(start)
    for block in (0, 1):
        alone = copy.deepcopy(start)
        trainer = BlockwiseTrainer(
            model=alone,
            args=block_args(tmp_path, f"alone{block}", blocks=str(block), max_grad_norm=0.05),
            teacher_model=teacher,
            train_dataset=train_rows(),
            data_collator=pad_and_stack,
        )
        trainer.train()
        for name, value in block_state(alone, trainer.split, block).items():
            torch.testing.assert_close(value, dict(supernet.named_parameters())[name], atol=1e-6, rtol=0)
        trainer.save_blocks(tmp_path / f"block{block}")
        assert load_blocks(merged, tmp_path / f"block{block}") == [block]
    for name, p in supernet.named_parameters():
        torch.testing.assert_close(dict(merged.named_parameters())[name], p, atol=1e-6, rtol=0)
    record = json.loads((tmp_path / "block0" / "blockwise.json").read_text())
    assert record["blocks"] == [0] and record["split"] == {"block_sizes": [2, 2]}


def test_load_blocks_refuses_another_split(supernet, teacher, tmp_path):
    trainer = BlockwiseTrainer(
        model=supernet,
        args=block_args(tmp_path, max_steps=1),
        teacher_model=teacher,
        train_dataset=train_rows(),
        data_collator=pad_and_stack,
    )
    trainer.train()
    trainer.save_blocks(tmp_path / "blocks")
    other = make_supernet("BertForSequenceClassification", num_hidden_layers=6)
    with pytest.raises(ValueError, match="covers 4 layers but the supernet has 6"):
        load_blocks(other, tmp_path / "blocks")
    with pytest.raises(ValueError, match="no blockwise.json"):
        load_blocks(supernet, tmp_path)


def test_default_teacher_is_the_supernet_as_it_starts(supernet, tmp_path):
    trainer = BlockwiseTrainer(
        model=supernet, args=block_args(tmp_path, max_steps=2), train_dataset=train_rows(), data_collator=pad_and_stack
    )
    start = {n: p.detach().clone() for n, p in supernet.named_parameters()}
    trainer.train()
    teacher = trainer.teacher_model
    assert teacher is not supernet
    assert all(torch.equal(p, start[n]) for n, p in teacher.named_parameters())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_resumed_run_equals_the_uninterrupted_one(supernet, teacher, tmp_path):
    start = copy.deepcopy(supernet)
    args = block_args(tmp_path, "full", max_steps=4, save_strategy="steps", save_steps=2)
    BlockwiseTrainer(
        model=supernet, args=args, teacher_model=teacher, train_dataset=train_rows(), data_collator=pad_and_stack
    ).train()
    args = block_args(tmp_path, "resumed", max_steps=4, save_strategy="steps", save_steps=2)
    resumed = copy.deepcopy(start)
    BlockwiseTrainer(
        model=resumed, args=args, teacher_model=teacher, train_dataset=train_rows(), data_collator=pad_and_stack
    ).train()
    # a fresh trainer resuming from step 2 of the first run ends where it ended
    again = copy.deepcopy(start)
    BlockwiseTrainer(
        model=again,
        args=block_args(tmp_path, "full", max_steps=4),
        teacher_model=teacher,
        train_dataset=train_rows(),
        data_collator=pad_and_stack,
    ).train(resume_from_checkpoint=os.path.join(tmp_path, "full", "checkpoint-2"))
    for name, p in supernet.named_parameters():
        torch.testing.assert_close(dict(resumed.named_parameters())[name], p, atol=0, rtol=0)
        torch.testing.assert_close(dict(again.named_parameters())[name], p, atol=1e-6, rtol=0)


def test_seeded_candidates_reproduce(supernet, teacher, tmp_path):
    a = BlockwiseTrainer(model=supernet, args=block_args(tmp_path, "a"), teacher_model=teacher)
    b = BlockwiseTrainer(model=copy.deepcopy(supernet), args=block_args(tmp_path, "b"), teacher_model=teacher)
    assert a.step_candidates(5) == b.step_candidates(5)
    c = BlockwiseTrainer(model=supernet, args=block_args(tmp_path, "c", seed=1), teacher_model=teacher)
    assert any(c.step_candidates(s) != a.step_candidates(s) for s in range(5))
    for block_cands in a.step_candidates(0):
        assert all(isinstance(x, BlockCandidate) and not x.is_empty for x in block_cands)
        assert len(set(block_cands)) == len(block_cands)


def test_bad_arguments_name_what_is_allowed(supernet, tmp_path):
    with pytest.raises(ValueError, match="blockwise_mode.*allowed"):
        block_args(tmp_path, blockwise_mode="dna")
    with pytest.raises(ValueError, match="comma-separated block indices"):
        block_args(tmp_path, blocks="first")
    with pytest.raises(ValueError, match=r"\[5\] out of range; allowed: 0 to 1"):
        BlockwiseTrainer(model=supernet, args=block_args(tmp_path, blocks="0,5"))
    with pytest.raises(TypeError, match="BlockwiseTrainingArguments"):
        BlockwiseTrainer(model=supernet, args=SupernetTrainingArguments(str(tmp_path), report_to="none"))
    with pytest.raises(ValueError, match="ensemble' learns without"):
        BlockwiseTrainer(model=supernet, args=block_args(tmp_path, blockwise_mode="ensemble"), teacher_model=supernet)


# ----------------------------------------------------------------------------------------------------------------
# rating and re-coupling
def test_rating_sums_cached_block_losses(supernet, teacher):
    rows = train_rows(10)
    rater = SupervisedBlockRater(build_batches(rows, batch_size=4), teacher=teacher, num_blocks=2)
    space = supernet.search_space
    assert rater.rate(supernet, supernet.max_subnet()) < 1e-10  # the teacher's own blocks
    subnet = space.smallest()
    losses = rater.block_losses(supernet, subnet)
    assert len(losses) == 2 and all(v > 0 for v in losses)
    assert rater.rate(supernet, subnet) == pytest.approx(sum(losses))
    # a block candidate is computed once: a subnet sharing block 0 with `subnet` reuses its loss
    calls = []
    original = rater._candidate_loss
    rater._candidate_loss = lambda *a: calls.append(a[1].block) or original(*a)
    assert subnet.layers == (1, 3)  # one layer in each block (spread)
    other = SubnetConfig(
        2, (subnet.num_attention_heads[0], 4), (subnet.intermediate_size[0], 64), subnet.hidden_size, layers=(1, 3)
    )
    rater.rate(supernet, other)
    assert set(calls) == {1}  # block 0's candidate is the same as `subnet`'s: cached
    features = rating_features(rater, supernet, [subnet, other])
    assert features.shape == (2, 4 + 2 * max(space.num_hidden_layers) + 2)


def test_rating_objective_is_registered(supernet, teacher, tmp_path):
    objective = get_objective("blockwise_loss", dataset=train_rows(6), teacher=teacher, num_blocks=2, batch_size=3)
    assert objective.direction == "minimize" and not objective.cheap
    space = supernet.search_space
    assert objective(supernet, supernet.max_subnet()) < objective(supernet, space.smallest())
    assert objective.describe()["mode"] == "supervised" and objective.describe()["num_examples"] == 6
    teacher.save_pretrained(tmp_path / "teacher")
    by_path = BlockwiseRatingObjective(dataset=train_rows(6), teacher=str(tmp_path / "teacher"), num_blocks=2)
    assert by_path(supernet, space.smallest()) == pytest.approx(objective(supernet, space.smallest()), rel=1e-5)
    with pytest.raises(TypeError, match="elastic supernet"):
        objective(teacher, space.smallest())


def test_recouple_runs_the_sandwich_phase(supernet, teacher, tmp_path):
    BlockwiseTrainer(
        model=supernet,
        args=block_args(tmp_path, max_steps=1),
        teacher_model=teacher,
        train_dataset=train_rows(),
        data_collator=pad_and_stack,
    ).train()
    before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
    args = SupernetTrainingArguments(
        str(tmp_path / "recouple"), max_steps=1, per_device_train_batch_size=4, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, eval_subnets="", hidden_loss_weight=1.0,
    )  # fmt: skip
    trainer = recouple(supernet, args, train_rows(), teacher_model=teacher, data_collator=pad_and_stack)
    assert trainer.state.global_step == 1
    assert not torch.equal(dict(supernet.named_parameters())["classifier.weight"], before["classifier.weight"])
