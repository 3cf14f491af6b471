"""Mixture-of-Supernets on the elastic BERT, ViT and BEiT supernets: with identical experts a mixture supernet equals
the plain one for every subnet; the router reads the subnet; in eval mode the mixture is computed once per subnet and
recomputed on a change; gradients reach experts and routers; extraction writes ordinary weights (W of that subnet)
that reload without hf-nas; save / reload round-trips; bad input is refused with the field named."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BeitForImageClassification, BertForSequenceClassification, ViTForImageClassification

import hf_nas
from hf_nas import (
    ElasticBeitForImageClassification,
    ElasticBertForSequenceClassification,
    ElasticViTForImageClassification,
    SubnetConfig,
    SupernetTrainingArguments,
    save_subnet,
)
from hf_nas.extraction import is_vanilla_subnet
from hf_nas.mixture import (
    MIXTURE_MODES,
    ROUTERS,
    MixtureConfig,
    MixtureElasticLinear,
    architecture_encoding,
    enable_mixture,
    mixture_linears,
    target_linears,
)
from hf_nas.modules import ElasticLayerNorm, ElasticLinear

from .conftest import TINY, output_tensors, random_batch, randomize_parameters
from .test_extraction import RELOAD_SCRIPT

TINY_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
    "num_labels": 5,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
# family -> (elastic class, vanilla class, config kwargs)
FAMILIES: dict[str, tuple[type, type, dict[str, Any]]] = {
    "bert": (ElasticBertForSequenceClassification, BertForSequenceClassification, dict(TINY)),
    "vit": (ElasticViTForImageClassification, ViTForImageClassification, dict(TINY_VISION)),
    "beit": (
        ElasticBeitForImageClassification,
        BeitForImageClassification,
        {
            **TINY_VISION,
            "use_relative_position_bias": True,
            "use_mean_pooling": True,
            "layer_scale_init_value": 0.1,
            "drop_path_rate": 0.0,
        },
    ),
}
# (mode, target modules): both routers, both kinds of targets
MIXTURES = {
    "layer-ffn": MixtureConfig(mode="layer", num_experts=2, router_hidden_size=16),
    "neuron-ffn-attention": MixtureConfig(
        mode="neuron", num_experts=3, router_hidden_size=16, target_modules=("ffn", "attention")
    ),
}
HETEROGENEOUS = {
    "num_hidden_layers": 2,
    "num_attention_heads": (3, 1),
    "intermediate_size": (48, 16),
    "hidden_size": 24,
    "layers": (0, 2),
}


# ----------------------------------------------------------------------------------------------------------------
# helpers
def inputs(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    if family == "bert":
        return random_batch(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(2, 3, 32, 32, generator=generator)}


def make_plain(family: str, seed: int = 0) -> nn.Module:
    """The tiny plain supernet of `family` with random weights, LayerNorms and biases, in eval mode."""
    elastic_class, _, kwargs = FAMILIES[family]
    config_class = elastic_class.config_class
    torch.manual_seed(seed)
    model = elastic_class(config_class(**kwargs))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("relative_position_bias_table", "lambda_1", "lambda_2")):
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    return randomize_parameters(model, seed).eval()


@torch.no_grad()
def randomize_routers(model: nn.Module, seed: int = 1) -> nn.Module:
    """Routers far from uniform, so that a test cannot pass because every alpha is 1/m."""
    generator = torch.Generator().manual_seed(seed)
    for linear in mixture_linears(model):
        for param in linear.router.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    return model


@torch.no_grad()
def randomize_experts(model: nn.Module, seed: int = 2) -> nn.Module:
    """Experts that differ from each other (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    for linear in mixture_linears(model):
        linear.expert_weights.add_(0.2 * torch.randn(linear.expert_weights.shape, generator=generator))
        if linear.expert_biases is not None:
            linear.expert_biases.add_(0.2 * torch.randn(linear.expert_biases.shape, generator=generator))
    return model


def make_mixture(family: str, mixture: MixtureConfig, distinct: bool = True) -> nn.Module:
    model = randomize_routers(enable_mixture(make_plain(family), mixture))
    return randomize_experts(model) if distinct else model


def target_linears_of(model: nn.Module, targets: tuple[str, ...]) -> list[nn.Module]:
    """The linear layers a mixture with `targets` turns into experts, in `mixture_linears` order."""
    return [linear for layer in model.elastic_layers() for linear in target_linears(layer, targets)]


def subnets(model: nn.Module) -> list[SubnetConfig]:
    """The largest, middle and smallest subnets and random ones (per-layer sizes, every layer rule's subsets)."""
    space = model.search_space
    return [space.largest(), space.middle(), space.smallest()] + [space.sample(seed=s) for s in range(8)]


def run(model: nn.Module, batch: dict[str, torch.Tensor], subnet: SubnetConfig) -> dict[str, torch.Tensor]:
    with model.subnet(subnet):
        return output_tensors(model(**batch))


def assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys() and actual
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, atol=atol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


# ----------------------------------------------------------------------------------------------------------------
# 1. identical experts: the mixture supernet is the plain supernet, for every subnet
@pytest.mark.parametrize("mixture_name", list(MIXTURES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_identical_experts_equal_the_plain_supernet_for_every_subnet(family, mixture_name):
    plain = make_plain(family)
    mixed = make_mixture(family, MIXTURES[mixture_name], distinct=False)
    layers_with_experts = {
        len(target_linears(layer, MIXTURES[mixture_name].target_modules)) for layer in plain.elastic_layers()
    }
    assert len(mixture_linears(mixed)) == len(plain.elastic_layers()) * layers_with_experts.pop()
    batch = inputs(family)
    for subnet in subnets(plain):
        with torch.no_grad():  # eval mode: the cached mixture
            assert_close(run(mixed, batch, subnet), run(plain, batch, subnet))
    mixed.train(), plain.train()  # training mode (dropout 0): the mixture computed in the forward
    for subnet in subnets(plain)[:4]:
        assert_close(run(mixed, batch, subnet), run(plain, batch, subnet))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_vanilla_checkpoint_loads_into_a_mixture_supernet_that_equals_it(tmp_path, family):
    """All experts start from the pretrained weight: the largest subnet is the vanilla model."""
    _, vanilla_class, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    vanilla = randomize_parameters(vanilla_class(vanilla_class.config_class(**kwargs))).eval()
    vanilla.save_pretrained(tmp_path)
    model = FAMILIES[family][0].from_pretrained(tmp_path, mixture_of_supernets="neuron")
    assert model.config.mixture_of_supernets == MixtureConfig(mode="neuron").to_dict()
    linears = mixture_linears(model)
    assert len(linears) == 2 * kwargs["num_hidden_layers"]
    for linear in linears:
        assert torch.equal(linear.expert_weights, linear.weight[None].expand_as(linear.expert_weights))
        assert torch.equal(linear.expert_biases, linear.bias[None].expand_as(linear.expert_biases))
        alpha = linear.mixture_weights()  # near uniform, not exactly (the experts must be able to drift apart)
        assert (alpha - 0.5).abs().max() < 0.2 and not torch.allclose(alpha, torch.full_like(alpha, 0.5))
    batch = inputs(family)
    with torch.no_grad():
        assert_close(output_tensors(model(**batch)), output_tensors(vanilla(**batch)))


# ----------------------------------------------------------------------------------------------------------------
# 2. routing and the eval-mode cache
@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_the_router_output_depends_on_the_subnet(mode):
    model = make_mixture("bert", MixtureConfig(mode=mode, router_hidden_size=16))
    linear = mixture_linears(model)[-1]  # the last layer: kept by every subnet of the spread rule
    space = model.search_space
    seen = []
    for subnet in (space.largest(), space.smallest(), space.middle()):
        model.set_subnet(subnet)
        assert torch.equal(linear.architecture, architecture_encoding(subnet, model.config))
        seen.append(linear.mixture_weights().detach())
        assert seen[-1].shape == ((2,) if mode == "layer" else (linear.out_features, 2))
        torch.testing.assert_close(seen[-1].sum(-1), torch.ones(seen[-1].shape[:-1]))
    assert not torch.allclose(seen[0], seen[1]) and not torch.allclose(seen[1], seen[2])
    model.reset_supernet()
    torch.testing.assert_close(linear.mixture_weights().detach(), seen[0], atol=0, rtol=0)


def test_the_encoding_is_normalized_and_tells_subnets_apart():
    model = make_plain("bert")
    space = model.search_space
    encodings = {tuple(architecture_encoding(s, model.config).tolist()) for s in subnets(model)}
    assert len(encodings) == len(set(subnets(model)))
    assert architecture_encoding(space.largest(), model.config).tolist() == [1.0] * (2 + 2 * TINY["num_hidden_layers"])
    assert all(0.0 <= v <= 1.0 for e in encodings for v in e)


def count_mixtures(monkeypatch) -> list[MixtureElasticLinear]:
    """Record every `compute_mixture` call (the module it ran on)."""
    calls: list[MixtureElasticLinear] = []
    compute = MixtureElasticLinear.compute_mixture

    def counting(self):
        calls.append(self)
        return compute(self)

    monkeypatch.setattr(MixtureElasticLinear, "compute_mixture", counting)
    return calls


def kept_linears(model, subnet: SubnetConfig) -> list[MixtureElasticLinear]:
    layers = model.elastic_layers()
    return [linear for i in subnet.layers for linear in mixture_linears(layers[i])]


def test_eval_mode_computes_the_mixture_once_per_subnet_and_recomputes_on_change(monkeypatch):
    model = make_mixture("bert", MixtureConfig(mode="neuron", router_hidden_size=16))
    batch = random_batch()
    space = model.search_space
    first, second = space.middle(), space.smallest()
    calls = count_mixtures(monkeypatch)
    with torch.no_grad():
        model.set_subnet(first)  # set_subnet computes the mixture of the kept layers now
        assert sorted(map(id, calls)) == sorted(map(id, kept_linears(model, first)))
        reference = model(**batch).logits
        for _ in range(3):
            torch.testing.assert_close(model(**batch).logits, reference, atol=0, rtol=0)
        model.set_subnet(first)  # the same subnet again: nothing to recompute
        assert len(calls) == len(kept_linears(model, first))
        calls.clear()
        model.set_subnet(second)  # a change: recomputed once
        model(**batch), model(**batch)
        assert sorted(map(id, calls)) == sorted(map(id, kept_linears(model, second)))
        calls.clear()
        changed = kept_linears(model, second)[0]
        changed.expert_weights.add_(1.0)  # as an optimizer step would: that layer's cache is stale
        model(**batch)
        assert calls == [changed]
    # training mode: the mixture is part of every forward's graph
    calls.clear()
    model.train()
    model(**batch), model(**batch)
    assert len(calls) == 2 * len(kept_linears(model, second))
    # eval mode with autograd recording through the weights: computed fresh, never a detached cache
    model.eval()
    calls.clear()
    model(**batch)
    assert len(calls) == len(kept_linears(model, second))


def test_the_cache_follows_a_move_and_load_state_dict():
    model = make_mixture("bert", MixtureConfig(mode="layer", router_hidden_size=16))
    other = make_mixture("bert", MixtureConfig(mode="layer", router_hidden_size=16))
    randomize_experts(other, seed=7)
    batch = random_batch()
    subnet = model.search_space.middle()
    with torch.no_grad():
        model.set_subnet(subnet), other.set_subnet(subnet)
        model(**batch)
        model.load_state_dict(other.state_dict())
        torch.testing.assert_close(model(**batch).logits, other(**batch).logits, atol=1e-6, rtol=0)
        model.to(torch.float64)
        assert model(**{**batch}).logits.dtype == torch.float64


# ----------------------------------------------------------------------------------------------------------------
# 3. gradients
@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_gradients_reach_the_experts_and_the_routers(mode):
    model = make_mixture("bert", MixtureConfig(mode=mode, router_hidden_size=16)).train()
    subnet = SubnetConfig(**HETEROGENEOUS)
    with model.subnet(subnet):
        model(**random_batch(), labels=torch.tensor([0, 1, 2])).loss.backward()
    layers = model.elastic_layers()
    for index, layer in enumerate(layers):
        for linear in mixture_linears(layer):
            tensors = [linear.weight, linear.expert_weights, *linear.router.parameters()]
            if index not in subnet.layers:
                assert all(t.grad is None or not t.grad.any() for t in tensors), "a dropped layer got gradients"
                continue
            for name, tensor in zip(("weight", "expert_weights", "router"), tensors, strict=False):
                assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in linear.router.parameters())
            rows, cols = linear.active_out_features, linear.active_in_features
            outside = linear.expert_weights.grad.clone()
            outside[:, :rows, :cols] = 0
            assert not outside.any(), "gradient outside the active slice"


@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_identical_experts_are_a_saddle_that_expert_noise_leaves(mode):
    """With exact copies and a uniform router the routers get no gradient at all (the experts stay interchangeable);
    zero-mean expert noise keeps every subnet equal to the plain supernet yet gives the routers a gradient."""
    plain = make_plain("bert")
    batch, labels = random_batch(), torch.tensor([0, 1, 2])
    for noise in (0.0, 0.05):
        mixture = MixtureConfig(mode=mode, router_hidden_size=16, router_init_std=0.0, expert_init_noise=noise)
        torch.manual_seed(3)
        model = enable_mixture(copy.deepcopy(plain), mixture)
        linears = mixture_linears(model)
        if noise:
            originals = [m.weight for m in target_linears_of(plain, mixture.target_modules)]
            assert len(originals) == len(linears)
            for linear, original in zip(linears, originals, strict=True):
                # the experts differ by about `noise` standard deviations; their mean is the plain supernet's weight
                experts = torch.cat([linear.weight[None], linear.expert_weights])
                spread = (experts[1] - experts[0]).std() / original.std()
                assert 0.5 * noise < spread < 3 * noise
                torch.testing.assert_close(experts.mean(0), original, atol=1e-6, rtol=0)
        with torch.no_grad():
            for subnet in subnets(plain)[:5]:
                assert_close(run(model, batch, subnet), run(plain, batch, subnet))
        model.train()
        with model.subnet(SubnetConfig(**HETEROGENEOUS)):
            model(**batch, labels=labels).loss.backward()
        router_grads = [p.grad for linear in linears for p in linear.router.logits.parameters() if p.grad is not None]
        if noise:
            assert router_grads and any(g.abs().sum() > 0 for g in router_grads), "the routers learn nothing"
        else:
            assert all(not g.any() for g in router_grads), "a saddle has no router gradient"


def test_expert_noise_is_kept_by_save_and_reload(tmp_path):
    mixture = MixtureConfig(mode="layer", router_hidden_size=16, router_init_std=0.0, expert_init_noise=0.1)
    model = enable_mixture(make_plain("bert"), mixture)
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    for a, b in zip(mixture_linears(model), mixture_linears(reloaded), strict=True):
        assert not torch.equal(a.expert_weights[0], a.weight)  # noisy experts...
        torch.testing.assert_close(b.expert_weights, a.expert_weights, rtol=0, atol=0)  # ...reloaded, not re-noised
        torch.testing.assert_close(b.weight, a.weight, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# 4. extraction: ordinary weights that reload without hf-nas
def test_extracted_subnets_equal_the_mixture_supernet_and_reload_without_hf_nas(tmp_path):
    manifest = {}
    for family in FAMILIES:
        for mixture_name, mixture in MIXTURES.items():
            model = make_mixture(family, mixture)
            kinds = {
                "vanilla": model.search_space.subnet(2, 2, 32, 16),
                "heterogeneous": SubnetConfig(**HETEROGENEOUS),
            }
            for kind, subnet in kinds.items():
                assert is_vanilla_subnet(subnet, 8) == (kind == "vanilla")
                folder = f"{family}-{mixture_name}-{kind}"
                batch = inputs(family)
                with torch.no_grad():
                    expected = run(model, batch, subnet)
                    extracted = save_subnet(model, tmp_path / folder, subnet).eval()
                    assert_close(output_tensors(extracted(**batch)), expected)
                config = json.loads((tmp_path / folder / "config.json").read_text())
                assert "mixture_of_supernets" not in config
                assert config["model_type"] == (family if kind == "vanilla" else f"{family}_subnet")
                weights = load_file(tmp_path / folder / "model.safetensors")
                assert not [k for k in weights if "expert" in k or "router" in k]
                torch.save({"inputs": batch, "outputs": expected}, tmp_path / f"{folder}.reference.pt")
                manifest[folder] = {"auto_class": "AutoModelForImageClassification", "remote_code": kind != "vanilla"}
                if family == "bert":
                    manifest[folder]["auto_class"] = "AutoModelForSequenceClassification"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "reload.py").write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "reload.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS")).removeprefix("RESULTS"))
    assert results.pop("hf_nas_imported") is False
    assert results.keys() == manifest.keys()
    for folder, result in results.items():
        assert not result["missing"] and not result["unexpected"], (folder, result)
        assert max(result["max_diff"].values()) <= 1e-5, (folder, result)
        assert result["module"].startswith(
            "transformers.models." if folder.endswith("vanilla") else "transformers_modules."
        )


