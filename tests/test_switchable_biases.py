"""Switchable biases (every encoder linear's bias switches with the switchable layer norms' budgets) on the elastic
BERT, ViT and BEiT supernets: budgets equal to the biases change nothing; with distinct budgets every extracted subnet
equals the supernet with it active, holds its budget's biases and reloads without hf-nas; the biases follow the
subnet's budget and the importance reordering; save / reload round-trips; the trainer adds them, trains only the
active budget's and gives them their own learning rate; bad input is refused with the field named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hf_nas import ElasticViTConfig
from hf_nas.mixture import enable_mixture
from hf_nas.modules import ElasticLinear, SwitchableBiasElasticLinear, SwitchableElasticLinear
from hf_nas.switchable_norms import (
    enable_switchable_biases,
    enable_switchable_heads,
    norm_budget,
    switchable_biases,
    switchable_heads,
)
from hf_nas.training import SupernetTrainer, get_sampler

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
def randomize_biases(model: nn.Module, seed: int = 7) -> nn.Module:
    """Bias budgets that differ from the biases and from each other (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in switchable_biases(model):
        layer.bias_budgets.add_(torch.randn(layer.bias_budgets.shape, generator=generator))
    return model


def make_with_biases(family: str, distinct: bool = True) -> nn.Module:
    model = enable_switchable_biases(make_switchable(family, distinct=distinct))
    return randomize_biases(model) if distinct else model


def encoder_linears_with_bias(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for layer in model.base_model.elastic_layers()
        for m in layer.modules()
        if isinstance(m, ElasticLinear) and m.bias is not None
    ]


# ----------------------------------------------------------------------------------------------------------------
# the module
def test_a_switchable_bias_computes_its_active_budget_and_extracts_it():
    torch.manual_seed(0)
    plain = ElasticLinear(8, 5)
    layer = SwitchableBiasElasticLinear.from_linear(plain, num_budgets=3)
    assert layer.weight is plain.weight and layer.bias is plain.bias  # takes over the parameters
    x = torch.randn(4, 6)
    plain.set_active(in_features=6, out_features=3)
    layer.set_active(in_features=6, out_features=3)
    with torch.no_grad():
        for budget in range(3):  # every budget a copy: the same output
            layer.set_budget(budget)
            torch.testing.assert_close(layer(x), plain(x), atol=0, rtol=0)
        layer.bias_budgets[1].add_(torch.arange(5.0))
        layer.set_budget(2)
        expected = x @ plain.weight[:3, :6].T + plain.bias[:3] + torch.arange(3.0)
        torch.testing.assert_close(layer(x), expected)
        static = layer.to_static()
        assert type(static) is nn.Linear and static.weight.shape == (3, 6)
        torch.testing.assert_close(static(x), expected)
        layer.set_budget(1)  # budget 1 untouched: the shared bias
        torch.testing.assert_close(layer(x), plain(x))
        layer.set_budget(0)
        torch.testing.assert_close(layer(x), plain(x), atol=0, rtol=0)


def test_a_switchable_bias_permutes_every_budget():
    torch.manual_seed(0)
    layer = SwitchableBiasElasticLinear(4, 6, num_budgets=3)
    with torch.no_grad():
        layer.bias_budgets.normal_()
    x = torch.randn(3, 4)
    index = torch.randperm(6)
    before = []
    for budget in range(3):
        layer.set_budget(budget)
        before.append(layer(x).detach())
    layer.permute_out_features(index)
    for budget in range(3):  # the outputs come out permuted, in every budget
        layer.set_budget(budget)
        torch.testing.assert_close(layer(x), before[budget][:, index])


def test_bad_switchable_bias_arguments():
    with pytest.raises(ValueError, match=r"num_budgets >= 2"):
        SwitchableBiasElasticLinear(4, 2, num_budgets=1)
    with pytest.raises(ValueError, match=r"needs one \(bias=True\)"):
        SwitchableBiasElasticLinear(4, 2, bias=False, num_budgets=2)
    layer = SwitchableBiasElasticLinear(4, 2, num_budgets=3)
    with pytest.raises(ValueError, match=r"`budget` must be an int in 0\.\.2, got -1"):
        layer.set_budget(-1)
    with pytest.raises(TypeError, match=r"with a bias; got SwitchableBiasElasticLinear"):
        SwitchableBiasElasticLinear.from_linear(layer, 3)
    with pytest.raises(TypeError, match=r"got an ElasticLinear without a bias"):
        SwitchableBiasElasticLinear.from_linear(ElasticLinear(4, 2, bias=False), 3)
    with pytest.raises(ValueError, match=r"switchable_biases=True switches the encoder's biases .* unset"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_biases": True})
    with pytest.raises(TypeError, match=r"switchable_biases must be True or False, got 1"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_biases": 1})
    with pytest.raises(ValueError, match=r"switchable_biases=True does not support mixture_of_supernets"):
        ElasticViTConfig(
            **{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_biases": True},
            mixture_of_supernets="layer",
        )
    with pytest.raises(ValueError, match=r"has no switchable layer norms: set switchable_layer_norms"):
        enable_switchable_biases(make_plain("vit"))
    with pytest.raises(TypeError, match=r"need an elastic supernet"):
        enable_switchable_biases(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"Mixture-of-Supernets does not support a supernet with switchable biases"):
        enable_mixture(make_with_biases("vit"), "layer")
    mixed = enable_mixture(make_plain("vit"), "layer")
    mixed.config.switchable_layer_norms = [0.5]
    with pytest.raises(ValueError, match=r"Switchable biases do not support a Mixture-of-Supernets supernet"):
        enable_switchable_biases(mixed)


# ----------------------------------------------------------------------------------------------------------------
# the supernets
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_encoder_bias_switches_with_the_active_subnets_budget(family):
    model = make_with_biases(family)
    layers = switchable_biases(model)
    assert model.config.switchable_biases is True
    assert layers == encoder_linears_with_bias(model) and layers  # the encoder's linears with a bias, nothing else
    assert not [m for m in model.head_modules() if isinstance(m, SwitchableBiasElasticLinear)]
    for budget, subnet in one_subnet_per_budget(model).items():
        with model.subnet(subnet):
            assert {layer.active_budget for layer in layers} == {budget} and budget == norm_budget(
                subnet, model.config
            )
        assert {layer.active_budget for layer in layers} == {0}  # restored with the largest subnet


@pytest.mark.parametrize("family", list(FAMILIES))
def test_budgets_equal_to_the_biases_change_no_output(family):
    reference, model = make_switchable(family), enable_switchable_biases(make_switchable(family))
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(reference)[:6]:
            assert_close(run(model, batch, subnet), run(reference, batch, subnet))


def test_extracted_subnets_hold_their_budgets_biases_and_reload_without_hf_nas(tmp_path):
    # the reference: the same supernet (same norm budgets) with one bias per layer
    assert_budgets_extract_exactly(
        tmp_path, make_with_biases, make_switchable, "bias_budgets", ("switchable_biases", "switchable_layer_norms")
    )


def test_biases_and_heads_switch_together():
    model = enable_switchable_heads(make_with_biases("vit"))
    assert [type(m) for m in model.head_modules()] == [SwitchableElasticLinear]
    assert switchable_heads(model) == model.head_modules()
    assert switchable_biases(model) == encoder_linears_with_bias(model)
    small = model.search_space.smallest()
    with model.subnet(small):
        assert {m.active_budget for m in switchable_biases(model) + switchable_heads(model)} == {2}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_and_reload_round_trips(tmp_path, family):
    model = make_with_biases(family)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["switchable_biases"] is True
    reloaded = assert_reloads_exactly(tmp_path, model, family)
    assert len(switchable_biases(reloaded)) == len(switchable_biases(model))


def test_a_checkpoint_with_norms_only_loads_with_bias_budgets_as_copies(tmp_path):
    model = make_switchable("vit")
    model.save_pretrained(tmp_path)
    loaded = FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_biases=True).eval()
    layers = switchable_biases(loaded)
    assert layers
    for layer in layers:
        assert torch.equal(layer.bias_budgets, layer.bias.detach()[None].expand_as(layer.bias_budgets))
    batch = inputs("vit")
    with torch.no_grad():
        for subnet in one_subnet_per_budget(model).values():
            assert_close(run(loaded, batch, subnet), run(model, batch, subnet))


def test_damaged_or_mismatched_bias_checkpoints_are_refused(tmp_path):
    make_with_biases("vit").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"hold switchable bias budgets .* asks for none"):
        FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_biases=False)
    weights = load_file(tmp_path / "model.safetensors")
    key = "vit.encoder.layer.0.attention.attention.key.bias_budgets"  # saved under the vanilla names
    damaged = {k: v for k, v in weights.items() if k != key}
    save_file(damaged, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert key in weights
    with pytest.raises(
        ValueError, match=r"lack the switchable bias budget `vit\.layers\.0\.attention\.k_proj\.bias_budgets`"
    ):
        FAMILIES["vit"][0].from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# training
def test_the_trainer_adds_the_biases_and_trains_only_the_active_budgets(tmp_path):
    model = make_plain("bert").train()
    small = model.search_space.smallest()
    args = make_args(
        tmp_path,
        max_steps=2,
        learning_rate=1e-2,
        weight_decay=0.0,
        switchable_layer_norms="0.75,0.375",
        switchable_biases=True,
    )
    trainer = SupernetTrainer(
        model=model,
        args=args,
        sampler=get_sampler("fixed", model.search_space, subnets=[small]),
        train_dataset=make_dataset(),
    )
    layers = switchable_biases(model)
    assert layers and model.config.switchable_biases is True
    assert norm_budget(small, model.config) == 2
    biases = [layer.bias.detach().clone() for layer in layers]
    budgets = [layer.bias_budgets.detach().clone() for layer in layers]
    trainer.train()
    params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(layer.bias_budgets) in params for layer in layers)
    for layer, bias, budget in zip(layers, biases, budgets, strict=True):
        assert torch.equal(layer.bias, bias), "the largest subnet's bias moved, but only the smallest trained"
        assert torch.equal(layer.bias_budgets[0], budget[0]), "budget 1 moved, but only budget 2 trained"
    moved = [not torch.equal(layer.bias_budgets[1], budget[1]) for layer, budget in zip(layers, budgets, strict=True)]
    assert any(moved), "budget 2, the one trained, never learned"


def test_the_bias_budgets_get_their_own_learning_rate(tmp_path):
    model = make_plain("vit").train()
    args = make_args(
        tmp_path,
        max_steps=1,
        learning_rate=1e-4,
        switchable_layer_norms="0.75,0.375",
        switchable_norm_learning_rate=0.5,
        switchable_biases=True,
        switchable_bias_learning_rate=2e-3,
    )
    trainer = SupernetTrainer(model=model, args=args, train_dataset=make_dataset())
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    budgets = {id(layer.bias_budgets) for layer in switchable_biases(model)}
    by_lr: dict[float, set[int]] = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    everything = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*by_lr.values()) == everything and len(budgets) == len(encoder_linears_with_bias(model))
    assert by_lr[2e-3] == budgets
    assert by_lr[0.5] and not by_lr[0.5] & budgets
    assert all(id(layer.bias) in by_lr[1e-4] for layer in switchable_biases(model))  # budget 0 trains with the rest


def test_bad_switchable_bias_training_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"`switchable_bias_learning_rate` is set but `switchable_biases` is not"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_bias_learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"`switchable_bias_learning_rate` must be > 0"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_biases=True, switchable_bias_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"`switchable_biases` does not support `mixture_of_supernets`"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_biases=True, mixture_of_supernets="layer")
    with pytest.raises(ValueError, match=r"has no switchable layer norms"):
        SupernetTrainer(
            model=make_plain("bert").train(),
            args=make_args(tmp_path, max_steps=1, switchable_biases=True),
            train_dataset=make_dataset(),
        )


def test_the_bias_groups_need_switchable_biases():
    from hf_nas.training.trainer import split_bias_budget_groups

    model = make_switchable("vit")  # norms, no switchable biases
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with pytest.raises(ValueError, match=r"no switchable biases: set `switchable_biases` or leave it unset"):
        split_bias_budget_groups(optimizer, model, 1e-3)
    enable_switchable_biases(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    assert split_bias_budget_groups(optimizer, model, 1e-3) == len(switchable_biases(model))
