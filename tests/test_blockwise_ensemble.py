"""Self-supervised block-wise training by ensemble bootstrapping (BossNAS): the EMA target network, the ensemble
target, the views, isolation of the blocks, resuming and the ensemble rating."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from hf_nas.blockwise import (
    BlockProjector,
    BlockSplit,
    BlockwiseTrainer,
    BlockwiseTrainingArguments,
    EMATarget,
    EnsembleBlockRater,
    block_candidates,
    build_batches,
    byol_loss,
    cosine_momentum,
    ensemble_target,
    full_hidden_states,
    image_views,
    layer_call_arguments,
    mask_tokens,
    run_block,
)
from hf_nas.search.objectives import pad_and_stack

from .conftest import make_supernet, random_batch

MASK_ID = 98


@pytest.fixture
def supernet():
    model = make_supernet("BertForSequenceClassification", num_hidden_layers=4, hidden_dropout_prob=0.1)
    model.search_space = type(model.search_space).from_dict({**model.search_space.to_dict(), "layer_rule": "spread"})
    return model


def rows(n: int = 8) -> list[dict]:
    generator = torch.Generator().manual_seed(2)
    out = []
    for i in range(n):
        length = 6 + i % 3
        out.append({"input_ids": torch.randint(1, 90, (length,), generator=generator).tolist(), "labels": i % 3})
    return out


def ensemble_args(tmp_path, name: str = "run", **kwargs) -> BlockwiseTrainingArguments:
    defaults = {
        "blockwise_mode": "ensemble",
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "num_blocks": 2,
        "ema_momentum": 0.9,
        "projection_size": 8,
        "projection_hidden_size": 16,
        "mask_token_id": MASK_ID,
        "mask_probability": 0.3,
        "logging_steps": 1,
    }
    return BlockwiseTrainingArguments(str(tmp_path / name), **{**defaults, **kwargs})


def trainer_of(model, tmp_path, name: str = "run", **kwargs) -> BlockwiseTrainer:
    return BlockwiseTrainer(
        model=model, args=ensemble_args(tmp_path, name, **kwargs), train_dataset=rows(), data_collator=pad_and_stack
    )


# ----------------------------------------------------------------------------------------------------------------
# pieces
def test_ensemble_target_is_the_mean_of_the_candidates_normalized_projections(supernet):
    split = BlockSplit.even(4, 2)
    batch = random_batch()
    mask = batch["attention_mask"]
    space = supernet.search_space
    candidates = block_candidates([space.largest(), space.smallest(), space.sample(seed=3)], split, 1)
    assert len(candidates) >= 2
    projector = BlockProjector(32, 16, 8)
    torch.manual_seed(0)
    block_input = torch.randn(3, 9, 32)
    args, kwargs = layer_call_arguments(supernet, batch)
    target = ensemble_target(supernet, projector, candidates, block_input, args, kwargs, mask)
    assert supernet.active_subnet == supernet.max_subnet()  # restored
    singles = []
    with torch.no_grad():
        for candidate in candidates:
            output = run_block(supernet, candidate, block_input, args, kwargs)  # (B, T, h)
            pooled = (output * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # masked mean over tokens
            z = projector.out(
                F.gelu(projector.norm(pooled @ projector.dense.weight[:, : output.shape[-1]].T + projector.dense.bias))
            )
            singles.append(F.normalize(z, dim=-1))
    torch.testing.assert_close(target, torch.stack(singles).mean(0), atol=1e-6, rtol=0)
    assert not torch.allclose(target, singles[0], atol=1e-3)  # an ensemble, not one candidate
    assert not target.requires_grad


def test_ema_update_follows_the_formula():
    online = torch.nn.Linear(3, 2)
    target = EMATarget({"layer": online})
    before = target.modules_by_name["layer"].weight.clone()
    with torch.no_grad():
        online.weight.mul_(2.0).add_(1.0)
    target.update({"layer": online}, momentum=0.75)
    torch.testing.assert_close(target.modules_by_name["layer"].weight, 0.75 * before + 0.25 * online.weight)
    assert not any(p.requires_grad for p in target.parameters())
    assert cosine_momentum(0.9, 0, 10) == pytest.approx(0.9) and cosine_momentum(0.9, 5, 10) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="must hold the modules"):
        target.update({"other": online}, 0.5)


def test_views():
    ids = torch.tensor([[101, 5, 6, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    masked = mask_tokens(ids, mask, 1.0, MASK_ID, torch.Generator().manual_seed(0))
    assert masked.tolist() == [[101, 98, 98, 98, 98, 102, 0, 0], [101, 98, 102, 0, 0, 0, 0, 0]]
    assert torch.equal(mask_tokens(ids, mask, 0.0, MASK_ID, torch.Generator().manual_seed(0)), ids)
    half = [mask_tokens(ids, mask, 0.5, MASK_ID, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(half[0], half[1]) and not all(torch.equal(half[0], h) for h in half[2:])
    images = torch.randn(2, 3, 16, 16)
    a, b = (image_views(images, torch.Generator().manual_seed(s)) for s in (0, 0))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.allclose(a, images)
    x = torch.randn(4, 8)
    assert byol_loss(x, 2 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x, -x).item() == pytest.approx(4.0, abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# training
def test_ema_target_never_receives_gradients_and_follows_the_online_network(supernet, tmp_path):
    trainer = trainer_of(supernet, tmp_path)
    wrapper = trainer.blockwise_model
    target = wrapper.target.modules_by_name["supernet"]
    assert target is not supernet
    start = {n: p.detach().clone() for n, p in target.named_parameters()}
    seen = []

    class CheckTarget(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):  # after every backward of the step
            online_grads = any(p.grad is not None for p in supernet.parameters())
            seen.append(
                online_grads and all(p.grad is None and not p.requires_grad for p in wrapper.target.parameters())
            )

    trainer.add_callback(CheckTarget())
    trainer.train()
    assert len(seen) == 3 and all(seen)
    assert all(p.grad is None and not p.requires_grad for p in wrapper.target.parameters())
    assert not target.training  # eval mode, also after model.train()
    own = set(trainer.split.parameter_names(supernet, 0)) | set(trainer.split.parameter_names(supernet, 1))
    moved = {n for n, p in target.named_parameters() if not torch.equal(p, start[n])}
    assert moved and moved <= own  # the target follows the online blocks, nothing else moved
    online = dict(supernet.named_parameters())
    for name in moved:  # between its start and the online weights
        gap_before = (start[name] - online[name]).abs().sum()
        gap_after = (dict(target.named_parameters())[name] - online[name]).abs().sum()
        assert gap_after < gap_before


def test_ensemble_blocks_train_in_isolation(supernet, tmp_path):
    before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
    trainer = trainer_of(supernet, tmp_path, blocks="1")
    heads = trainer.blockwise_model.heads
    heads_before = {n: p.detach().clone() for n, p in heads.named_parameters()}
    trainer.train()
    own = set(trainer.split.parameter_names(supernet, 1))
    changed = {n for n, p in supernet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= own
    changed_heads = {
        n.split(".")[:2][1] + "." + n.split(".")[0]
        for n, p in heads.named_parameters()
        if not torch.equal(p, heads_before[n])
    }
    assert changed_heads == {"1.projectors", "1.predictors"}
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs and all("loss_block_1" in log for log in logs)


def test_a_blocks_ensemble_loss_reaches_only_its_block_and_heads(supernet, tmp_path):
    trainer = trainer_of(supernet, tmp_path)
    wrapper = trainer.blockwise_model
    wrapper.train()
    candidates = trainer.step_candidates(0)
    batch = pad_and_stack(rows(4))
    for position, _count, loss in wrapper.candidate_losses(batch, candidates, torch.Generator().manual_seed(0)):
        wrapper.zero_grad(set_to_none=True)
        loss.backward()
        block = trainer.blocks[position]
        allowed = {id(p) for p in wrapper.block_parameters(block)}
        for name, p in wrapper.named_parameters():
            if id(p) not in allowed:
                assert p.grad is None, f"block {block}'s loss reached {name}"
    supernet.reset_supernet()


def test_resumed_ensemble_run_equals_the_uninterrupted_one(supernet, tmp_path):
    start = copy.deepcopy(supernet)
    full = trainer_of(supernet, tmp_path, "full", max_steps=4, save_strategy="steps", save_steps=2)
    full.train()
    again = trainer_of(copy.deepcopy(start), tmp_path, "again", max_steps=4)
    again.train(resume_from_checkpoint=os.path.join(tmp_path, "full", "checkpoint-2"))
    for (name, p), q in zip(full.blockwise_model.named_parameters(), again.blockwise_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
    for p, q in zip(full.blockwise_model.target.parameters(), again.blockwise_model.target.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0)


def test_ensemble_rater(supernet, tmp_path):
    trainer = trainer_of(supernet, tmp_path, max_steps=2)
    trainer.train()
    rater = EnsembleBlockRater.from_model(trainer.blockwise_model, build_batches(rows(6), batch_size=3))
    space = supernet.search_space
    values = [rater.rate(supernet, s) for s in (space.largest(), space.smallest())]
    assert all(0.0 <= v <= 4.0 * 2 for v in values) and values[0] != values[1]
    assert rater.rate(supernet, space.smallest()) == values[1]  # cached
    population = rater.population(1)
    assert population and all(c.block == 1 and not c.is_empty for c in population)
    states = full_hidden_states(
        trainer.blockwise_model.target.modules_by_name["supernet"],
        rows(1)[0] | {"input_ids": torch.tensor([rows(1)[0]["input_ids"]])},
    )
    assert len(states) == 5
