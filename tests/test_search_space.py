"""SearchSpace and SubnetConfig: points, containment, narrowing, JSON and validation messages."""

from __future__ import annotations

import json
import os
import random
import stat

import pytest

from hf_nas import ElasticBertConfig, SearchSpace, SubnetConfig

from .conftest import tiny_bert_config


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(
        num_hidden_layers=(2, 3),
        num_attention_heads=(1, 2, 3, 4),
        intermediate_size=(16, 32, 48, 64),
        hidden_size=(16, 24, 32),
        attention_head_size=8,
    )


def subnet(**overrides) -> SubnetConfig:
    data = {"num_hidden_layers": 2, "num_attention_heads": (4, 2), "intermediate_size": (64, 16), "hidden_size": 24}
    return SubnetConfig(**{**data, **overrides})


# ------------------------------------------------------------------------------------------------------------------
# points
def test_largest_and_smallest(space):
    assert space.largest() == SubnetConfig(3, (4, 4, 4), (64, 64, 64), 32)
    assert space.smallest() == SubnetConfig(2, (1, 1), (16, 16), 16)
    assert space.contains(space.largest()) and space.contains(space.smallest())


def test_from_model_config_matches_the_model():
    space = SearchSpace.from_model_config(tiny_bert_config())
    assert space == SearchSpace(
        (2, 3), (1, 2, 3, 4), (16, 32, 48, 64), (16, 24, 32), attention_head_size=8, layer_rule="spread"
    )
    assert space.num_supernet_layers == 3
    assert space.largest() == SubnetConfig.uniform(3, 4, 64, 32)


def test_sample_is_reproducible_and_contained(space):
    samples = [space.sample(seed=seed) for seed in range(50)]
    assert samples == [space.sample(seed=seed) for seed in range(50)]
    assert all(space.contains(s) and s in space for s in samples)
    assert len(set(samples)) > 40, "different seeds should give different subnets"
    # A generator continues its stream; two equal generators give equal streams.
    g1, g2 = random.Random(7), random.Random(7)
    assert [space.sample(generator=g1) for _ in range(5)] == [space.sample(generator=g2) for _ in range(5)]


def test_sample_covers_every_choice(space):
    samples = [space.sample(seed=seed) for seed in range(200)]
    assert {s.num_hidden_layers for s in samples} == set(space.num_hidden_layers)
    assert {s.hidden_size for s in samples} == set(space.hidden_size)
    assert {h for s in samples for h in s.num_attention_heads} == set(space.num_attention_heads)
    assert {f for s in samples for f in s.intermediate_size} == set(space.intermediate_size)
    assert any(not s.is_uniform for s in samples)


def test_sample_does_not_use_the_global_rng(space):
    random.seed(0)
    state = random.getstate()
    space.sample(seed=3)
    assert random.getstate() == state


def test_sample_needs_exactly_one_source_of_randomness(space):
    with pytest.raises(ValueError, match="seed.*generator"):
        space.sample()
    with pytest.raises(ValueError, match="seed.*generator"):
        space.sample(seed=1, generator=random.Random(1))


def test_size_counts_subnets():
    space = SearchSpace((1, 2), (1, 2), (8,), (8, 16), attention_head_size=8)
    # per layer 2 x 1 choices; depth 1 -> 2, depth 2 -> 4; times 2 hidden sizes
    assert space.size == 2 * (2 + 4)


