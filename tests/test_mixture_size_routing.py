"""Size routing of Mixture-of-Supernets (`MixtureConfig.router_init="size"`): the routers start with expert 0 on the
largest subnets and the last expert on the smallest; with identical experts every subnet still equals the plain
supernet, yet one training step already moves the experts apart (no noise needed); loading a vanilla checkpoint into a
size-routed supernet, save / reload and extraction keep working; bad settings are refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hf_nas import SubnetConfig, SupernetTrainingArguments
from hf_nas.mixture import (
    ROUTER_INITS,
    LayerRouter,
    MixtureConfig,
    MixtureElasticLinear,
    NeuronRouter,
    architecture_encoding,
    enable_mixture,
    mixture_linears,
    mixture_size_range,
    size_score,
)

from .conftest import output_tensors, random_batch, randomize_parameters
from .test_mixture import FAMILIES, HETEROGENEOUS, assert_close, inputs, make_plain, run, subnets


def size_mixture(mode: str = "layer", num_experts: int = 2, **kwargs) -> MixtureConfig:
    return MixtureConfig(mode=mode, num_experts=num_experts, router_hidden_size=16, router_init="size", **kwargs)


def alphas(linear: MixtureElasticLinear, encoding: torch.Tensor) -> torch.Tensor:
    """alpha of `encoding` as `(mixtures, experts)`: one row layer-wise, one per neuron neuron-wise."""
    return linear.router(encoding).reshape(-1, linear.num_experts)


def test_the_size_range_spans_the_search_space():
    model = make_plain("bert")
    space = model.search_space
    low, high = mixture_size_range(model)
    assert high == pytest.approx(1.0)  # the largest subnet's encoding is all ones
    assert low == pytest.approx(float(architecture_encoding(space.smallest(), model.config).mean()))
    assert 0 < low < high
    for seed in range(5):
        score = float(size_score(architecture_encoding(space.sample(seed=seed), model.config)))
        assert low - 1e-6 <= score <= high + 1e-6


@pytest.mark.parametrize("num_experts", [2, 3])
@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_each_expert_starts_owning_its_band_of_sizes(mode, num_experts):
    """Expert 0 has 95% of the weight on the largest subnet and the last expert on the smallest (two experts; with
    three the end experts still dominate their ends); in between the weight moves monotonically along the size."""
    model = enable_mixture(make_plain("bert"), size_mixture(mode, num_experts, router_init_std=0.0))
    space, config = model.search_space, model.config
    largest = architecture_encoding(space.largest(), config)
    smallest = architecture_encoding(space.smallest(), config)
    for linear in mixture_linears(model):
        top, bottom = alphas(linear, largest), alphas(linear, smallest)
        floor = 0.95 - 1e-4 if num_experts == 2 else 0.9
        assert (top[:, 0] >= floor).all() and (bottom[:, -1] >= floor).all()
        # along the straight line from the smallest to the largest encoding, the last expert's weight falls
        weights = [alphas(linear, smallest + t * (largest - smallest))[:, -1] for t in torch.linspace(0, 1, 11)]
        for lower, upper in zip(weights[1:], weights[:-1], strict=True):
            assert (lower <= upper + 1e-6).all()
        if num_experts == 3:  # the middle expert owns the middle size
            middle = alphas(linear, 0.5 * (smallest + largest))
            assert (middle[:, 1] > middle[:, 0]).all() and (middle[:, 1] > middle[:, 2]).all()


def test_the_router_computes_the_stated_formula():
    """alpha_i(a) = softmax_i(-beta (s(a) - c_i)^2), centres evenly spaced from the largest to the smallest size, beta
    = ln 19 / spacing^2 (95% at each centre with two experts)."""
    router = LayerRouter(
        encoding_size=6, hidden_size=8, num_experts=3, out_features=4, init_std=0.0, size_range=(0.2, 1.0)
    )
    router.reset_parameters()
    centres, beta = router.size_routing_centres(0.2, 1.0)
    assert centres == pytest.approx([1.0, 0.6, 0.2]) and beta == pytest.approx(math.log(19) / 0.4**2)
    for encoding in (torch.full((6,), 0.3), torch.tensor([1.0, 0.5, 0.0, 0.25, 0.75, 0.1]), torch.ones(6)):
        s = float(encoding.mean())
        expected = torch.tensor([-beta * (s - c) ** 2 for c in centres]).softmax(-1)
        torch.testing.assert_close(router(encoding), expected, atol=1e-5, rtol=0)
    neuron = NeuronRouter(
        encoding_size=6, hidden_size=8, num_experts=2, out_features=5, init_std=0.0, size_range=(0.2, 1.0)
    )
    neuron.reset_parameters()
    alpha = neuron(torch.ones(6))
    assert alpha.shape == (5, 2) and torch.allclose(alpha, alpha[:1].expand_as(alpha))  # every neuron alike at start
    assert alpha[0, 0].item() == pytest.approx(0.95, abs=1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_identical_experts_still_equal_the_plain_supernet_for_every_subnet(family):
    """Whatever alpha is, identical experts mix to the weight: a size-routed supernet is the plain supernet."""
    plain = make_plain(family)
    mixed = enable_mixture(copy.deepcopy(plain), size_mixture("neuron", 3, target_modules=("ffn", "attention")))
    batch = inputs(family)
    with torch.no_grad():
        for subnet in subnets(plain):
            assert_close(run(mixed, batch, subnet), run(plain, batch, subnet))


@pytest.mark.parametrize("mode", ["layer", "neuron"])
def test_one_step_moves_the_experts_apart_without_noise(mode):
    """The point of size routing: a large and a small subnet send their gradients to different experts, so the
    identical experts differ after one optimizer step. The random start near uniform (the same step) leaves them far
    closer together."""
    plain = make_plain("bert")
    batch, labels = random_batch(), torch.tensor([0, 1, 2])
    space = plain.search_space
    spreads = {}
    for router_init in ("size", "random"):
        mixture = MixtureConfig(mode=mode, router_hidden_size=16, router_init=router_init)
        torch.manual_seed(0)
        model = enable_mixture(copy.deepcopy(plain), mixture).train()
        before = [linear.weight.detach().clone() for linear in mixture_linears(model)]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for subnet in (space.largest(), space.smallest()):
            with model.subnet(subnet):
                model(**batch, labels=labels).loss.backward()
        optimizer.step()
        with torch.no_grad():  # how differently the two experts moved, relative to how far they moved
            spreads[router_init] = max(
                float((linear.expert_weights[0] - linear.weight).norm() / (linear.weight - weight).norm())
                for linear, weight in zip(mixture_linears(model), before, strict=True)
            )
    assert spreads["size"] > 0.5
    assert spreads["random"] < 0.2


def test_a_vanilla_checkpoint_loads_size_routed_and_reloads_as_saved(tmp_path):
    """from_pretrained(vanilla, mixture_of_supernets={..., router_init: size}): identical experts from the checkpoint,
    routers size-routed (not the random start), the model equals the vanilla one; save / reload keeps the routers."""
    _, vanilla_class, kwargs = FAMILIES["bert"]
    torch.manual_seed(0)
    vanilla = randomize_parameters(vanilla_class(vanilla_class.config_class(**kwargs))).eval()
    vanilla.save_pretrained(tmp_path / "vanilla")
    mixture = size_mixture("layer")
    model = FAMILIES["bert"][0].from_pretrained(tmp_path / "vanilla", mixture_of_supernets=mixture.to_dict()).eval()
    assert model.config.mixture_of_supernets["router_init"] == "size"
    largest = architecture_encoding(model.search_space.largest(), model.config)
    for linear in mixture_linears(model):
        assert torch.equal(linear.expert_weights[0], linear.weight)
        assert alphas(linear, largest)[0, 0] > 0.94
    batch = random_batch()
    with torch.no_grad():
        assert_close(output_tensors(model(**batch)), output_tensors(vanilla(**batch)))
    with torch.no_grad():  # make the routers differ from any fresh initialization
        for linear in mixture_linears(model):
            linear.router.logits.bias.add_(0.3)
    model.save_pretrained(tmp_path / "supernet")
    reloaded = type(model).from_pretrained(tmp_path / "supernet").eval()
    for a, b in zip(mixture_linears(model), mixture_linears(reloaded), strict=True):
        for (name, p), q in zip(a.router.named_parameters(), b.router.parameters(), strict=True):
            assert torch.equal(p, q), name


def test_extraction_of_a_size_routed_subnet_equals_the_supernet():
    model = enable_mixture(make_plain("vit"), size_mixture("neuron"))
    with torch.no_grad():  # experts that differ, as after training
        for linear in mixture_linears(model):
            linear.expert_weights.add_(0.2 * torch.randn(linear.expert_weights.shape))
    subnet = SubnetConfig(**HETEROGENEOUS)
    batch = inputs("vit")
    with torch.no_grad():
        expected = run(model, batch, subnet)
        extracted = model.extract_subnet(subnet).eval()
        assert_close(output_tensors(extracted(**batch)), expected)
        assert not any("expert" in n or "router" in n for n, _ in extracted.named_parameters())


def test_training_arguments_and_bad_settings():
    args = SupernetTrainingArguments(
        output_dir="/tmp/unused", mixture_of_supernets="layer", mixture_router_init="size"
    )
    assert args.mixture_config().router_init == "size"
    assert ROUTER_INITS == ("random", "size")
    with pytest.raises(ValueError, match=r"router_init`='sizes' is unknown; allowed: \['random', 'size'\]"):
        MixtureConfig(router_init="sizes")
    with pytest.raises(ValueError, match=r"router_init`='by_size' is unknown"):
        SupernetTrainingArguments(
            output_dir="/tmp/unused", mixture_of_supernets="layer", mixture_router_init="by_size"
        )
    with pytest.raises(ValueError, match="needs `size_range`"):
        MixtureElasticLinear(8, 4, mixture=size_mixture(), encoding_size=6)
    with pytest.raises(ValueError, match="size_range"):
        LayerRouter(6, 8, 2, 4, 0.0, size_range=(0.9, 0.2))
    # a saved config of an older version (no router_init) reads as the random start
    assert MixtureConfig.from_dict({"mode": "layer"}).router_init == "random"