@pytest.mark.parametrize("training", [False, True])
def test_extraction_computes_each_mixture_once(monkeypatch, training):
    model = make_mixture("bert", MIXTURES["neuron-ffn-attention"]).train(training)
    subnet = SubnetConfig(**HETEROGENEOUS)
    calls = count_mixtures(monkeypatch)
    model.extract_subnet(subnet)
    expected = kept_linears(model, subnet)
    if not training:  # and once more for the subnet active before, set again (eval mode: computed when set)
        expected += kept_linears(model, model.active_subnet)
    assert sorted(map(id, calls)) == sorted(map(id, expected))


# ----------------------------------------------------------------------------------------------------------------
# 5. save and reload
@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_and_reload_round_trips(tmp_path, family):
    model = make_mixture(family, MIXTURES["neuron-ffn-attention"])
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["mixture_of_supernets"] == MIXTURES["neuron-ffn-attention"].to_dict()
    reloaded = FAMILIES[family][0].from_pretrained(tmp_path)
    assert reloaded.config.mixture_of_supernets == model.config.mixture_of_supernets
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(model)[:4]:
            assert_close(run(reloaded, batch, subnet), run(model, batch, subnet))


def test_a_checkpoint_without_its_mixture_tensors_is_refused(tmp_path):
    model = make_mixture("bert", MIXTURES["layer-ffn"])
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    damaged = {k: v for k, v in weights.items() if not k.endswith("1.intermediate.dense.expert_weights")}
    assert len(damaged) == len(weights) - 1
    save_file(damaged, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ValueError, match=r"lack the Mixture-of-Supernets tensor `bert\.encoder\.layer\.1\.intermediate"
    ):
        ElasticBertForSequenceClassification.from_pretrained(tmp_path)