# ------------------------------------------------------------------------------------------------------------------
# containment and validation
def test_contains(space):
    assert space.contains(subnet())
    assert not space.contains(subnet(hidden_size=20))
    assert not space.contains(subnet(num_hidden_layers=1, num_attention_heads=(4,), intermediate_size=(64,)))
    assert not space.contains(subnet(num_attention_heads=(4, 5)))
    assert not space.contains(subnet(intermediate_size=(64, 17)))
    assert not space.contains({"num_hidden_layers": 2})
    assert subnet() in space and subnet(hidden_size=20) not in space


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"hidden_size": 20}, r"`hidden_size`=20 .*allowed: \[16, 24, 32\]"),
        (
            {"num_hidden_layers": 1, "num_attention_heads": (4,), "intermediate_size": (64,)},
            r"`num_hidden_layers`=1 .*allowed: \[2, 3\]",
        ),
        ({"num_attention_heads": (4, 5)}, r"`num_attention_heads\[1\]`=5 .*allowed: \[1, 2, 3, 4\]"),
        ({"intermediate_size": (17, 64)}, r"`intermediate_size\[0\]`=17 .*allowed: \[16, 32, 48, 64\]"),
    ],
)
def test_validate_names_field_value_and_choices(space, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        space.validate(subnet(**overrides))


def test_validate_rejects_non_subnets(space):
    with pytest.raises(TypeError, match="SubnetConfig"):
        space.validate({"num_hidden_layers": 2})


@pytest.mark.parametrize("field", ["num_attention_heads", "intermediate_size"])
def test_subnet_per_layer_lists_need_one_entry_per_layer(field):
    with pytest.raises(ValueError, match=rf"`{field}` has 3 entries but `num_hidden_layers` is 2"):
        subnet(**{field: (1, 2, 3)})
    with pytest.raises(ValueError, match=rf"`{field}` has 1 entries but `num_hidden_layers` is 2"):
        subnet(**{field: (1,)})


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"hidden_size": 24.0}, r"`hidden_size` must be an int, got 24\.0"),
        ({"hidden_size": "24"}, r"`hidden_size` must be an int, got '24'"),
        ({"num_hidden_layers": True}, r"`num_hidden_layers` must be an int, got True"),
        ({"num_attention_heads": (4, 2.5)}, r"`num_attention_heads\[1\]` must be an int, got 2\.5"),
        ({"intermediate_size": "ab"}, r"`intermediate_size` must be a sequence of ints"),
        ({"intermediate_size": 64}, r"`intermediate_size` must be a sequence of ints"),
    ],
)
def test_subnet_rejects_non_int_values(overrides, pattern):
    with pytest.raises(TypeError, match=pattern):
        subnet(**overrides)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"hidden_size": 0}, r"`hidden_size` must be >= 1, got 0"),
        ({"num_hidden_layers": 0, "num_attention_heads": (), "intermediate_size": ()}, r"`num_hidden_layers`"),
        ({"num_attention_heads": (4, 0)}, r"`num_attention_heads\[1\]` must be >= 1, got 0"),
    ],
)
def test_subnet_rejects_non_positive_values(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        subnet(**overrides)


def test_subnet_is_frozen_hashable_and_normalizes_lists():
    a = SubnetConfig(2, [4, 2], [64, 16], 24)
    assert a.num_attention_heads == (4, 2) and a.intermediate_size == (64, 16)
    assert a == subnet() and hash(a) == hash(subnet())
    with pytest.raises(AttributeError):
        a.hidden_size = 32


def test_uniform_and_is_uniform():
    assert SubnetConfig.uniform(3, 2, 32, 16) == SubnetConfig(3, (2, 2, 2), (32, 32, 32), 16)
    assert SubnetConfig.uniform(3, 2, 32, 16).is_uniform
    assert not subnet().is_uniform


# ------------------------------------------------------------------------------------------------------------------
# narrowing
def test_narrow_keeps_only_the_listed_choices(space):
    narrow = space.narrow(num_hidden_layers=[3], hidden_size=[32, 16], num_attention_heads=(2, 4))
    assert narrow.num_hidden_layers == (3,)
    assert narrow.hidden_size == (16, 32)
    assert narrow.num_attention_heads == (2, 4)
    assert narrow.intermediate_size == space.intermediate_size
    assert narrow.attention_head_size == space.attention_head_size
    assert narrow.largest() == space.largest()
    assert narrow.smallest() == SubnetConfig.uniform(3, 2, 16, 16)
    assert all(narrow.contains(narrow.sample(seed=s)) and space.contains(narrow.sample(seed=s)) for s in range(20))
    assert not narrow.contains(space.smallest())
    assert space.num_hidden_layers == (2, 3), "narrow returns a new space"


def test_narrow_outside_the_space_names_field_value_and_choices(space):
    with pytest.raises(
        ValueError, match=r"`hidden_size` to \[20, 32\]: \[20\] not in the allowed choices \[16, 24, 32\]"
    ):
        space.narrow(hidden_size=[20, 32])
    with pytest.raises(ValueError, match=r"`num_hidden_layers`.*\[4\].*\[2, 3\]"):
        space.narrow(num_hidden_layers=[4])


def test_narrow_rejects_unknown_dimensions_and_empty_choices(space):
    with pytest.raises(ValueError, match=r"unknown dimension 'depth'.*num_hidden_layers"):
        space.narrow(depth=[2])
    with pytest.raises(ValueError, match=r"unknown dimension 'attention_head_size'"):
        space.narrow(attention_head_size=[4])
    with pytest.raises(ValueError, match=r"`hidden_size` needs at least one choice"):
        space.narrow(hidden_size=[])
    with pytest.raises(TypeError, match=r"hidden_size choice` must be an int, got 16\.0"):
        space.narrow(hidden_size=[16.0])


# ------------------------------------------------------------------------------------------------------------------
# search space construction errors
def test_space_hidden_size_must_be_a_multiple_of_the_head_size():
    with pytest.raises(ValueError, match=r"`hidden_size` choices \[20\] are not divisible by attention_head_size=8"):
        SearchSpace((1,), (1, 2), (8,), (16, 20, 32), attention_head_size=8)


def test_space_rejects_bad_choices():
    with pytest.raises(ValueError, match="`num_attention_heads` needs at least one choice"):
        SearchSpace((1,), (), (8,), (16,), attention_head_size=8)
    with pytest.raises(ValueError, match=r"`intermediate_size` choices must be >= 1, got 0"):
        SearchSpace((1,), (1,), (0, 8), (16,), attention_head_size=8)
    with pytest.raises(TypeError, match="`attention_head_size` must be an int"):
        SearchSpace((1,), (1,), (8,), (16,), attention_head_size=8.0)


def test_model_config_hidden_size_must_be_divisible_by_heads():
    with pytest.raises(ValueError, match="hidden_size=30 is not divisible by num_attention_heads=4"):
        SearchSpace.from_model_config(tiny_bert_config(hidden_size=30))
    with pytest.raises(ValueError, match="hidden_size=30 is not divisible by num_attention_heads=4"):
        ElasticBertConfig(hidden_size=30, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2)


# ------------------------------------------------------------------------------------------------------------------
# JSON
def test_subnet_json_round_trip(tmp_path):
    s = subnet()
    assert SubnetConfig.from_dict(s.to_dict()) == s
    assert SubnetConfig.from_dict(json.loads(s.to_json_string())) == s
    assert json.loads(s.to_json_string()) == {
        "num_hidden_layers": 2,
        "num_attention_heads": [4, 2],
        "intermediate_size": [64, 16],
        "hidden_size": 24,
        "layers": [0, 1],
    }
    path = tmp_path / "nested" / "subnet.json"
    s.save(path)
    assert SubnetConfig.load(path) == s
    assert SubnetConfig.load(str(path)) == s
    assert sorted(p.name for p in path.parent.iterdir()) == ["subnet.json"], "no temporary files are left"


def test_space_json_round_trip(space, tmp_path):
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    path = tmp_path / "space.json"
    space.save(path)
    assert SearchSpace.load(path) == space
    narrow = space.narrow(hidden_size=[32])
    narrow.save(path)  # overwrite
    assert SearchSpace.load(path) == narrow
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.json"]


def test_subnet_json_rejects_unknown_and_missing_keys(tmp_path):
    data = subnet().to_dict()
    with pytest.raises(ValueError, match=r"Unknown keys in subnet config: \['depth'\].*Allowed keys"):
        SubnetConfig.from_dict({**data, "depth": 2})
    del data["hidden_size"]
    with pytest.raises(ValueError, match=r"Missing keys in subnet config: \['hidden_size'\]"):
        SubnetConfig.from_dict(data)
    path = tmp_path / "subnet.json"
    path.write_text(json.dumps({**subnet().to_dict(), "heads": [1]}))
    with pytest.raises(ValueError, match=r"Unknown keys in subnet config: \['heads'\]"):
        SubnetConfig.load(path)
    path.write_text(json.dumps({**subnet().to_dict(), "hidden_size": "24"}))
    with pytest.raises(TypeError, match=r"`hidden_size` must be an int, got '24'"):
        SubnetConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SubnetConfig.load(path)
    with pytest.raises(TypeError, match="must be a dict, got list"):
        SubnetConfig.from_dict([2, [1, 1], [8, 8], 8])


def test_space_json_rejects_unknown_and_missing_keys(space):
    data = space.to_dict()
    with pytest.raises(ValueError, match=r"Unknown keys in search space: \['depth'\]"):
        SearchSpace.from_dict({**data, "depth": [1]})
    del data["attention_head_size"]
    with pytest.raises(ValueError, match=r"Missing keys in search space: \['attention_head_size'\]"):
        SearchSpace.from_dict(data)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("kind", ["subnet", "space"])
def test_saved_json_has_the_same_permissions_as_open(tmp_path, space, kind):
    """`SubnetConfig.save` / `SearchSpace.save` write atomically, but the file must be as readable as one written
    with `open(path, "w")` (0o644 under umask 022), not private (0o600)."""
    obj = subnet() if kind == "subnet" else space
    obj.save(tmp_path / "saved.json")
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    mode = stat.S_IMODE(os.stat(tmp_path / "saved.json").st_mode)
    expected = stat.S_IMODE(os.stat(tmp_path / "plain.json").st_mode)
    assert mode == expected, f"{kind}.save wrote mode {oct(mode)}, open() writes {oct(expected)}"


def test_middle_is_the_median_choice_of_every_dimension():
    space = SearchSpace(
        num_hidden_layers=(1, 2, 3),
        num_attention_heads=(1, 2, 3, 4),
        intermediate_size=(16, 32, 48, 64),
        hidden_size=(16, 24, 32),
        attention_head_size=8,
    )
    assert space.middle() == SubnetConfig.uniform(2, 3, 48, 24)
    assert space.contains(space.middle())


def test_partition_splits_hidden_and_depth_into_contiguous_subspaces():
    space = SearchSpace(
        num_hidden_layers=(3, 4, 5, 6),
        num_attention_heads=(3, 6, 9, 12),
        intermediate_size=(384, 768),
        hidden_size=(192, 288, 384),
        attention_head_size=32,
    )
    tiny, small, base = space.partition(3)
    assert (tiny.hidden_size, small.hidden_size, base.hidden_size) == ((192,), (288,), (384,))
    assert (tiny.num_hidden_layers, small.num_hidden_layers, base.num_hidden_layers) == ((3,), (4,), (5, 6))
    for sub in (tiny, small, base):
        assert sub.num_attention_heads == space.num_attention_heads
        assert space.contains(sub.largest()) and space.contains(sub.smallest())
    assert space.partition(1) == [space]
    with pytest.raises(ValueError, match=r"k=4 .*hidden_size choices \[192, 288, 384\].*k <= 3"):
        space.partition(4)
    with pytest.raises(ValueError, match="positive int"):
        space.partition(0)
