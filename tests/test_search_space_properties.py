"""Property-based tests of `SearchSpace` / `SubnetConfig` (hypothesis): every sampled subnet validates and survives a
JSON round trip; every invalid change of a valid subnet is refused with an error that names the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_nas import SearchSpace, SubnetConfig

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _choices(maximum: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(1, maximum), min_size=1, max_size=4, unique=True).map(lambda v: tuple(sorted(v)))


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    total = draw(st.integers(1, 8))
    rule = draw(st.sampled_from(["first", "spread", "importance"]))
    order = tuple(draw(st.permutations(range(total)))) if rule == "importance" else None
    head_size = draw(st.sampled_from([8, 16, 64]))
    return SearchSpace(
        num_hidden_layers=draw(_choices(total)),
        num_attention_heads=draw(_choices(12)),
        intermediate_size=draw(_choices(3072)),
        hidden_size=tuple(head_size * v for v in draw(_choices(12))),  # whole attention heads
        attention_head_size=head_size,
        layer_rule=rule,
        layer_order=order,
        num_supernet_layers=total,
    )


@SETTINGS
@given(space=spaces(), seed=st.integers(0, 2**31 - 1), uniform=st.booleans())
def test_every_sampled_subnet_validates_and_round_trips(space, seed, uniform):
    subnet = space.sample(seed=seed, uniform=uniform)
    space.validate(subnet)
    assert subnet in space
    assert subnet.layers == space.layers_for(subnet.num_hidden_layers)
    assert SubnetConfig.from_dict(json.loads(subnet.to_json_string())) == subnet
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    for extreme in (space.largest(), space.smallest(), space.middle()):
        space.validate(extreme)


@SETTINGS
@given(space=spaces(), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_an_invalid_change_is_refused_naming_the_field(space, seed, data):
    subnet = space.sample(seed=seed)
    field = data.draw(
        st.sampled_from(["num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"])
    )
    allowed = getattr(space, field)
    bad = data.draw(st.integers(1, 4096).filter(lambda v: v not in allowed))
    if field == "num_hidden_layers":
        bad = data.draw(st.integers(1, 16).filter(lambda v: v not in allowed))
        changed = SubnetConfig.uniform(
            bad, subnet.num_attention_heads[0], subnet.intermediate_size[0], subnet.hidden_size
        )
    elif field == "hidden_size":
        changed = SubnetConfig(
            subnet.num_hidden_layers, subnet.num_attention_heads, subnet.intermediate_size, bad, subnet.layers
        )
    else:
        i = data.draw(st.integers(0, subnet.num_hidden_layers - 1))
        values = list(getattr(subnet, field))
        values[i] = bad
        kwargs = {**subnet.to_dict(), field: tuple(values), "layers": subnet.layers}
        changed = SubnetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    with pytest.raises(ValueError, match=rf"`{field}(\[\d+\])?`={bad} is not in the search space"):
        space.validate(changed)
    assert changed not in space


@SETTINGS
@given(
    field=st.sampled_from(["num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size", "layers"]),
    value=st.one_of(st.text(max_size=3), st.floats(allow_nan=True), st.booleans(), st.none(), st.just([1.5])),
)
def test_wrong_types_in_subnet_json_are_refused_naming_the_field(field, value):
    data = SubnetConfig.uniform(2, 4, 64, 32).to_dict()
    if field == "layers" and value is None:
        return  # a missing layer list means the first layers: valid
    data[field] = value
    with pytest.raises((TypeError, ValueError), match=field):
        SubnetConfig.from_dict(data)
