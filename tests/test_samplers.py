"""Subnet samplers: containment, extremes first, purity in (seed, step, micro_step), registry, validation, ShiftNAS."""

from __future__ import annotations

import json

import pytest

from hf_nas import SearchSpace, SubnetConfig
from hf_nas.costs import layer_linear_macs
from hf_nas.training.samplers import (
    SAMPLERS,
    ShiftNASSampler,
    SubnetSampler,
    TargetedSampler,
    get_sampler,
    register_sampler,
)

ALL = ["instatune", "random", "sandwich", "shiftnas", "targeted"]  # built with their default options
LARGEST_FIRST = ["instatune", "sandwich", "shiftnas", "targeted"]
COUNTS = {  # (name, kwargs) -> subnets per step
    ("sandwich", ()): 4,
    ("sandwich", (("num_random_subnets", 0),)): 2,
    ("sandwich", (("num_random_subnets", 3),)): 5,
    ("instatune", ()): 2,
    ("random", ()): 1,
    ("random", (("num_subnets", 3),)): 3,
    ("shiftnas", ()): 4,
    ("shiftnas", (("num_random_subnets", 1),)): 3,
    ("shiftnas", (("include_extremes", False),)): 2,
    ("targeted", ()): 4,
    ("targeted", (("num_random_subnets", 3),)): 5,
    ("targeted", (("include_extremes", False),)): 2,
}


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(
        num_hidden_layers=(1, 2, 3),
        num_attention_heads=(1, 2, 3, 4),
        intermediate_size=(16, 32, 48, 64),
        hidden_size=(16, 24, 32),
        attention_head_size=8,
    )


def shiftnas(space: SearchSpace, **kwargs) -> ShiftNASSampler:
    return ShiftNASSampler(space, **{"pool_size": 500, **kwargs})  # a smaller pool keeps the tests fast


# ------------------------------------------------------------------------------------------------------------------
# every sampler
@pytest.mark.parametrize("name", ALL)
def test_samples_are_in_the_space(space, name):
    sampler = get_sampler(name, space, seed=0)
    for step in range(20):
        for micro_step in range(2):
            subnets = sampler.sample(step, micro_step)
            assert all(isinstance(s, SubnetConfig) and space.contains(s) for s in subnets)


@pytest.mark.parametrize(("name", "kwargs"), list(COUNTS))
def test_number_of_subnets(space, name, kwargs):
    sampler = get_sampler(name, space, **dict(kwargs))
    assert len(sampler.sample(0)) == COUNTS[name, kwargs]


@pytest.mark.parametrize("name", ALL)
def test_largest_first(space, name):
    sampler = get_sampler(name, space, seed=3)
    assert sampler.largest_first == (name in LARGEST_FIRST)
    for step in range(10):
        subnets = sampler.sample(step)
        if sampler.largest_first:
            assert subnets[0] == space.largest()
        if name in ("sandwich", "shiftnas"):
            assert subnets[1] == space.smallest()


def test_largest_first_false_without_extremes(space):
    sampler = shiftnas(space, include_extremes=False, num_random_subnets=3)
    assert not sampler.largest_first
    assert len(sampler.sample(0)) == 3


@pytest.mark.parametrize("name", ALL)
def test_reproducible_and_pure_in_step(space, name):
    a = get_sampler(name, space, seed=7)
    b = get_sampler(name, space, seed=7)
    for step in range(5):
        a.sample(step)
    assert a.sample(5) == a.sample(5) == b.sample(5)  # no state advances with calls
    assert a.sample(5, micro_step=1) == b.sample(5, micro_step=1)
    assert [a.sample(s) for s in range(10)] == [b.sample(s) for s in reversed(range(10))][::-1]


@pytest.mark.parametrize("name", ALL)
def test_seed_step_and_micro_step_matter(space, name):
    def run(seed: int, micro_step: int = 0) -> list[list[SubnetConfig]]:
        sampler = get_sampler(name, space, seed=seed)
        return [sampler.sample(step, micro_step) for step in range(10)]

    assert run(0) != run(1)
    assert run(0) != run(0, micro_step=1)
    steps = run(0)
    assert any(steps[i] != steps[0] for i in range(1, 10))


