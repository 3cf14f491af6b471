"""Switchable heads (the classifier switches with the switchable layer norms' budgets) on the elastic BERT, ViT and
BEiT supernets: heads equal to the classifier change nothing; with distinct heads every extracted subnet equals the
supernet with it active, holds its budget's classifier and reloads without hf-nas; the head follows the subnet's
budget; save / reload round-trips; the trainer adds the heads, trains only the active budget's and gives them their
own learning rate; bad input is refused with the field named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hf_nas import ElasticBertConfig, ElasticBertForMaskedLM, ElasticViTConfig
from hf_nas.modules import ElasticLinear, SwitchableElasticLinear
from hf_nas.switchable_norms import enable_switchable_heads, norm_budget, switchable_heads
from hf_nas.training import SupernetTrainer, get_sampler

from .conftest import TINY, output_tensors
from .scripts.ddp_train import make_dataset
from .test_mixture import FAMILIES, assert_close, inputs, make_plain, run, subnets
from .test_switchable_norms import (
    assert_budgets_extract_exactly,
    assert_reloads_exactly,
    make_switchable,
    one_subnet_per_budget,
)
from .test_trainer import make_args


@torch.no_grad()
def randomize_heads(model: nn.Module, seed: int = 5) -> nn.Module:
    """Head budgets that differ from the classifier and from each other (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for head in switchable_heads(model):
        head.switch_weights.add_(torch.randn(head.switch_weights.shape, generator=generator))
        head.switch_biases.add_(torch.randn(head.switch_biases.shape, generator=generator))
    return model


def make_with_heads(family: str, distinct: bool = True) -> nn.Module:
    model = enable_switchable_heads(make_switchable(family, distinct=distinct))
    return randomize_heads(model) if distinct else model


# ----------------------------------------------------------------------------------------------------------------
# the module
def test_a_switchable_head_computes_its_active_budget_and_extracts_it():
    torch.manual_seed(0)
    plain = ElasticLinear(8, 3)
    head = SwitchableElasticLinear.from_linear(plain, num_budgets=3)
    assert head.weight is plain.weight and head.bias is plain.bias  # takes over the parameters
    x = torch.randn(4, 6)
    plain.set_active(in_features=6)
    head.set_active(in_features=6)
    with torch.no_grad():
        for budget in range(3):  # every budget a copy: the same output
            head.set_budget(budget)
            torch.testing.assert_close(head(x), plain(x), atol=0, rtol=0)
        head.switch_weights[1].mul_(-2.0)
        head.switch_biases[1].add_(1.0)
        head.set_budget(2)
        expected = x @ (-2.0 * plain.weight[:, :6]).T + plain.bias + 1.0
        torch.testing.assert_close(head(x), expected)
        static = head.to_static()
        assert type(static) is nn.Linear and static.weight.shape == (3, 6)
        torch.testing.assert_close(static(x), expected)
        head.set_budget(0)
        torch.testing.assert_close(head(x), plain(x), atol=0, rtol=0)


def test_a_switchable_head_permutes_every_budget():
    torch.manual_seed(0)
    head = SwitchableElasticLinear(6, 2, num_budgets=2)
    with torch.no_grad():
        head.switch_weights.normal_()
    x = torch.randn(3, 6)
    index = torch.randperm(6)
    before = []
    for budget in range(2):
        head.set_budget(budget)
        before.append(head(x).detach())
    head.permute_in_features(index)
    for budget in range(2):  # the inputs permuted the same way give the same outputs, in every budget
        head.set_budget(budget)
        torch.testing.assert_close(head(x[:, index]), before[budget])


def test_bad_switchable_head_arguments():
    with pytest.raises(ValueError, match=r"num_budgets >= 2"):
        SwitchableElasticLinear(4, 2, num_budgets=1)
    head = SwitchableElasticLinear(4, 2, num_budgets=3)
    with pytest.raises(ValueError, match=r"`budget` must be an int in 0\.\.2, got 3"):
        head.set_budget(3)
    with pytest.raises(TypeError, match=r"replace an ElasticLinear; got SwitchableElasticLinear"):
        SwitchableElasticLinear.from_linear(head, 3)
    with pytest.raises(ValueError, match=r"switchable_layer_norms is unset"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_heads": True})
    with pytest.raises(TypeError, match=r"switchable_heads must be True or False, got 'yes'"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_heads": "yes"})
    with pytest.raises(ValueError, match=r"has no switchable layer norms: set switchable_layer_norms"):
        enable_switchable_heads(make_plain("vit"))
    masked = ElasticBertForMaskedLM(ElasticBertConfig(**TINY, switchable_layer_norms=[0.5]))
    with pytest.raises(TypeError, match=r"with a task head"):
        enable_switchable_heads(masked)
    with pytest.raises(TypeError, match=r"with a task head"):
        enable_switchable_heads(nn.Linear(2, 2))


# ----------------------------------------------------------------------------------------------------------------
# the supernets
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_head_switches_with_the_active_subnets_budget(family):
    model = make_with_heads(family)
    heads = switchable_heads(model)
    assert len(heads) == 1 and model.config.switchable_heads is True
    assert heads == model.head_modules()
    for budget, subnet in one_subnet_per_budget(model).items():
        with model.subnet(subnet):
            assert heads[0].active_budget == budget == norm_budget(subnet, model.config)
        assert heads[0].active_budget == 0  # restored with the largest subnet


@pytest.mark.parametrize("family", list(FAMILIES))
def test_heads_equal_to_the_classifier_change_no_output(family):
    reference, model = make_switchable(family), enable_switchable_heads(make_switchable(family))
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(reference)[:6]:
            assert_close(run(model, batch, subnet), run(reference, batch, subnet))


def test_extracted_subnets_hold_their_budgets_head_and_reload_without_hf_nas(tmp_path):
    # the reference: the same supernet (same norm budgets) with one classifier
    assert_budgets_extract_exactly(
        tmp_path, make_with_heads, make_switchable, "switch_", ("switchable_heads", "switchable_layer_norms")
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_and_reload_round_trips(tmp_path, family):
    model = make_with_heads(family)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["switchable_heads"] is True
    reloaded = assert_reloads_exactly(tmp_path, model, family)
    assert type(reloaded.head_modules()[0]) is SwitchableElasticLinear


def test_a_checkpoint_with_norms_only_loads_with_heads_as_copies(tmp_path):
    model = make_switchable("vit")
    model.save_pretrained(tmp_path)
    loaded = FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_heads=True).eval()
    head = loaded.classifier
    assert type(head) is SwitchableElasticLinear
    assert torch.equal(head.switch_weights, head.weight.detach()[None].expand_as(head.switch_weights))
    assert torch.equal(head.switch_biases, head.bias.detach()[None].expand_as(head.switch_biases))
    batch = inputs("vit")
    with torch.no_grad():
        for subnet in one_subnet_per_budget(model).values():
            assert_close(run(loaded, batch, subnet), run(model, batch, subnet))


def test_damaged_or_mismatched_head_checkpoints_are_refused(tmp_path):
    make_with_heads("vit").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"hold switchable head budgets .* asks for none"):
        FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_heads=False)
    weights = load_file(tmp_path / "model.safetensors")
    damaged = {k: v for k, v in weights.items() if k != "classifier.switch_weights"}
    assert len(damaged) == len(weights) - 1
    save_file(damaged, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lack the switchable head budget `classifier\.switch_weights`"):
        FAMILIES["vit"][0].from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# training
def test_the_trainer_adds_the_heads_and_trains_only_the_active_budgets(tmp_path):
    model = make_plain("bert").train()
    small = model.search_space.smallest()
    args = make_args(
        tmp_path,
        max_steps=2,
        learning_rate=1e-2,
        weight_decay=0.0,
        switchable_layer_norms="0.75,0.375",
        switchable_heads=True,
    )
    trainer = SupernetTrainer(
        model=model,
        args=args,
        sampler=get_sampler("fixed", model.search_space, subnets=[small]),
        train_dataset=make_dataset(),
    )
    head = model.classifier
    assert type(head) is SwitchableElasticLinear and model.config.switchable_heads is True
    assert norm_budget(small, model.config) == 2
    weight, budgets = head.weight.detach().clone(), head.switch_weights.detach().clone()
    trainer.train()
    params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(head.switch_weights) in params and id(head.switch_biases) in params
    assert torch.equal(head.weight, weight), "the largest subnet's classifier moved, but only the smallest trained"
    assert torch.equal(head.switch_weights[0], budgets[0]), "budget 1 moved, but only budget 2 trained"
    assert not torch.equal(head.switch_weights[1], budgets[1]), "budget 2, the one trained, never learned"


def test_the_head_budgets_get_their_own_learning_rate(tmp_path):
    model = make_plain("vit").train()
    args = make_args(
        tmp_path,
        max_steps=1,
        learning_rate=1e-4,
        switchable_layer_norms="0.75,0.375",
        switchable_norm_learning_rate=0.5,
        switchable_heads=True,
        switchable_head_learning_rate=2e-3,
    )
    trainer = SupernetTrainer(model=model, args=args, train_dataset=make_dataset())
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    heads = {id(p) for h in switchable_heads(model) for p in (h.switch_weights, h.switch_biases)}
    by_lr: dict[float, set[int]] = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    everything = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*by_lr.values()) == everything and len(heads) == 2
    assert by_lr[2e-3] == heads
    assert by_lr[0.5] and not by_lr[0.5] & heads
    assert id(model.classifier.weight) in by_lr[1e-4]  # the largest budget's head trains with the rest


def test_bad_switchable_head_training_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"`switchable_head_learning_rate` is set but `switchable_heads` is not"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_head_learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"`switchable_head_learning_rate` must be > 0"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_heads=True, switchable_head_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"has no switchable layer norms"):
        SupernetTrainer(
            model=make_plain("bert").train(),
            args=make_args(tmp_path, max_steps=1, switchable_heads=True),
            train_dataset=make_dataset(),
        )


