"""Switchable biases and switchable low-rank deltas (every encoder linear's bias, or a low-rank delta of its weight,
switches with the switchable layer norms' budgets) on the elastic BERT, ViT and BEiT supernets: budgets equal to the
biases (zero deltas) change nothing; with distinct budgets every extracted subnet equals the supernet with it active,
holds its budget's biases (merged weights) and reloads without hf-nas; they follow the subnet's budget and the
importance reordering; save / reload round-trips; the trainer adds them, trains only the active budget's and gives
them their own learning rate; bad input is refused with the field named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hf_nas import ElasticViTConfig
from hf_nas.mixture import enable_mixture
from hf_nas.modules import BudgetElasticLinear, ElasticLinear, SwitchableElasticLinear
from hf_nas.switchable_norms import (
    enable_switchable_biases,
    enable_switchable_deltas,
    enable_switchable_heads,
    norm_budget,
    switchable_biases,
    switchable_deltas,
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
    layer = BudgetElasticLinear.from_linear(plain, num_budgets=3)
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
    layer = BudgetElasticLinear(4, 6, num_budgets=3)
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
        BudgetElasticLinear(4, 2, num_budgets=1)
    with pytest.raises(ValueError, match=r"switch the bias of a layer that has one; this layer has none"):
        BudgetElasticLinear(4, 2, bias=False, num_budgets=2)
    layer = BudgetElasticLinear(4, 2, num_budgets=3)
    with pytest.raises(ValueError, match=r"`budget` must be an int in 0\.\.2, got -1"):
        layer.set_budget(-1)
    with pytest.raises(TypeError, match=r"replace an ElasticLinear with a bias; got BudgetElasticLinear"):
        BudgetElasticLinear.from_linear(layer, 3)
    with pytest.raises(TypeError, match=r"got an ElasticLinear without a bias"):
        BudgetElasticLinear.from_linear(ElasticLinear(4, 2, bias=False), 3)
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
    assert not [m for m in model.head_modules() if isinstance(m, BudgetElasticLinear)]
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


# ----------------------------------------------------------------------------------------------------------------
# switchable low-rank deltas
@torch.no_grad()
def randomize_deltas(model: nn.Module, seed: int = 11) -> nn.Module:
    """Deltas that are not zero and differ between budgets (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in switchable_deltas(model):
        layer.delta_up.add_(torch.randn(layer.delta_up.shape, generator=generator))
    return model


def make_with_deltas(family: str, distinct: bool = True) -> nn.Module:
    model = enable_switchable_deltas(make_switchable(family, distinct=distinct), 2)
    return randomize_deltas(model) if distinct else model


def encoder_linears(model: nn.Module) -> list[nn.Module]:
    return [m for layer in model.base_model.elastic_layers() for m in layer.modules() if isinstance(m, ElasticLinear)]


def test_a_switchable_delta_adds_its_budgets_low_rank_weight_and_extracts_merged():
    torch.manual_seed(0)
    plain = ElasticLinear(8, 5)
    layer = BudgetElasticLinear.from_linear(plain, num_budgets=3, switch_bias=False, delta_rank=2)
    assert layer.bias_budgets is None and layer.delta_rank == 2
    assert torch.equal(layer.delta_up, torch.zeros(2, 5, 2)) and layer.delta_down.abs().sum() > 0
    x = torch.randn(4, 6)
    plain.set_active(in_features=6, out_features=3)
    layer.set_active(in_features=6, out_features=3)
    with torch.no_grad():
        for budget in range(3):  # zero deltas: the same output
            layer.set_budget(budget)
            torch.testing.assert_close(layer(x), plain(x), atol=0, rtol=0)
        layer.delta_up.normal_()
        layer.set_budget(1)
        merged = plain.weight + layer.delta_up[0] @ layer.delta_down[0]
        expected = x @ merged[:3, :6].T + plain.bias[:3]
        torch.testing.assert_close(layer(x), expected)
        static = layer.to_static()
        assert type(static) is nn.Linear and static.weight.shape == (3, 6)
        torch.testing.assert_close(static(x), expected)
        layer.set_budget(0)
        torch.testing.assert_close(layer(x), plain(x), atol=0, rtol=0)


def test_a_switchable_delta_permutes_with_its_layer():
    torch.manual_seed(0)
    layer = BudgetElasticLinear(6, 5, num_budgets=2, delta_rank=3)
    with torch.no_grad():
        layer.delta_up.normal_()
        layer.bias_budgets.normal_()
    layer.set_budget(1)
    x = torch.randn(3, 6)
    before = layer(x).detach()
    out_index, in_index = torch.randperm(5), torch.randperm(6)
    layer.permute_out_features(out_index)
    torch.testing.assert_close(layer(x), before[:, out_index])
    layer.permute_in_features(in_index)
    torch.testing.assert_close(layer(x[:, in_index]), before[:, out_index])


def test_bad_switchable_delta_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"switches nothing: set switch_bias=True or delta_rank > 0"):
        BudgetElasticLinear(4, 2, num_budgets=2, switch_bias=False)
    for rank in (-1, 3, True):
        with pytest.raises(ValueError, match=r"`delta_rank` must be an int in 1\.\.2"):
            BudgetElasticLinear(4, 2, num_budgets=2, delta_rank=rank)
    layer = BudgetElasticLinear(4, 2, num_budgets=2, delta_rank=1)
    with pytest.raises(ValueError, match=r"deltas of rank 1 already; asked for rank 2"):
        layer.add_deltas(2)
    with pytest.raises(ValueError, match=r"switchable_delta_rank=2 switches weight deltas .* unset"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_delta_rank": 2})
    with pytest.raises(ValueError, match=r"switchable_delta_rank must be an int >= 0 \(0: no deltas\), got -1"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_delta_rank": -1})
    with pytest.raises(TypeError, match=r"switchable_delta_rank must be an int >= 0 \(0: no deltas\), got 2.0"):
        ElasticViTConfig(**{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_delta_rank": 2.0})
    with pytest.raises(ValueError, match=r"switchable_delta_rank=2 does not support mixture_of_supernets"):
        ElasticViTConfig(
            **{**FAMILIES["vit"][2], "switchable_layer_norms": [0.5], "switchable_delta_rank": 2},
            mixture_of_supernets="layer",
        )
    with pytest.raises(ValueError, match=r"has no switchable layer norms: set switchable_layer_norms"):
        enable_switchable_deltas(make_plain("vit"), 2)
    with pytest.raises(ValueError, match=r"deltas of rank 2 already; asked for rank 3"):
        enable_switchable_deltas(make_with_deltas("vit"), 3)
    with pytest.raises(
        ValueError, match=r"Mixture-of-Supernets does not support a supernet with switchable biases or"
    ):
        enable_mixture(make_with_deltas("vit"), "layer")
    with pytest.raises(ValueError, match=r"`switchable_delta_learning_rate` is set but `switchable_delta_rank` is 0"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_delta_learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"`switchable_delta_learning_rate` must be > 0"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_delta_rank=2, switchable_delta_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"`switchable_delta_rank` does not support `mixture_of_supernets`"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_delta_rank=2, mixture_of_supernets="layer")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_encoder_linear_gets_deltas_and_zero_ones_change_no_output(family):
    reference, model = make_switchable(family), enable_switchable_deltas(make_switchable(family), 2)
    assert switchable_deltas(model) == encoder_linears(model) and model.config.switchable_delta_rank == 2
    assert not switchable_biases(model)  # deltas alone do not switch the biases
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(reference)[:6]:
            assert_close(run(model, batch, subnet), run(reference, batch, subnet))
    for budget, subnet in one_subnet_per_budget(model).items():
        with model.subnet(subnet):
            assert {layer.active_budget for layer in switchable_deltas(model)} == {budget}


def test_extracted_subnets_hold_their_budgets_merged_weights_and_reload_without_hf_nas(tmp_path):
    assert_budgets_extract_exactly(
        tmp_path, make_with_deltas, make_switchable, "delta_", ("switchable_delta_rank", "switchable_layer_norms")
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_deltas_save_and_reload_round_trip_with_biases(tmp_path, family):
    model = randomize_deltas(enable_switchable_deltas(make_with_biases(family), 2))
    assert switchable_biases(model) and set(switchable_biases(model)) <= set(switchable_deltas(model))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["switchable_delta_rank"] == 2 and config["switchable_biases"] is True
    reloaded = assert_reloads_exactly(tmp_path, model, family)
    assert len(switchable_deltas(reloaded)) == len(switchable_deltas(model))


def test_damaged_or_mismatched_delta_checkpoints_are_refused(tmp_path):
    make_with_deltas("vit").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"hold switchable low-rank deltas .* asks for none"):
        FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_delta_rank=0)
    weights = load_file(tmp_path / "model.safetensors")
    key = "vit.encoder.layer.0.output.dense.delta_up"  # saved under the vanilla names (fc2)
    assert key in weights
    save_file(
        {k: v for k, v in weights.items() if k != key}, tmp_path / "model.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(ValueError, match=r"lack the switchable low-rank delta `vit\.layers\.0\.mlp\.fc2\.delta_up`"):
        FAMILIES["vit"][0].from_pretrained(tmp_path)


def test_the_trainer_adds_the_deltas_trains_only_the_active_budgets_at_their_own_rate(tmp_path):
    model = make_plain("bert").train()
    small = model.search_space.smallest()
    args = make_args(
        tmp_path,
        max_steps=2,
        learning_rate=1e-2,
        weight_decay=0.0,
        switchable_layer_norms="0.75,0.375",
        switchable_delta_rank=2,
        switchable_delta_learning_rate=3e-2,
    )
    trainer = SupernetTrainer(
        model=model,
        args=args,
        sampler=get_sampler("fixed", model.search_space, subnets=[small]),
        train_dataset=make_dataset(),
    )
    layers = switchable_deltas(model)
    assert layers == encoder_linears(model) and model.config.switchable_delta_rank == 2
    assert norm_budget(small, model.config) == 2
    before = [(layer.delta_up.detach().clone(), layer.delta_down.detach().clone()) for layer in layers]
    trainer.train()
    deltas = {id(p) for layer in layers for p in (layer.delta_up, layer.delta_down)}
    groups = [g for g in trainer.optimizer.param_groups if {id(p) for p in g["params"]} & deltas]
    assert {id(p) for g in groups for p in g["params"]} == deltas and {g["initial_lr"] for g in groups} == {3e-2}
    for layer, (up, down) in zip(layers, before, strict=True):
        assert torch.equal(layer.delta_up[0], up[0]), "budget 1 moved, but only budget 2 trained"
        assert torch.equal(layer.delta_down[0], down[0]), "budget 1 moved, but only budget 2 trained"
    assert any(not torch.equal(layer.delta_up[1], up[1]) for layer, (up, _) in zip(layers, before, strict=True))


def test_the_delta_groups_need_switchable_deltas():
    from hf_nas.training.trainer import split_delta_groups

    model = make_with_biases("vit")  # biases, no deltas
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with pytest.raises(ValueError, match=r"no switchable deltas: set `switchable_delta_rank` or leave it unset"):
        split_delta_groups(optimizer, model, 1e-3)
    enable_switchable_deltas(model, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    assert split_delta_groups(optimizer, model, 1e-3) == 2 * len(switchable_deltas(model))
