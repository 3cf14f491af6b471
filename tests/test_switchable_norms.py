"""Switchable layer norms (one LayerNorm affine transform per subnet budget) on the elastic BERT, ViT and BEiT
supernets: with budgets equal to the norms nothing changes; with distinct budgets the largest subnet still equals the
vanilla model and every extracted subnet equals the supernet with it active (and reloads without hf-nas); the budget
follows the subnet's MAC share; save / reload round-trips; the trainer adds and trains the budgets; bad input is
refused with the field named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hf_nas import GradientSearchArguments, GradientSearchTrainer, SubnetConfig, save_subnet
from hf_nas.costs import count_macs
from hf_nas.modules import ElasticLayerNorm, SwitchableElasticLayerNorm
from hf_nas.switchable_norms import (
    check_norm_boundaries,
    enable_switchable_norms,
    encoder_mac_share,
    norm_budget,
    switchable_norms,
)
from hf_nas.training import SupernetTrainer, get_sampler

from .conftest import output_tensors
from .scripts.ddp_train import make_dataset
from .test_layer_subsets import reload_without_hf_nas
from .test_mixture import FAMILIES, HETEROGENEOUS, assert_close, inputs, make_plain, run, subnets
from .test_trainer import make_args

BOUNDARIES = (0.75, 0.375)


@torch.no_grad()
def randomize_budgets(model: nn.Module, seed: int = 3) -> nn.Module:
    """Budgets that differ from the norms and from each other (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for norm in switchable_norms(model):
        norm.budget_weights.add_(0.5 * torch.randn(norm.budget_weights.shape, generator=generator))
        norm.budget_biases.add_(0.5 * torch.randn(norm.budget_biases.shape, generator=generator))
    return model


def make_switchable(family: str, distinct: bool = True) -> nn.Module:
    model = enable_switchable_norms(make_plain(family), BOUNDARIES)
    return randomize_budgets(model) if distinct else model


def one_subnet_per_budget(model: nn.Module) -> dict[int, SubnetConfig]:
    """A subnet of every budget, among the space's named and random subnets (a heterogeneous one included)."""
    found: dict[int, SubnetConfig] = {}
    for subnet in [SubnetConfig(**HETEROGENEOUS), *subnets(model)]:
        found.setdefault(norm_budget(subnet, model.config), subnet)
    assert sorted(found) == [0, 1, 2], found
    return found


# ----------------------------------------------------------------------------------------------------------------
# the module
def test_a_switchable_norm_computes_its_active_budget_and_extracts_it():
    torch.manual_seed(0)
    plain = ElasticLayerNorm(8)
    with torch.no_grad():
        plain.weight.normal_()
        plain.bias.normal_()
    norm = SwitchableElasticLayerNorm.from_layer_norm(plain, num_budgets=3)
    assert norm.weight is plain.weight and norm.bias is plain.bias
    x = torch.randn(4, 8)
    for budget in range(3):
        norm.set_budget(budget)
        torch.testing.assert_close(norm(x), plain(x), atol=0, rtol=0)
    with torch.no_grad():
        norm.budget_weights[1].fill_(2.0)
        norm.budget_biases[1].fill_(-1.0)
    norm.set_active(6)
    norm.set_budget(2)
    expected = torch.nn.functional.layer_norm(x[:, :6], (6,), torch.full((6,), 2.0), torch.full((6,), -1.0))
    torch.testing.assert_close(norm(x[:, :6]), expected)
    static = norm.to_static()
    assert type(static) is nn.LayerNorm and static.weight.tolist() == [2.0] * 6
    torch.testing.assert_close(static(x[:, :6]), norm(x[:, :6]), atol=0, rtol=0)
    norm.set_budget(0)
    torch.testing.assert_close(norm.to_static().weight, plain.weight[:6])


def test_bad_switchable_norm_arguments():
    with pytest.raises(ValueError, match=r"num_budgets >= 2"):
        SwitchableElasticLayerNorm(8, num_budgets=1)
    with pytest.raises(ValueError, match=r"elementwise_affine must be True"):
        SwitchableElasticLayerNorm(8, elementwise_affine=False, num_budgets=2)
    norm = SwitchableElasticLayerNorm(8, num_budgets=2)
    with pytest.raises(ValueError, match=r"`budget` must be an int in 0\.\.1, got 2"):
        norm.set_budget(2)
    with pytest.raises(TypeError, match=r"replace an ElasticLayerNorm; got SwitchableElasticLayerNorm"):
        SwitchableElasticLayerNorm.from_layer_norm(norm, 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ([], None),
        ("off", None),
        ("0.75,0.375", (0.75, 0.375)),
        ("0.5/0.25", (0.5, 0.25)),
        ([0.5], (0.5,)),
    ],
)
def test_the_boundaries_are_parsed(value, expected):
    assert check_norm_boundaries(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([0.375, 0.75], ValueError, r"strictly decreasing numbers in \(0, 1\)"),
        ([0.5, 0.5], ValueError, r"strictly decreasing"),
        ([1.0], ValueError, r"\(0, 1\)"),
        ([0.0], ValueError, r"\(0, 1\)"),
        ("half", ValueError, r"not a comma-separated list of MAC shares"),
        (0.5, TypeError, r"must be a sequence of numbers"),
    ],
)
def test_bad_boundaries_are_refused_in_configs_and_arguments(tmp_path, value, error, match):
    with pytest.raises(error, match=match):
        check_norm_boundaries(value)
    elastic_class, _, kwargs = FAMILIES["vit"]
    with pytest.raises(error, match=r"switchable_layer_norms"):
        elastic_class.config_class(**kwargs, switchable_layer_norms=value)
    if isinstance(value, (list, str)):
        text = value if isinstance(value, str) else ",".join(map(str, value))
        with pytest.raises(error, match=r"switchable_layer_norms"):
            make_args(tmp_path, switchable_layer_norms=text)