def test_generator_does_not_touch_the_global_rng(space):
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    get_sampler("sandwich", space).sample(0)
    shiftnas(space).sample(0)
    assert random.random() == expected


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_json(space, name):
    sampler = get_sampler(name, space, seed=2)
    state = json.loads(json.dumps(sampler.state_dict()))
    other = get_sampler(name, space, seed=2)
    other.load_state_dict(state)
    assert [other.sample(s) for s in range(5)] == [sampler.sample(s) for s in range(5)]


@pytest.mark.parametrize("name", ALL)
def test_update_checks_lengths(space, name):
    sampler = get_sampler(name, space)
    subnets = sampler.sample(0)
    sampler.update(subnets, [1.0] * len(subnets))
    with pytest.raises(ValueError, match="one loss per subnet"):
        sampler.update(subnets, [1.0] * (len(subnets) + 1))
    with pytest.raises(TypeError, match=r"losses\[0\]"):
        sampler.update(subnets[:1], ["1.0"])


# ------------------------------------------------------------------------------------------------------------------
# registry and validation
def test_registry(space):
    assert sorted(SAMPLERS) == sorted([*ALL, "fixed"])  # fixed needs its subnets: tests/test_recipes.py
    for name, cls in SAMPLERS.items():
        assert cls.name == name and issubclass(cls, SubnetSampler)
        options = {"subnets": [space.smallest()]} if name == "fixed" else {}
        assert isinstance(get_sampler(name, space, **options), cls)


def test_unknown_name_lists_allowed(space):
    with pytest.raises(ValueError, match="Unknown sampler 'bogus'") as error:
        get_sampler("bogus", space)
    for name in ALL:
        assert name in str(error.value)