def test_a_mixture_checkpoint_loaded_without_its_mixture_is_refused(tmp_path):
    make_mixture("bert", MIXTURES["layer-ffn"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"hold Mixture-of-Supernets tensors .* asks for no mixture"):
        ElasticBertForSequenceClassification.from_pretrained(tmp_path, mixture_of_supernets=None)


def test_a_plain_supernet_checkpoint_gains_a_mixture_on_loading(tmp_path):
    plain = make_plain("bert")
    plain.save_pretrained(tmp_path)
    mixed = ElasticBertForSequenceClassification.from_pretrained(tmp_path, mixture_of_supernets="layer")
    assert len(mixture_linears(mixed)) == 2 * TINY["num_hidden_layers"]
    batch = random_batch()
    with torch.no_grad():
        for subnet in subnets(plain)[:4]:
            assert_close(run(mixed, batch, subnet), run(plain, batch, subnet))


# ----------------------------------------------------------------------------------------------------------------
# 6. importance reordering keeps what a mixture supernet computes
@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_and_neuron_permutations_keep_the_mixture_supernet(family):
    model = make_mixture(family, MIXTURES["neuron-ffn-attention"])
    batch = inputs(family)
    with torch.no_grad():
        expected = output_tensors(model(**batch))
    if model.shares_head_order():
        order = torch.tensor([2, 0, 3, 1])
        model.permute_shared_heads(order)
    for i, layer in enumerate(model.elastic_layers()):
        layer.permute_neurons(torch.randperm(64, generator=torch.Generator().manual_seed(i)))
        layer.permute_heads(torch.tensor([2, 0, 3, 1]) if model.shares_head_order() else torch.tensor([1, 3, 0, 2]))
    with torch.no_grad():
        assert_close(output_tensors(model(**batch)), expected)


# ----------------------------------------------------------------------------------------------------------------
# 7. bad input
def test_the_modes_are_the_routers():
    assert set(MIXTURE_MODES) == {"off", *ROUTERS}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_experts": 0}, ValueError, r"`mixture_of_supernets.num_experts` must be >= 2, got 0"),
        ({"num_experts": 1}, ValueError, r"num_experts` must be >= 2, got 1: one expert is the plain supernet"),
        ({"num_experts": 2.0}, TypeError, r"`mixture_of_supernets.num_experts` must be an int"),
        ({"mode": "experts"}, ValueError, r"mode`='experts' is unknown; allowed: \['off', 'layer', 'neuron'\]"),
        ({"target_modules": ("embeddings",)}, ValueError, r"has \['embeddings'\], which no elastic layer supports"),
        ({"target_modules": ()}, TypeError, r"target_modules` must be a non-empty sequence"),
        ({"router_hidden_size": 0}, ValueError, r"router_hidden_size` must be an int >= 1, got 0"),
        ({"router_init_std": -1.0}, ValueError, r"router_init_std` must be >= 0"),
        ({"expert_init_noise": -0.1}, ValueError, r"`mixture_of_supernets.expert_init_noise` must be >= 0, got -0.1"),
        ({"expert_init_noise": float("nan")}, ValueError, r"expert_init_noise` must be finite"),
    ],
)
def test_bad_mixture_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        MixtureConfig(**kwargs)