# ----------------------------------------------------------------------------------------------------------------
# the budget of a subnet
def test_the_budget_follows_the_encoder_mac_share():
    model = make_switchable("vit")
    config = model.config
    space = model.search_space
    assert encoder_mac_share(space.largest(), config) == 1.0
    seen = set()
    for subnet in subnets(model) + [SubnetConfig(**HETEROGENEOUS)]:
        share = encoder_mac_share(subnet, config)
        budget = norm_budget(subnet, config)
        assert budget == (0 if share >= 0.75 else 1 if share >= 0.375 else 2), (subnet, share)
        # the share is that of the layers' MACs in count_macs (without the patch projection and the head)
        seen.add(budget)
    assert seen == {0, 1, 2}
    # count_macs agrees on the ordering of the shares
    small, large = space.smallest(), space.middle()
    assert (encoder_mac_share(small, config) < encoder_mac_share(large, config)) == (
        count_macs(model, small) < count_macs(model, large)
    )
    plain = make_plain("vit")
    assert norm_budget(space.smallest(), plain.config) == 0  # no switchable norms: always the norms themselves


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_layer_norm_switches_and_follows_the_active_subnet(family):
    model = make_switchable(family)
    plain_norms = [m for m in make_plain(family).modules() if isinstance(m, ElasticLayerNorm)]
    assert len(switchable_norms(model)) == len(plain_norms) > 0
    assert not [m for m in model.modules() if type(m) is ElasticLayerNorm]
    for budget, subnet in one_subnet_per_budget(model).items():
        with model.subnet(subnet):
            assert {norm.active_budget for norm in switchable_norms(model)} == {budget}
        assert {norm.active_budget for norm in switchable_norms(model)} == {0}  # restored with the largest subnet


# ----------------------------------------------------------------------------------------------------------------
# equivalence
@pytest.mark.parametrize("family", list(FAMILIES))
def test_budgets_equal_to_the_norms_change_no_output(family):
    plain, model = make_plain(family), make_switchable(family, distinct=False)
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(plain)[:6]:
            assert_close(run(model, batch, subnet), run(plain, batch, subnet))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_vanilla_checkpoint_loads_with_switchable_norms_and_its_largest_subnet_stays_vanilla(tmp_path, family):
    elastic_class, vanilla_class, kwargs = FAMILIES[family]
    vanilla = make_plain(family).extract_subnet()
    assert type(vanilla) is vanilla_class
    vanilla.save_pretrained(tmp_path)
    model = elastic_class.from_pretrained(tmp_path, switchable_layer_norms=list(BOUNDARIES)).eval()
    norms = switchable_norms(model)
    assert norms and all(n.num_budgets == 3 for n in norms)
    for norm in norms:  # every budget a copy of the loaded norm, not of an initialization
        assert torch.equal(norm.budget_weights, norm.weight.detach()[None].expand_as(norm.budget_weights))
        assert torch.equal(norm.budget_biases, norm.bias.detach()[None].expand_as(norm.budget_biases))
    randomize_budgets(model)
    batch = inputs(family)
    with torch.no_grad():
        assert_close(output_tensors(model(**batch)), output_tensors(vanilla.eval()(**batch)))