def test_register_sampler(space):
    @register_sampler
    class FirstOnly(SubnetSampler):
        name = "test-first-only"

        def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
            return [self.search_space.sample(generator=self.generator(step, micro_step))]

    try:
        assert isinstance(get_sampler("test-first-only", space), FirstOnly)
        with pytest.raises(ValueError, match="already registered"):

            @register_sampler
            class Clash(FirstOnly):
                name = "test-first-only"

        with pytest.raises(TypeError, match="`name`"):

            @register_sampler
            class Nameless(SubnetSampler):
                def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
                    return []

        with pytest.raises(TypeError, match="SubnetSampler subclasses"):
            register_sampler(object)
    finally:
        SAMPLERS.pop("test-first-only")


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("sandwich", {"bogus": 1}, TypeError, r"unknown option\(s\) \['bogus'\].*num_random_subnets"),
        ("instatune", {"num_random_subnets": 2}, TypeError, r"allowed options: \['uniform_probability'\]"),
        ("sandwich", {"num_random_subnets": -1}, ValueError, "`num_random_subnets` must be an int >= 0, got -1"),
        ("sandwich", {"num_random_subnets": 1.5}, TypeError, "`num_random_subnets` must be an int"),
        ("sandwich", {"seed": "0"}, TypeError, "`seed` must be an int"),
        ("random", {"num_subnets": 0}, ValueError, "`num_subnets` must be an int >= 1, got 0"),
        ("random", {"num_subnets": True}, TypeError, "`num_subnets` must be an int"),
        ("shiftnas", {"num_bins": 0}, ValueError, "`num_bins` must be an int >= 1"),
        ("shiftnas", {"pool_size": 3, "num_bins": 4}, ValueError, r"`pool_size` \(3\) must be >= `num_bins` \(4\)"),
        ("shiftnas", {"ema": 1.0}, ValueError, r"`ema` must be in the open interval \(0, 1\), got 1.0"),
        ("shiftnas", {"ema": 0}, ValueError, "`ema` must be in the open interval"),
        ("shiftnas", {"beta": -0.5}, ValueError, "`beta` must be >= 0, got -0.5"),
        ("shiftnas", {"beta": float("nan")}, ValueError, "`beta` must be finite"),
        ("shiftnas", {"complexity_fn": 3}, TypeError, "`complexity_fn` must be callable"),
        ("shiftnas", {"include_extremes": 1}, TypeError, "`include_extremes` must be a bool"),
        ("shiftnas", {"include_extremes": False, "num_random_subnets": 0}, ValueError, "would sample no subnet"),
        ("shiftnas", {"max_attempts": 0}, ValueError, "`max_attempts` must be an int >= 1"),
        ("targeted", {"mac_targets": ()}, ValueError, r"`mac_targets` must be a non-empty list of shares in \(0, 1\]"),
        ("targeted", {"mac_targets": 0.5}, ValueError, "`mac_targets` must be a non-empty list"),
        (
            "targeted",
            {"mac_targets": (0.5, 1.5)},
            ValueError,
            r"`mac_targets\[1\]` must be a share in \(0, 1\], got 1.5",
        ),
        ("targeted", {"mac_targets": (0.0,)}, ValueError, r"`mac_targets\[0\]` must be a share"),
        ("targeted", {"tolerance": 0}, ValueError, r"`tolerance` must be in \(0, 1\], got 0"),
        ("targeted", {"num_random_subnets": 0}, ValueError, "`num_random_subnets` must be an int >= 1, got 0"),
        ("targeted", {"uniform_probability": 2}, ValueError, r"`uniform_probability` must be in \[0, 1\]"),
        ("targeted", {"complexity_fn": "macs"}, TypeError, "`complexity_fn` must be callable"),
        ("targeted", {"complexity_fn": lambda s: 0.0}, ValueError, "The largest subnet's complexity must be > 0"),
    ],
)
def test_bad_kwargs(space, name, kwargs, error, match):
    with pytest.raises(error, match=match):
        get_sampler(name, space, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_bad_search_space_and_step(space, name):
    with pytest.raises(TypeError, match="`search_space` must be a SearchSpace, got dict"):
        SAMPLERS[name](space.to_dict())
    sampler = get_sampler(name, space)
    with pytest.raises(ValueError, match="`step` must be an int >= 0, got -1"):
        sampler.sample(-1)
    with pytest.raises(TypeError, match="`micro_step` must be an int"):
        sampler.sample(0, micro_step=0.5)


def test_load_state_dict_validates(space):
    sampler = shiftnas(space)
    with pytest.raises(ValueError, match=r"missing keys \['ema_losses'\], unknown keys \['extra'\]"):
        sampler.load_state_dict({"name": "shiftnas", "bin_edges": [1.0, 2.0, 3.0], "extra": 1})
    with pytest.raises(ValueError, match="saved by sampler 'sandwich'"):
        sampler.load_state_dict({"name": "sandwich", "bin_edges": [1.0, 2.0, 3.0], "ema_losses": [None] * 4})
    with pytest.raises(ValueError, match="num_bins - 1 = 3"):
        sampler.load_state_dict({"name": "shiftnas", "bin_edges": [1.0], "ema_losses": [None] * 4})
    with pytest.raises(ValueError, match="non-decreasing"):
        sampler.load_state_dict({"name": "shiftnas", "bin_edges": [3.0, 2.0, 1.0], "ema_losses": [None] * 4})
    with pytest.raises(ValueError, match="num_bins = 4"):
        sampler.load_state_dict({"name": "shiftnas", "bin_edges": [1.0, 2.0, 3.0], "ema_losses": [None]})
    with pytest.raises(TypeError, match="must be a dict"):
        sampler.load_state_dict([])
    with pytest.raises(ValueError, match="unknown keys"):
        get_sampler("sandwich", space).load_state_dict({"name": "sandwich", "bin_edges": []})


# ------------------------------------------------------------------------------------------------------------------
# ShiftNAS
def feed_low_bin_lagging(sampler: ShiftNASSampler, space: SearchSpace, steps: int = 30) -> None:
    """Report losses where the least complex bin is much worse (3.0) than every other bin (1.0)."""
    for step in range(steps):
        subnets = sampler.sample(step)
        sampler.update(subnets, [3.0 if sampler.bin_of(s) == 0 else 1.0 for s in subnets])


def test_shiftnas_bins_start_uniform(space):
    sampler = shiftnas(space)
    assert len(sampler.bin_edges) == 3 and list(sampler.bin_edges) == sorted(sampler.bin_edges)
    assert sampler.bin_probabilities() == pytest.approx([0.25] * 4)
    assert sampler.bin_of(space.smallest()) == 0 and sampler.bin_of(space.largest()) == 3
    # quantile edges: uniform draws fall about evenly into the bins
    draws = [sampler.bin_of(space.sample(seed=s)) for s in range(400)]
    assert all(60 < draws.count(k) < 140 for k in range(4))


def test_shiftnas_shifts_toward_lagging_bin(space):
    sampler = shiftnas(space, seed=0)
    uniform = shiftnas(space, seed=0)
    feed_low_bin_lagging(sampler, space)
    probabilities = sampler.bin_probabilities()
    assert probabilities[0] > 0.5 > 0.25 and sum(probabilities) == pytest.approx(1.0)
    assert all(p < 0.25 for p in probabilities[1:])

    steps = range(100, 300)
    shifted = [sampler.bin_of(s) for step in steps for s in sampler.sample(step)[2:]]
    baseline = [uniform.bin_of(s) for step in steps for s in uniform.sample(step)[2:]]
    assert shifted.count(0) > 0.5 * len(shifted)
    assert baseline.count(0) < 0.35 * len(baseline)
    mean_shifted = sum(sampler.complexity(s) for step in steps for s in sampler.sample(step)[2:]) / len(shifted)
    mean_baseline = sum(uniform.complexity(s) for step in steps for s in uniform.sample(step)[2:]) / len(baseline)
    assert mean_shifted < 0.7 * mean_baseline


def test_shiftnas_beta_zero_stays_uniform(space):
    sampler = shiftnas(space, beta=0.0)
    feed_low_bin_lagging(sampler, space, steps=5)
    assert sampler.bin_probabilities() == pytest.approx([0.25] * 4)


def test_shiftnas_ema_and_non_finite_losses(space):
    sampler = shiftnas(space, ema=0.5)
    smallest = space.smallest()
    sampler.update([smallest], [2.0])
    sampler.update([smallest], [4.0])
    sampler.update([smallest], [float("nan")])  # skipped, does not poison the average
    assert sampler.state_dict()["ema_losses"] == [3.0, None, None, None]


def test_shiftnas_state_dict_round_trip(space):
    sampler = shiftnas(space, seed=5)
    feed_low_bin_lagging(sampler, space, steps=10)
    state = sampler.state_dict()
    assert set(state) == {"name", "bin_edges", "ema_losses"}
    restored = shiftnas(space, seed=5)
    restored.load_state_dict(json.loads(json.dumps(state)))
    assert restored.state_dict() == state
    assert restored.bin_probabilities() == sampler.bin_probabilities()
    assert [restored.sample(s) for s in range(10, 20)] == [sampler.sample(s) for s in range(10, 20)]
    assert [shiftnas(space, seed=5).sample(s) for s in range(10, 20)] != [sampler.sample(s) for s in range(10, 20)]


def test_shiftnas_custom_complexity_and_empty_bins(space):
    # hidden size takes 3 values, so 4 quantile bins leave one bin without any pool sample: it is never drawn
    sampler = shiftnas(space, complexity_fn=lambda s: s.hidden_size, num_random_subnets=4)
    probabilities = sampler.bin_probabilities()
    assert probabilities.count(0.0) >= 1 and sum(probabilities) == pytest.approx(1.0)
    for step in range(20):
        for s in sampler.sample(step)[2:]:
            assert probabilities[sampler.bin_of(s)] > 0


def test_shiftnas_single_point_space():
    space = SearchSpace(
        num_hidden_layers=(1,),
        num_attention_heads=(2,),
        intermediate_size=(16,),
        hidden_size=(16,),
        attention_head_size=8,
    )
    sampler = ShiftNASSampler(space, pool_size=10)
    assert sampler.sample(0) == [space.largest()] * 4


def test_shiftnas_max_attempts_falls_back_to_closest(space):
    sampler = shiftnas(space, max_attempts=1, num_random_subnets=8)
    for step in range(10):
        subnets = sampler.sample(step)
        assert len(subnets) == 10 and all(space.contains(s) for s in subnets)


def test_shiftnas_bad_complexity_fn(space):
    with pytest.raises(ValueError, match="finite real number"):
        ShiftNASSampler(space, pool_size=10, complexity_fn=lambda s: float("inf"))


def test_shiftnas_default_complexity_is_the_per_token_mac_count_of_the_layers(space):
    """The default complexity is the cost model's per-token MACs of the layers' linear maps (hf_nas.costs)."""
    sampler = shiftnas(space)
    for subnet in (space.smallest(), space.largest(), SubnetConfig(2, (1, 4), (64, 16), 24)):
        expected = sum(
            layer_linear_macs(subnet.hidden_size, heads, ffn, attention_head_size=8)
            for heads, ffn in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)
        )
        assert sampler.complexity(subnet) == float(expected)
    h = 24  # by hand: query, key, value, output (4 h a) and the FFN (2 h f) per layer
    assert sampler.complexity(SubnetConfig(2, (1, 4), (64, 16), h)) == 4 * h * 8 + 2 * h * 64 + 4 * h * 32 + 2 * h * 16


