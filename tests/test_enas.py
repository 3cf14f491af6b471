"""The ENAS strategy: an LSTM controller emitting subnets of the space, trained by REINFORCE with a moving-average
baseline, an entropy bonus and a memory buffer; and the hidden-state / architecture-distance diagnostic."""

from __future__ import annotations

import copy

import pytest
import torch

from hf_nas import SearchSpace, SubnetConfig
from hf_nas.search.strategies import ENASSearch, get_strategy
from hf_nas.search.strategies.enas import (
    ENASController,
    architecture_distance,
    controller_diagnostic,
    hidden_state_distance_correlation,
)

SPACE = SearchSpace(
    num_hidden_layers=(2, 3, 4),
    num_attention_heads=(2, 4),
    intermediate_size=(32, 64),
    hidden_size=(16, 32),
    attention_head_size=8,
    layer_rule="spread",
    num_supernet_layers=4,
)


def enas(**kwargs) -> ENASSearch:
    return get_strategy("enas", SPACE, ["maximize", "minimize"], **{"seed": 0, "hidden_size": 16, **kwargs})


def run(strategy: ENASSearch, reward, n: int) -> list[SubnetConfig]:
    asked = []
    for _ in range(n):
        subnet = strategy.ask()
        asked.append(subnet)
        strategy.tell(subnet, [reward(subnet), float(subnet.hidden_size)])
    return asked


@pytest.mark.parametrize("rule", ["first", "spread", "importance"])
def test_controller_emits_only_subnets_of_the_space(rule):
    order = (2, 0, 3, 1) if rule == "importance" else None
    space = SearchSpace((1, 2, 3, 4), (2, 4), (32, 64), (16, 32), 8, layer_rule=rule, layer_order=order)
    controller = ENASController(space, hidden_size=8, seed=1)
    generator = torch.Generator().manual_seed(0)
    samples = [controller.sample(generator) for _ in range(300)]
    for s in samples:
        assert s.subnet in space
        assert s.subnet.layers == space.layers_for(s.subnet.num_hidden_layers)
        assert controller.decode(s.decisions) == s.subnet
    assert {s.subnet.num_hidden_layers for s in samples} == {1, 2, 3, 4}
    assert {s.subnet.layers for s in samples} == {space.layers_for(d) for d in (1, 2, 3, 4)}
    assert any(not s.subnet.is_uniform for s in samples)  # per-layer decisions
    for seed in range(20):
        subnet = space.sample(seed=seed)
        scored = controller.score(subnet)
        assert scored.subnet == subnet and torch.isfinite(scored.log_prob) and scored.log_prob < 0


def test_scoring_gives_the_probability_of_sampling():
    controller = ENASController(SPACE, hidden_size=8, seed=0)
    probabilities = controller.first_decision_probabilities()
    assert probabilities.sum().item() == pytest.approx(1.0)
    for depth_index, depth in enumerate(SPACE.num_hidden_layers):
        subnet = SPACE.subnet(depth, 2, 32, 16)
        first = controller.run(decisions=controller.decisions(subnet))
        assert first.decisions[0] == depth_index
    # the summed log-probabilities of all subnets of a tiny space add up to 1
    tiny = SearchSpace((1, 2), (2,), (32, 64), (16,), 8)
    small = ENASController(tiny, hidden_size=8, seed=0)
    subnets = [tiny.subnet(1, 2, (f,), 16) for f in (32, 64)]
    subnets += [tiny.subnet(2, 2, (f, g), 16) for f in (32, 64) for g in (32, 64)]
    with torch.no_grad():
        total = sum(small.score(s).log_prob.exp().item() for s in subnets)
    assert total == pytest.approx(1.0, abs=1e-5)