def assert_budgets_extract_exactly(tmp_path, make, reference, saved_key: str, config_keys: tuple[str, ...]) -> None:
    """For every family, a subnet of every budget of `make(family)` extracts to a model equal to the supernet with it
    active, which differs from `reference(family)` (the same supernet without distinct budgets) exactly in the smaller
    budgets; its config lacks `config_keys`, its weights every name holding `saved_key`, and it reloads without
    hf-nas to 1e-5."""
    manifest = {}
    for family in FAMILIES:
        model, shared = make(family), reference(family)
        for budget, subnet in one_subnet_per_budget(model).items():
            folder = f"{family}-budget{budget}"
            batch = inputs(family)
            with torch.no_grad():
                expected = run(model, batch, subnet)
                extracted = save_subnet(model, tmp_path / folder, subnet).eval()
                assert_close(output_tensors(extracted(**batch)), expected)
                other = run(shared, batch, subnet)
                differs = any(not torch.allclose(expected[k], other[k], atol=1e-3) for k in expected)
                assert differs == (budget > 0), "a smaller budget must write its own tensors, the largest the shared"
            config = json.loads((tmp_path / folder / "config.json").read_text())
            assert not [key for key in config_keys if key in config]
            assert not [k for k in load_file(tmp_path / folder / "model.safetensors") if saved_key in k]
            torch.save({"inputs": batch, "outputs": expected}, tmp_path / f"{folder}.reference.pt")
            auto = "AutoModelForSequenceClassification" if family == "bert" else "AutoModelForImageClassification"
            manifest[folder] = {"auto_class": auto, "remote_code": config["model_type"].endswith("_subnet")}
    results = reload_without_hf_nas(tmp_path, manifest)
    for folder, result in results.items():
        assert not result["missing"] and not result["unexpected"], (folder, result)
        assert max(result["max_diff"].values()) <= 1e-5, (folder, result)


def test_extracted_subnets_equal_the_supernet_in_every_budget_and_reload_without_hf_nas(tmp_path):
    assert_budgets_extract_exactly(
        tmp_path,
        make_switchable,
        lambda family: make_switchable(family, distinct=False),
        "budget_",
        ("switchable_layer_norms",),
    )


# ----------------------------------------------------------------------------------------------------------------
# save and reload
@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_and_reload_round_trips(tmp_path, family):
    model = make_switchable(family)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["switchable_layer_norms"] == list(BOUNDARIES)
    assert_reloads_exactly(tmp_path, model, family)


def assert_reloads_exactly(folder, model: nn.Module, family: str) -> nn.Module:
    """`model`, saved in `folder`, reloads with the same tensors and outputs in every budget; returns the reload."""
    reloaded = FAMILIES[family][0].from_pretrained(folder).eval()
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    batch = inputs(family)
    with torch.no_grad():
        for subnet in one_subnet_per_budget(model).values():
            assert_close(run(reloaded, batch, subnet), run(model, batch, subnet))
    return reloaded