def test_bad_mixture_settings_in_configs_and_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"num_experts` must be >= 2, got 0"):
        hf_nas.ElasticBertConfig(**TINY, mixture_of_supernets={"mode": "layer", "num_experts": 0})
    with pytest.raises(ValueError, match=r"Unknown keys in `mixture_of_supernets`: \['experts'\]"):
        hf_nas.ElasticViTConfig(**TINY_VISION, mixture_of_supernets={"mode": "layer", "experts": 2})
    with pytest.raises(ValueError, match=r"mode`='moe' is unknown"):
        hf_nas.ElasticBeitConfig(**TINY_VISION, mixture_of_supernets="moe")
    assert hf_nas.ElasticBertConfig(**TINY, mixture_of_supernets="off").mixture_of_supernets is None
    with pytest.raises(ValueError, match=r"mode`='bogus' is unknown"):
        SupernetTrainingArguments(str(tmp_path), mixture_of_supernets="bogus", report_to="none")
    with pytest.raises(ValueError, match=r"num_experts` must be >= 2, got 0"):
        SupernetTrainingArguments(str(tmp_path), mixture_of_supernets="layer", mixture_num_experts=0, report_to="none")
    with pytest.raises(ValueError, match=r"has \['pooler'\], which no elastic layer supports"):
        SupernetTrainingArguments(
            str(tmp_path), mixture_of_supernets="neuron", mixture_target_modules="ffn,pooler", report_to="none"
        )