# ------------------------------------------------------------------------------------------------------------------
# targeted
def test_targeted_draws_just_below_each_target_in_turn(space):
    sampler = TargetedSampler(space, seed=3, mac_targets=(0.5, 0.25), tolerance=0.1)
    largest = sum(layer_linear_macs(32, 4, 64, attention_head_size=8) for _ in range(3))
    for step in range(30):
        largest_subnet, smallest, at_half, at_quarter = sampler.sample(step)
        assert largest_subnet == space.largest() and smallest == space.smallest()
        assert (sampler.target_of(step, 0), sampler.target_of(step, 1)) == (0.5, 0.25)
        assert 0.4 <= sampler.share(at_half) <= 0.5 and 0.15 <= sampler.share(at_quarter) <= 0.25
        macs = sum(
            layer_linear_macs(at_half.hidden_size, h, f, attention_head_size=8)
            for h, f in zip(at_half.num_attention_heads, at_half.intermediate_size, strict=True)
        )
        assert sampler.share(at_half) == pytest.approx(macs / largest)  # the default complexity: linear MACs
    # with one random subnet per step the targets alternate between steps
    one = TargetedSampler(space, seed=3, num_random_subnets=1)
    assert [one.target_of(step, 0) for step in range(4)] == [0.5, 0.25, 0.5, 0.25]
    assert 0.15 <= one.share(one.sample(1)[-1]) <= 0.25