def test_a_checkpoint_without_its_budgets_is_refused(tmp_path):
    make_switchable("vit").save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    damaged = {k: v for k, v in weights.items() if k != "vit.encoder.layer.1.layernorm_after.budget_weights"}
    assert len(damaged) == len(weights) - 1
    save_file(damaged, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lack the switchable layer norm budget `vit\.layers\.1\.layernorm_after"):
        FAMILIES["vit"][0].from_pretrained(tmp_path)


def test_a_checkpoint_with_budgets_loaded_without_them_is_refused(tmp_path):
    make_switchable("vit").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"hold switchable layer norm budgets .* asks for none"):
        FAMILIES["vit"][0].from_pretrained(tmp_path, switchable_layer_norms=None)


def test_enable_keeps_or_refuses_existing_budgets():
    model = make_switchable("bert")
    assert enable_switchable_norms(model, "0.75,0.375") is model
    with pytest.raises(ValueError, match=r"boundaries \[0\.75, 0\.375\] already; asked for \[0\.5\]"):
        enable_switchable_norms(model, [0.5])
    with pytest.raises(ValueError, match=r"cannot be switched off in place"):
        enable_switchable_norms(model, None)
    with pytest.raises(TypeError, match=r"need an elastic supernet"):
        enable_switchable_norms(nn.Linear(2, 2), [0.5])


# ----------------------------------------------------------------------------------------------------------------
# training and search
def test_the_trainer_adds_the_budgets_and_trains_only_the_active_one(tmp_path):
    model = make_plain("bert").train()
    small = model.search_space.smallest()
    args = make_args(tmp_path, max_steps=2, learning_rate=1e-2, switchable_layer_norms="0.75,0.375", weight_decay=0.0)
    trainer = SupernetTrainer(
        model=model,
        args=args,
        sampler=get_sampler("fixed", model.search_space, subnets=[small]),
        train_dataset=make_dataset(),
    )
    norms = switchable_norms(model)
    assert norms and model.config.switchable_layer_norms == [0.75, 0.375]
    assert norm_budget(small, model.config) == 2
    before = {id(n): (n.weight.detach().clone(), n.budget_weights.detach().clone()) for n in norms}
    dropped = {
        id(m) for i, layer in enumerate(model.elastic_layers()) if i not in small.layers for m in layer.modules()
    }
    assert dropped and small.layers != tuple(range(model.config.num_hidden_layers))
    trainer.train()
    params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    for norm in norms:
        assert id(norm.budget_weights) in params
        weight, budgets = before[id(norm)]
        assert torch.equal(norm.weight, weight), "the largest subnet's norm moved, but only the smallest trained"
        assert torch.equal(norm.budget_weights[0], budgets[0]), "budget 1 moved, but only budget 2 trained"
        learned = not torch.equal(norm.budget_weights[1], budgets[1])
        assert learned == (id(norm) not in dropped), "budget 2 of a kept norm never learned, or of a dropped one did"


def test_the_gradient_search_refuses_switchable_norms(tmp_path):
    model = make_switchable("bert")
    with pytest.raises(ValueError, match=r"does not support a supernet with switchable layer norms"):
        GradientSearchTrainer(
            model=model, args=GradientSearchArguments(output_dir=str(tmp_path)), train_dataset=make_dataset()
        )


def test_switchable_norms_and_a_mixture_together_extract_exactly(tmp_path):
    from hf_nas.mixture import MixtureConfig, enable_mixture

    from .test_mixture import randomize_experts, randomize_routers

    model = make_plain("vit")
    model = randomize_experts(
        randomize_routers(enable_mixture(model, MixtureConfig(mode="layer", router_hidden_size=8)))
    )
    model = randomize_budgets(enable_switchable_norms(model, BOUNDARIES))
    batch = inputs("vit")
    with torch.no_grad():
        for subnet in one_subnet_per_budget(model).values():
            expected = run(model, batch, subnet)
            assert_close(output_tensors(model.extract_subnet(subnet).eval()(**batch)), expected)
    model.save_pretrained(tmp_path)
    reloaded = FAMILIES["vit"][0].from_pretrained(tmp_path).eval()
    assert reloaded.config.switchable_layer_norms == list(BOUNDARIES) and reloaded.config.mixture_of_supernets
    with torch.no_grad():
        subnet = one_subnet_per_budget(model)[2]
        assert_close(run(reloaded, batch, subnet), run(model, batch, subnet))


def test_the_norm_budgets_get_their_own_learning_rate(tmp_path):
    model = make_plain("bert").train()
    args = make_args(
        tmp_path,
        max_steps=1,
        learning_rate=1e-4,
        switchable_layer_norms="0.75,0.375",
        switchable_norm_learning_rate=0.5,
    )
    trainer = SupernetTrainer(model=model, args=args, train_dataset=make_dataset())
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    budgets = {id(p) for n in switchable_norms(model) for p in (n.budget_weights, n.budget_biases)}
    by_lr: dict[float, set[int]] = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    everything = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*by_lr.values()) == everything  # every parameter once
    assert {lr for lr, ids in by_lr.items() if ids & budgets} == {0.5}
    assert by_lr[0.5] == budgets
    with pytest.raises(ValueError, match=r"`switchable_norm_learning_rate` must be > 0"):
        make_args(tmp_path, switchable_layer_norms="0.5", switchable_norm_learning_rate=0.0)
    plain = SupernetTrainer(
        model=make_plain("bert").train(),
        args=make_args(tmp_path, switchable_norm_learning_rate=1e-2),
        train_dataset=make_dataset(),
    )
    with pytest.raises(ValueError, match=r"no switchable layer norms: set `switchable_layer_norms`"):
        plain.create_optimizer()