def test_mixture_on_a_module_or_model_that_does_not_support_it():
    mixture = MixtureConfig()
    with pytest.raises(TypeError, match=r"got Linear, which does not support it"):
        MixtureElasticLinear.from_linear(nn.Linear(4, 4), mixture, encoding_size=4)
    with pytest.raises(TypeError, match=r"got ElasticLayerNorm, which does not support it"):
        MixtureElasticLinear.from_linear(ElasticLayerNorm(4), mixture, encoding_size=4)
    layer = MixtureElasticLinear.from_linear(ElasticLinear(4, 4), mixture, encoding_size=4)
    with pytest.raises(TypeError, match=r"got already a mixture"):
        MixtureElasticLinear.from_linear(layer, mixture, encoding_size=4)
    with pytest.raises(TypeError, match=r"has no `ffn_projections\(\)`: it does not support Mixture-of-Supernets"):
        target_linears(nn.Sequential(nn.Linear(4, 4)), ("ffn",))
    with pytest.raises(TypeError, match=r"needs an elastic supernet .*got BertForSequenceClassification"):
        enable_mixture(BertForSequenceClassification(hf_nas.ElasticBertConfig(**TINY)), "layer")
    with pytest.raises(ValueError, match=r"encoding has shape \(3,\); this layer's router reads \(4,\)"):
        layer.set_architecture(torch.ones(3))