def test_targeted_without_the_smallest_trains_the_largest_and_the_same_targeted_draws(space):
    """`include_smallest=False` drops only the space's smallest subnet: the largest stays first (gradient protection
    and in-place distillation need it there) and the targeted draws are those of the full sandwich, step by step."""
    full = TargetedSampler(space, seed=3, mac_targets=(0.5, 0.5, 0.25), num_random_subnets=3)
    lean = TargetedSampler(space, seed=3, mac_targets=(0.5, 0.5, 0.25), num_random_subnets=3, include_smallest=False)
    assert lean.largest_first and "include_smallest=False" in repr(lean)
    for step in range(20):
        largest, smallest, *targeted = full.sample(step)
        assert smallest == space.smallest()
        assert lean.sample(step) == [largest, *targeted]
        assert all(lean.share(s) >= 0.15 for s in lean.sample(step))  # nothing far below the lowest target
    with pytest.raises(TypeError, match="`include_smallest` must be a bool"):
        TargetedSampler(space, include_smallest=0)
    with pytest.raises(ValueError, match="`include_extremes=False` trains no extremes at all"):
        TargetedSampler(space, include_smallest=False, include_extremes=False)


def test_targeted_uniform_draws_and_the_closest_fallback(space):
    uniform = TargetedSampler(space, seed=0, uniform_probability=1.0, include_extremes=False)
    for step in range(10):
        for subnet in uniform.sample(step):
            assert len(set(subnet.num_attention_heads)) == 1 and len(set(subnet.intermediate_size)) == 1
    # a band no subnet falls into: the closest of the draws, here the smallest subnet (share below every other)
    tiny = TargetedSampler(space, seed=0, mac_targets=(1e-4,), tolerance=1e-5, include_extremes=False)
    assert tiny.share(space.smallest()) > 1e-4
    assert tiny.sample(0) == [space.smallest(), space.smallest()]
    # a custom complexity: depth alone
    depth = TargetedSampler(space, seed=0, mac_targets=(2 / 3,), tolerance=0.01, complexity_fn=lambda s: len(s.layers))
    assert all(s.num_hidden_layers == 2 for s in depth.sample(0)[2:])