def test_the_head_groups_need_switchable_heads():
    from hf_nas.training.trainer import split_head_budget_groups

    model = make_switchable("vit")  # norms, no heads
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with pytest.raises(ValueError, match=r"no switchable heads: set `switchable_heads` or leave it unset"):
        split_head_budget_groups(optimizer, model, 1e-3)
    enable_switchable_heads(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    assert split_head_budget_groups(optimizer, model, 1e-3) == 2


def test_the_norms_of_a_head_switch_too():
    """A head's own LayerNorm (the masked-LM transform's) follows the subnet's budget like the encoder's, and the
    extracted model equals the supernet with the subnet active."""
    model = ElasticBertForMaskedLM(ElasticBertConfig(**TINY, switchable_layer_norms=[0.75, 0.375])).eval()
    norm = model.cls.predictions.transform.LayerNorm
    with torch.no_grad():
        norm.budget_weights.normal_()
    small = model.search_space.smallest()
    assert norm_budget(small, model.config) == 2
    batch = {k: v for k, v in inputs("bert").items() if k != "labels"}
    with model.subnet(small):
        assert norm.active_budget == 2
        with torch.no_grad():
            expected = output_tensors(model(**batch))
            extracted = model.extract_subnet().eval()
            assert_close(output_tensors(extracted(**batch)), expected)
    assert norm.active_budget == 0