def test_enable_mixture_keeps_or_refuses_an_existing_mixture():
    model = make_mixture("bert", MIXTURES["layer-ffn"])
    assert enable_mixture(model, MIXTURES["layer-ffn"].to_dict()) is model
    with pytest.raises(ValueError, match=r"has the mixture .*'mode': 'layer'.* already; asked for .*'mode': 'neuron'"):
        enable_mixture(model, "neuron")
    with pytest.raises(ValueError, match=r"cannot be switched off in place"):
        enable_mixture(model, MixtureConfig(mode="off"))
    plain = copy.deepcopy(make_plain("bert"))
    assert enable_mixture(plain, "off") is plain and not mixture_linears(plain)


# ----------------------------------------------------------------------------------------------------------------
# 8. a head with its own subnet rules, and gradient checkpointing
def test_a_masked_lm_mixture_supernet_equals_its_plain_twin_and_extracts():
    torch.manual_seed(0)
    plain = randomize_parameters(hf_nas.ElasticBertForMaskedLM(hf_nas.ElasticBertConfig(**TINY))).eval()
    mixed = randomize_routers(enable_mixture(copy.deepcopy(plain), MIXTURES["neuron-ffn-attention"]))
    batch = random_batch()
    with torch.no_grad():
        for subnet in subnets(plain)[:5]:
            assert_close(run(mixed, batch, subnet), run(plain, batch, subnet))
    randomize_experts(mixed)
    subnet = SubnetConfig(**HETEROGENEOUS)
    with torch.no_grad():
        expected = run(mixed, batch, subnet)
        assert_close(output_tensors(mixed.extract_subnet(subnet).eval()(**batch)), expected)


def test_gradient_checkpointing_gives_the_same_gradients():
    batch, labels = random_batch(), torch.tensor([0, 1, 2])
    grads = []
    for checkpointing in (False, True):
        model = make_mixture("bert", MIXTURES["layer-ffn"]).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
        with model.subnet(model.search_space.middle()):
            model(**batch, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("router" in n for n in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