def test_seeded_runs_reproduce():
    def reward(s):
        return s.hidden_size / 32 - 0.1 * s.num_hidden_layers

    a, b, c = enas(buffer_size=8, replay_size=2), enas(buffer_size=8, replay_size=2), enas(seed=1)
    asked_a, asked_b, asked_c = run(a, reward, 30), run(b, reward, 30), run(c, reward, 30)
    assert asked_a == asked_b and asked_a != asked_c
    for p, q in zip(a.controller.parameters(), b.controller.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.baseline == b.baseline


def test_reinforce_moves_probability_to_a_planted_best_choice():
    strategy = enas(learning_rate=0.05)
    planted = SPACE.num_hidden_layers.index(3)
    before = strategy.controller.first_decision_probabilities()[planted].item()
    assert before < 0.5
    run(strategy, lambda s: 1.0 if s.num_hidden_layers == 3 else 0.0, 150)
    after = strategy.controller.first_decision_probabilities()[planted].item()
    assert after > 0.9 > before
    # a planted last decision (hidden size), conditioned on everything before it
    strategy = enas(learning_rate=0.05, seed=3)
    run(strategy, lambda s: 1.0 if s.hidden_size == 16 else 0.0, 150)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        draws = [strategy.controller.sample(generator).subnet.hidden_size for _ in range(200)]
    assert draws.count(16) / len(draws) > 0.85


def test_reward_weights_scales_and_constraint_penalty():
    strategy = enas(reward_weights=(1.0, 0.5), reward_scales=(1.0, 32.0), constraint_penalty=2.0)
    assert strategy.reward([0.8, 16.0]) == pytest.approx(0.8 - 0.5 * 16 / 32)  # the second objective is minimized
    assert strategy.reward([0.8, 16.0], [0.25, -1.0]) == pytest.approx(0.8 - 0.25 - 2.0 * 0.25)
    assert enas().reward([0.8, 1e9]) == pytest.approx(0.8)  # default: the first objective only
    with pytest.raises(ValueError, match="one value per objective"):
        enas(reward_weights=(1.0,))
    with pytest.raises(ValueError, match="reward_scales.*positive"):
        enas(reward_scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="needs a buffer"):
        enas(replay_size=2)


def test_constraints_and_queue():
    strategy = enas(constraints=lambda s: [s.num_hidden_layers - 2])
    first = SPACE.subnet(2, 4, 64, 32)
    strategy.enqueue(first)
    asked = run(strategy, lambda s: 0.5, 20)
    assert asked[0] == first and all(s.num_hidden_layers == 2 for s in asked)
    with pytest.raises(ValueError, match="violates"):
        strategy.enqueue(SPACE.largest())


# ----------------------------------------------------------------------------------------------------------------
# the memory buffer
def test_buffer_without_replay_changes_nothing():
    def reward(s):
        return s.hidden_size / 32

    plain, buffered = enas(), enas(buffer_size=5, replay_size=0)
    run(plain, reward, 12)
    run(buffered, reward, 12)
    for p, q in zip(plain.controller.parameters(), buffered.controller.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(buffered.buffer) == 5 and list(buffered.buffer) == [
        (h.subnet, h.values[0]) for h in buffered.history[-5:]
    ]


def test_replay_adds_the_buffered_pairs_to_the_update():
    """One update with a buffer holding one old pair equals, exactly, an Adam step on the REINFORCE loss of the new pair
    and the old one (recomputed under the current controller, against the updated baseline) plus the entropy bonus of
    the new pair; without the replay the update differs."""
    old = (SPACE.subnet(4, 4, 64, 32), 0.9)
    strategy = enas(buffer_size=4, replay_size=3, entropy_weight=0.01, learning_rate=0.01)
    reference = copy.deepcopy(strategy.controller)
    strategy.buffer.append(old)
    new_subnet = strategy.ask()
    strategy.tell(new_subnet, [0.2, 16.0])
    assert strategy.baseline == pytest.approx(0.2)  # the first reward starts the baseline
    # the same update by hand
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    new_score, old_score = reference.score(new_subnet), reference.score(old[0])
    policy = torch.stack([-(0.2 - 0.2) * new_score.log_prob, -(0.9 - 0.2) * old_score.log_prob]).mean()
    (policy - 0.01 * new_score.entropy).backward()
    optimizer.step()
    for p, q in zip(strategy.controller.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=0)
    assert list(strategy.buffer) == [old, (new_subnet, 0.2)]
    # without replay: only the entropy bonus moves the controller on this first update
    plain = enas(entropy_weight=0.01, learning_rate=0.01)
    plain.tell(plain.ask(), [0.2, 16.0])
    assert any(
        not torch.allclose(p, q)
        for p, q in zip(plain.controller.parameters(), strategy.controller.parameters(), strict=True)
    )


def test_replay_draws_at_most_the_buffer_and_keeps_the_last_pairs():
    strategy = enas(buffer_size=3, replay_size=2)
    assert strategy.replay() == []
    run(strategy, lambda s: 0.1, 5)
    assert len(strategy.buffer) == 3
    assert [s for s, _ in strategy.buffer] == [h.subnet for h in strategy.history[-3:]]
    replayed = strategy.replay()
    assert len(replayed) == 2 and all(item in strategy.buffer for item in replayed)


# ----------------------------------------------------------------------------------------------------------------
# the diagnostic
def test_architecture_distance():
    a = SubnetConfig(4, (2, 2, 4, 4), (32, 32, 64, 64), 32, layers=(0, 1, 2, 3))
    assert architecture_distance(a, a, 4) == 0
    b = SubnetConfig(2, (2, 4), (32, 64), 32, layers=(1, 3))
    assert architecture_distance(a, b, 4) == 2 + 2  # layers 0 and 2 dropped
    c = SubnetConfig(4, (2, 2, 4, 4), (32, 32, 64, 32), 16, layers=(0, 1, 2, 3))
    assert architecture_distance(a, c, 4) == 2


def test_hidden_state_distance_correlation():
    subnets = [SPACE.sample(seed=i) for i in range(30)]

    # a hidden state that is the architecture itself: perfectly correlated
    def genome(s):
        g = torch.zeros(9)
        for layer, h, f in zip(s.layers, s.num_attention_heads, s.intermediate_size, strict=True):
            g[2 * layer], g[2 * layer + 1] = h, f
        g[8] = s.hidden_size
        return (g > 0).float() + (g > 16).float() + (g > 32).float()

    encoded = hidden_state_distance_correlation([genome(s) for s in subnets], subnets, 4)
    assert encoded["spearman"] > 0.5 and encoded["num_pairs"] == 30 * 29 // 2
    noise = hidden_state_distance_correlation(
        [torch.randn(8, generator=torch.Generator().manual_seed(i)) for i in range(30)], subnets, 4
    )
    assert abs(noise["spearman"]) < 0.2
    result = controller_diagnostic(enas(), num_samples=40)
    assert set(result) == {"spearman", "pearson", "num_pairs"} and -1.0 <= result["spearman"] <= 1.0
    with pytest.raises(ValueError, match="one per sample"):
        hidden_state_distance_correlation([torch.zeros(2)], subnets, 4)


def test_enas_runs_behind_subnet_search(tmp_path):
    from hf_nas.search import SubnetSearch
    from hf_nas.search.objectives import get_objective

    from .conftest import make_supernet

    model = make_supernet("BertForSequenceClassification")
    objectives = [get_objective("params"), get_objective("macs", sequence_length=16)]

    def search(n):
        return SubnetSearch(
            model, objectives, strategy="enas", use_predictors=False, num_evaluations=n, output_dir=tmp_path,
            show_progress=False,
        ).run()  # fmt: skip

    first = search(6)
    assert len(first.records) == 6
    assert all(model.search_space.contains(first.subnet(i)) for i in range(6))
    resumed = search(9)  # the saved records replay through the same ask/tell loop, then the search goes on
    assert resumed.records[:6] == first.records and len(resumed.records) == 9
