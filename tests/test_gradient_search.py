"""Gradient-based search (TangleNAS) with DARTS / DrNAS and argmax / perturbation (DARTS-PT) selection."""

from __future__ import annotations

import dataclasses
import json
import os

import datasets
import pytest
import torch
import transformers
from transformers import BertForSequenceClassification

from hf_nas import (
    ElasticBeitConfig,
    ElasticBeitForImageClassification,
    ElasticViTConfig,
    ElasticViTForImageClassification,
    SubnetConfig,
    count_macs,
)
from hf_nas.gradient import (
    ARCH_STATE_NAME,
    ARCHITECTURE_DIR_NAME,
    ArchitectureParameters,
    ArchitectureWeights,
    GradientSearchArguments,
    GradientSearchTrainer,
    MixedForward,
    expected_macs,
    perturbation_select,
    select_argmax,
)

from .conftest import assert_outputs_close, make_supernet, random_batch, tiny_bert_config

HEADS = ["BertForSequenceClassification", "BertModel", "BertForMaskedLM", "BertForQuestionAnswering"]
SUBNETS = [
    SubnetConfig(2, (1, 4), (16, 64), 16),
    SubnetConfig(3, (4, 2, 3), (64, 48, 16), 24),
    SubnetConfig(2, (2, 3), (32, 48), 32),
    SubnetConfig(3, (4, 4, 4), (64, 64, 64), 32),
]
# The layer rules of the tiny (3-layer) models' space, depths (2, 3): "first" keeps (0, 1) and (0, 1, 2), every
# chain a prefix of the deepest; "spread" keeps (0, 2), which branches off after layer 0; this "importance" order
# keeps (1, 2), which branches off before the first layer.
LAYER_RULES = {
    "first": dict(layer_rule="first"),
    "spread": dict(layer_rule="spread"),
    "importance": dict(layer_rule="importance", layer_order=(1, 2, 0)),
}


def set_layer_rule(model, rule: str):
    """`model` with its search space's layer rule set to `rule` (a key of LAYER_RULES)."""
    model.search_space = dataclasses.replace(model.search_space, **LAYER_RULES[rule])
    return model


def with_space_layers(space, subnet: SubnetConfig) -> SubnetConfig:
    """`subnet`'s sizes on the layers `space` keeps for its depth."""
    return space.subnet(
        subnet.num_hidden_layers, subnet.num_attention_heads, subnet.intermediate_size, subnet.hidden_size
    )


# ----------------------------------------------------------------------------------------------------------------
# the mixed forward
@pytest.mark.parametrize("rule", list(LAYER_RULES))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("head", HEADS)
def test_one_hot_mixed_forward_equals_the_subnet(head, attn, rule):
    model = set_layer_rule(make_supernet(head, attn_implementation=attn), rule)
    space = model.search_space
    batch = random_batch()
    for subnet in (with_space_layers(space, s) for s in SUBNETS):
        with torch.no_grad():
            with model.subnet(subnet):
                expected = model(**batch)
            with MixedForward(model, ArchitectureWeights.one_hot(space, subnet)):
                actual = model(**batch)
        if head == "BertModel":  # the mixed forward runs at full width: channels beyond the subnet's are zero
            hidden = subnet.hidden_size
            assert torch.all(actual.last_hidden_state[..., hidden:] == 0)
            torch.testing.assert_close(
                actual.last_hidden_state[..., :hidden], expected.last_hidden_state, atol=1e-5, rtol=0
            )
            torch.testing.assert_close(actual.pooler_output[..., :hidden], expected.pooler_output, atol=1e-5, rtol=0)
        else:
            assert_outputs_close(actual, expected, atol=1e-5)
    assert model.active_subnet == model.max_subnet()  # restored on exit


@pytest.mark.parametrize(
    "rule",
    [
        dict(layer_rule="spread"),
        dict(layer_rule="importance", layer_order=(4, 1, 5, 0, 3, 2)),
        dict(layer_rule="spread", num_hidden_layers=(3, 4)),  # layer 1 is in no chain but (1, 3, 5)
    ],
    ids=["spread", "importance", "spread-narrow"],
)
def test_depth_chains_branch_off_the_deepest_and_share_their_prefixes(rule):
    """A 6-layer supernet, depths 3 to 6. Spread keeps (1, 3, 5), (0, 2, 3, 5), (0, 1, 2, 3, 5) and all six: the
    model's own pass runs the deepest chain, and each other chain runs only the layers past its longest prefix
    already computed (each node of the prefix trie once). Without gradients a depth of weight 0 is not run."""
    model = make_supernet("BertForSequenceClassification", num_hidden_layers=6)
    model.search_space = dataclasses.replace(model.search_space, **rule)
    space = model.search_space
    model.set_subnet(space.smallest())  # shrinks the layers it keeps: the mixture must run them at full size
    chains = [space.layers_for(d) for d in space.num_hidden_layers]
    trie_nodes = len({chain[:p] for chain in chains for p in range(1, len(chain) + 1)})
    assert trie_nodes > max(space.num_hidden_layers)  # some chain is not a prefix of the deepest
    batch = {**random_batch(), "labels": torch.tensor([0, 1, 2])}
    calls = []
    hooks = [layer.register_forward_hook(lambda *args: calls.append(1)) for layer in model.elastic_layers()]
    try:
        arch = ArchitectureParameters(space, init_std=0.1)
        with MixedForward(model) as mixed:
            mixed.weights = arch.weights()
            model(**batch).loss.backward()
        assert len(calls) == trie_nodes
        assert arch.num_hidden_layers.grad.abs().min() > 0  # every depth choice reaches the loss
        for seed in range(8):
            subnet = space.sample(seed=seed)
            with torch.no_grad():
                with model.subnet(subnet):
                    expected = model(**batch)
                calls.clear()
                with MixedForward(model, ArchitectureWeights.one_hot(space, subnet)):
                    actual = model(**batch)
            assert_outputs_close(actual, expected, atol=1e-5)
            deepest = space.layers_for(max(space.num_hidden_layers))
            shared = {subnet.layers[:p] for p in range(subnet.num_hidden_layers + 1)} & {
                deepest[:p] for p in range(len(deepest) + 1)
            }
            assert len(calls) == len(deepest) + subnet.num_hidden_layers - (len(shared) - 1)
        assert model.active_subnet == space.smallest()
    finally:
        for hook in hooks:
            hook.remove()


def test_mixed_forward_restores_the_active_subnet_and_removes_its_hooks():
    model = make_supernet("BertForSequenceClassification")
    subnet = SUBNETS[0]
    model.set_subnet(subnet)
    batch = random_batch()
    with torch.no_grad():
        before = model(**batch).logits
        with MixedForward(model, ArchitectureParameters(model.search_space).weights()):
            model(**batch)
        torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)
    assert model.active_subnet == subnet
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


@pytest.mark.parametrize("rule", list(LAYER_RULES))
def test_expected_macs_equals_count_macs_for_one_hot_weights_and_is_differentiable(rule):
    model = set_layer_rule(make_supernet("BertForSequenceClassification"), rule)
    space = model.search_space
    for subnet in [*(with_space_layers(space, s) for s in SUBNETS), space.smallest(), space.largest()]:
        weights = ArchitectureWeights.one_hot(space, subnet)
        assert expected_macs(model, weights, sequence_length=16).item() == count_macs(model, subnet, 16)
    arch = ArchitectureParameters(space)
    macs = expected_macs(model, arch.weights(), sequence_length=16)
    assert count_macs(model, space.smallest(), 16) < macs.item() < count_macs(model, space.largest(), 16)
    macs.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch.parameters())


@pytest.mark.parametrize("rule", list(LAYER_RULES))
def test_gradients_reach_the_weights_and_the_architecture_parameters(rule):
    model = set_layer_rule(make_supernet("BertForSequenceClassification"), rule).train()
    for parametrization in ("softmax", "dirichlet"):
        model.zero_grad()
        arch = ArchitectureParameters(model.search_space, parametrization, init_std=0.1)
        generator = torch.Generator().manual_seed(0)
        with MixedForward(model, arch.weights(sample=parametrization == "dirichlet", generator=generator)):
            loss = model(**random_batch(), labels=torch.tensor([0, 1, 2])).loss
        loss.backward()
        for name, p in arch.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        layer = model.elastic_layers()[-1]
        assert layer.neuron_projection().weight.grad.abs().sum() > 0
        assert layer.head_projection().weight.grad.abs().sum() > 0
        assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_dirichlet_samples_are_seeded_by_the_generator():
    arch = ArchitectureParameters(make_supernet("BertModel").search_space, "dirichlet")
    first = arch.weights(sample=True, generator=torch.Generator().manual_seed(3)).intermediate_size
    again = arch.weights(sample=True, generator=torch.Generator().manual_seed(3)).intermediate_size
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first.sum(-1), torch.ones(first.shape[0]))


# ----------------------------------------------------------------------------------------------------------------
# a synthetic task with planted weights: every head, FFN neuron, layer and hidden channel pushes the pooled output
# toward class 0, the label of every example, so more of each lowers the loss: the largest subnet is best.
def teacher_task(n: int = 48, seed: int = 0):
    model = make_supernet("BertForSequenceClassification", seed=seed, num_labels=2)
    hidden = model.config.hidden_size
    direction = torch.tensor([1.0, -1.0] * (hidden // 2))  # (hidden,) zero mean over every even prefix: survives LN
    with torch.no_grad():
        for layer in model.elastic_layers():
            attention = layer.attention.self
            attention.value.bias.fill_(1.0)  # every head outputs ~1 in each channel
            layer.head_projection().weight.copy_(0.01 * direction[:, None].expand_as(layer.head_projection().weight))
            layer.intermediate.dense.bias.fill_(2.0)  # every neuron active
            neuron = layer.neuron_projection().weight
            neuron.copy_(0.004 * direction[:, None].expand_as(neuron))
        model.bert.pooler.dense.weight.copy_(torch.eye(hidden))
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.copy_(torch.stack([direction, -direction]) * 0.05)
        model.classifier.bias.zero_()
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (n, 8), generator=generator)  # (n, T)
    rows = {"input_ids": input_ids.tolist(), "attention_mask": [[1] * 8] * n, "labels": [0] * n}
    return model, datasets.Dataset.from_dict(rows)


def search_args(tmp_path, **overrides) -> GradientSearchArguments:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=30,
        per_device_train_batch_size=16,
        learning_rate=1e-5,
        arch_learning_rate=0.1,
        arch_weight_decay=0.0,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=10,
        seed=0,
        macs_sequence_length=8,
    )
    return GradientSearchArguments(**{**defaults, **overrides})


@pytest.mark.parametrize("rule", ["first", "spread"])
@pytest.mark.parametrize("optimizer", ["darts", "drnas"])
def test_both_optimizers_find_the_best_subnet_and_both_selections_pick_it(tmp_path, optimizer, rule):
    model, data = teacher_task()
    set_layer_rule(model, rule)
    largest = model.search_space.largest()
    trainer = GradientSearchTrainer(
        model=model, args=search_args(tmp_path, arch_optimizer=optimizer), train_dataset=data, arch_dataset=data
    )
    trainer.train()
    assert trainer.arch_parameters.argmax_subnet() == largest
    assert trainer.select_subnet("argmax") == largest
    history = []
    assert trainer.select_subnet("perturbation", num_eval_batches=3, tuning_steps=1, history=history) == largest
    assert [h["dimension"] for h in history[:3]] == ["num_hidden_layers", "hidden_size", "num_attention_heads[0]"]
    logs = [entry for entry in trainer.state.log_history if "arch_loss" in entry]
    assert logs and all(0 < entry["expected_macs_ratio"] <= 1 for entry in logs)


@pytest.mark.parametrize("optimizer", ["darts", "drnas"])
def test_a_resource_penalty_makes_the_smallest_subnet_best(tmp_path, optimizer):
    model, data = teacher_task()
    args = search_args(tmp_path, arch_optimizer=optimizer, resource_penalty=50.0, learning_rate=0.0)
    trainer = GradientSearchTrainer(model=model, args=args, train_dataset=data, arch_dataset=data)
    trainer.train()
    assert trainer.arch_parameters.argmax_subnet() == model.search_space.smallest()


@pytest.mark.parametrize("rule", list(LAYER_RULES))
def test_selection_respects_a_mac_budget(rule):
    model, data = teacher_task()
    space = set_layer_rule(model, rule).search_space
    # Weights that prefer the largest subnet everywhere; the budget must still hold.
    weights = ArchitectureWeights.one_hot(space, space.largest())
    weights = ArchitectureWeights(**{name: 0.7 * w + 0.3 / w.shape[-1] for name, w in weights.items()})
    full = count_macs(model, model.max_subnet(), 8)
    batches = [{k: torch.tensor(v) for k, v in data[i : i + 16].items()} for i in range(0, 48, 16)]
    for ratio in (0.3, 0.5, 0.8):
        for subnet in (
            select_argmax(model, weights, max_macs_ratio=ratio, sequence_length=8),
            perturbation_select(
                model,
                weights,
                batches,
                batches,
                tuning_steps=1,
                max_macs_ratio=ratio,
                sequence_length=8,
                show_progress=False,
            ),
        ):
            space.validate(subnet)  # the rule's layers included
            assert count_macs(model, subnet, 8) <= ratio * full
    assert select_argmax(model, weights, sequence_length=8) == space.largest()  # no budget: the argmax


@pytest.mark.parametrize("rule", list(LAYER_RULES))
def test_the_selected_subnet_extracts_and_reloads(tmp_path, rule):
    model = set_layer_rule(make_supernet("BertForSequenceClassification"), rule)
    arch = ArchitectureParameters(model.search_space, init_std=1.0, seed=4)
    subnet = select_argmax(model, arch, sequence_length=8)
    assert subnet == arch.argmax_subnet()
    model.search_space.validate(subnet)
    assert subnet.layers == model.search_space.layers_for(subnet.num_hidden_layers)
    small = model.extract_subnet(subnet)
    small.save_pretrained(tmp_path / "subnet")
    kwargs = {} if small.config.model_type == "bert" else {"trust_remote_code": True}
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "subnet", **kwargs).eval()
    batch = random_batch()
    with torch.no_grad(), model.subnet(subnet):
        expected = model(**batch)
        assert_outputs_close(small.eval()(**batch), expected)
        assert_outputs_close(reloaded(**batch), expected)
        with MixedForward(model, ArchitectureWeights.one_hot(model.search_space, subnet)):
            assert_outputs_close(model(**batch), expected)


def test_architecture_parameters_save_and_load(tmp_path):
    space = make_supernet("BertModel").search_space
    arch = ArchitectureParameters(space, "dirichlet", init_std=0.5, seed=1)
    arch.save_pretrained(tmp_path / "arch")
    loaded = ArchitectureParameters.from_pretrained(tmp_path / "arch")
    assert loaded.parametrization == "dirichlet" and loaded.search_space == space
    for (name, p), (_, q) in zip(arch.named_parameters(), loaded.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    assert loaded.argmax_subnet() == arch.argmax_subnet()
    with pytest.raises(FileNotFoundError, match="architecture_config.json"):
        ArchitectureParameters.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# checkpoints
def test_checkpoints_carry_the_architecture_and_resume_identically(tmp_path):
    def run(max_steps, resume=None):
        model, data = teacher_task()
        args = search_args(
            tmp_path,
            arch_optimizer="drnas",
            max_steps=max_steps,
            save_strategy="steps",
            save_steps=4,
            learning_rate=1e-4,
        )
        trainer = GradientSearchTrainer(model=model, args=args, train_dataset=data, arch_dataset=data)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(8)
    checkpoint = tmp_path / "out" / "checkpoint-4"
    assert (checkpoint / ARCHITECTURE_DIR_NAME / "architecture.safetensors").is_file()
    assert (checkpoint / ARCH_STATE_NAME).is_file()
    assert SubnetConfig.load(checkpoint / "argmax_subnet.json") in full.supernet.search_space
    resumed = run(8, resume=str(checkpoint))
    for (name, p), (_, q) in zip(
        full.arch_parameters.named_parameters(), resumed.arch_parameters.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    for (name, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    full.save_model(str(tmp_path / "final"))
    assert json.loads((tmp_path / "final" / "argmax_subnet.json").read_text())["num_hidden_layers"] >= 1
    assert os.path.isdir(tmp_path / "final" / ARCHITECTURE_DIR_NAME)


# ----------------------------------------------------------------------------------------------------------------
# bad input
def test_bad_input_gives_clear_errors(tmp_path):
    model, data = teacher_task()
    space = model.search_space
    with pytest.raises(ValueError, match=r"Unknown arch_optimizer 'adam'; allowed: \['darts', 'drnas'\]"):
        search_args(tmp_path, arch_optimizer="adam")
    with pytest.raises(ValueError, match=r"`target_macs_ratio`=1.5 is out of range"):
        search_args(tmp_path, target_macs_ratio=1.5)
    with pytest.raises(ValueError, match="`resource_penalty` must be"):
        search_args(tmp_path, resource_penalty=-1.0)
    with pytest.raises(TypeError, match="needs an elastic supernet.*BertForSequenceClassification"):
        MixedForward(BertForSequenceClassification(tiny_bert_config()))
    with pytest.raises(TypeError, match="GradientSearchTrainer searches an elastic supernet"):
        GradientSearchTrainer(model=BertForSequenceClassification(tiny_bert_config()), args=search_args(tmp_path))
    with pytest.raises(TypeError, match="`args` must be GradientSearchArguments"):
        GradientSearchTrainer(model=model, args=transformers.TrainingArguments(str(tmp_path)))
    with pytest.raises(ValueError, match="need their own split"):
        GradientSearchTrainer(model=model, args=search_args(tmp_path), train_dataset=data)
    with pytest.raises(ValueError, match="needs parametrization='dirichlet'"):
        GradientSearchTrainer(
            model=model,
            args=search_args(tmp_path, arch_optimizer="drnas"),
            arch_parameters=ArchitectureParameters(space),
            arch_dataset=data,
        )
    with pytest.raises(ValueError, match="Unknown parametrization 'gumbel'"):
        ArchitectureParameters(space, "gumbel")
    with pytest.raises(ValueError, match="sample=True needs parametrization='dirichlet'"):
        ArchitectureParameters(space).weights(sample=True)
    with pytest.raises(ValueError, match=r"`max_macs_ratio`=1.2 is out of range.*0 < max_macs_ratio <= 1"):
        select_argmax(model, ArchitectureParameters(space), max_macs_ratio=1.2)
    with pytest.raises(ValueError, match=r"`max_macs_ratio`=0.01 is below the smallest subnet"):
        select_argmax(model, ArchitectureParameters(space), max_macs_ratio=0.01, sequence_length=8)
    with pytest.raises(ValueError, match=r"Weights of `intermediate_size` have shape \(3, 2\)"):
        weights = ArchitectureParameters(space).weights()
        weights.intermediate_size = weights.intermediate_size[:, :2]
        expected_macs(model, weights)
    with pytest.raises(ValueError, match="MixedForward has no `weights`"), MixedForward(model):
        model(**random_batch())
    with pytest.raises(ValueError, match="`eval_batches` is empty"):
        perturbation_select(model, ArchitectureParameters(space), [])
    trainer = GradientSearchTrainer(model=model, args=search_args(tmp_path), train_dataset=data, arch_dataset=data)
    with pytest.raises(ValueError, match=r"Unknown selection method 'best'; allowed: \['argmax', 'perturbation'\]"):
        trainer.select_subnet("best")


@pytest.mark.parametrize("rule", list(LAYER_RULES))
@pytest.mark.parametrize("family", ["vit", "beit"])
def test_one_hot_mixture_equals_the_subnet_for_vision_models(family, rule):
    """The mixture works on the shared layer protocol: ViT and BEiT (relative bias, layer scale, mean pooling) too,
    hidden size included."""
    from hf_nas import (
        ElasticBeitConfig,
        ElasticBeitForImageClassification,
        ElasticViTConfig,
        ElasticViTForImageClassification,
    )

    kwargs = dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    if family == "vit":
        model = ElasticViTForImageClassification(ElasticViTConfig(**kwargs, num_labels=3))
    else:
        config = ElasticBeitConfig(
            **kwargs, num_labels=3, use_relative_position_bias=True, use_mean_pooling=True, layer_scale_init_value=0.5
        )
        model = ElasticBeitForImageClassification(config)
    set_layer_rule(model, rule).eval()
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    space = model.search_space
    for subnet in [space.smallest(), space.largest(), *(space.sample(seed=s) for s in range(4))]:
        with torch.no_grad(), model.subnet(subnet):
            expected = model(pixel_values=pixel_values).logits
        with MixedForward(model) as mixed, torch.no_grad():
            mixed.weights = ArchitectureWeights.one_hot(space, subnet)
            actual = model(pixel_values=pixel_values).logits
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def _saved_activation_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while `fn` runs: the training-memory footprint."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def test_the_mixture_is_one_forward_with_the_memory_of_the_largest_subnet():
    """Each layer runs once per mixed forward, and the activations saved for backward stay close to the largest
    subnet's: 1.15x with a fixed hidden size, 1.7x with three hidden sizes (their LayerNorms are superposed), where
    one forward per head choice alone would save 4x."""
    model = make_supernet("BertForSequenceClassification").train()
    batch = {**random_batch(batch_size=4, seq_len=32), "labels": torch.tensor([0, 1, 2, 0])}
    largest = _saved_activation_bytes(lambda: model(**batch).loss)
    calls = []
    hooks = [layer.register_forward_hook(lambda *args: calls.append(1)) for layer in model.elastic_layers()]
    try:
        for space, limit in ((model.search_space.narrow(hidden_size=[32]), 1.25), (model.search_space, 2.0)):
            model.search_space = space
            arch = ArchitectureParameters(space)  # uniform weights: every choice is in the mixture
            calls.clear()
            with MixedForward(model) as mixed:
                mixed.weights = arch.weights()
                saved = _saved_activation_bytes(lambda: model(**batch).loss)
            assert len(calls) == model.config.num_hidden_layers
            assert saved <= limit * largest, (saved / largest, limit)
    finally:
        for hook in hooks:
            hook.remove()


# ----------------------------------------------------------------------------------------------------------------
# image supernets: the same search on `pixel_values`, with costs at an image size
VISION_FAMILIES = ["vit", "beit"]


def tiny_vision_supernet(family: str, seed: int = 0):
    """A tiny random ViT or BEiT classifier (hidden 32, 2 layers, 4 heads, 32 px images of 8 px patches); BEiT with
    relative position bias, layer scale and mean pooling."""
    torch.manual_seed(seed)
    kwargs = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    if family == "vit":
        return ElasticViTForImageClassification(ElasticViTConfig(**kwargs)).eval()
    config = ElasticBeitConfig(
        **kwargs, use_relative_position_bias=True, use_mean_pooling=True, layer_scale_init_value=0.5
    )
    return ElasticBeitForImageClassification(config).eval()


def image_batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(n, 3, 32, 32, generator=generator)  # (n, C, H, W)
    return {"pixel_values": pixel_values, "labels": torch.arange(n) % 3}


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_vision_mixed_forward_reaches_every_parameter_and_equals_the_one_hot_subnet(family):
    model = tiny_vision_supernet(family).train()
    space = model.search_space
    arch = ArchitectureParameters(space, init_std=0.1)
    with MixedForward(model, arch.weights()):
        model(**image_batch()).loss.backward()
    for name, p in arch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.elastic_layers()[-1].neuron_projection().weight.grad.abs().sum() > 0
    model.eval()
    pixel_values = image_batch()["pixel_values"]
    for subnet in (space.smallest(), space.largest(), space.sample(seed=1)):
        with torch.no_grad():
            with model.subnet(subnet):
                expected = model(pixel_values=pixel_values).logits
            with MixedForward(model, ArchitectureWeights.one_hot(space, subnet)):
                actual = model(pixel_values=pixel_values).logits
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert model.active_subnet == model.max_subnet()


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_vision_expected_macs_equals_count_macs_for_one_hot_weights(family):
    model = tiny_vision_supernet(family)
    space = model.search_space
    subnets = [space.smallest(), space.largest(), *(space.sample(seed=s) for s in range(4))]
    for image_size in (None, 16, (16, 32)):
        for subnet in subnets:
            weights = ArchitectureWeights.one_hot(space, subnet)
            macs = expected_macs(model, weights, image_size=image_size, batch_size=2).item()
            assert macs == count_macs(model, subnet, image_size=image_size, batch_size=2), (image_size, subnet)
    arch = ArchitectureParameters(space)
    macs = expected_macs(model, arch.weights())
    assert count_macs(model, space.smallest()) < macs.item() < count_macs(model, space.largest())
    macs.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch.parameters())
    with pytest.raises(ValueError, match="`sequence_length` is for text models"):
        expected_macs(model, arch.weights(), sequence_length=16)


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_vision_selection_respects_a_mac_budget(family):
    model = tiny_vision_supernet(family)
    space = model.search_space
    # Weights that prefer the largest subnet everywhere; the budget must still hold.
    weights = ArchitectureWeights.one_hot(space, space.largest())
    weights = ArchitectureWeights(**{name: 0.7 * w + 0.3 / w.shape[-1] for name, w in weights.items()})
    full = count_macs(model, model.max_subnet())
    smallest = count_macs(model, space.smallest()) / full
    batches = [image_batch(seed=s) for s in range(2)]
    for ratio in (smallest + 0.1 * (1 - smallest), smallest + 0.5 * (1 - smallest)):
        argmax = select_argmax(model, weights, max_macs_ratio=ratio)
        perturbation = perturbation_select(model, weights, batches, max_macs_ratio=ratio, show_progress=False)
        for subnet in (argmax, perturbation):
            space.validate(subnet)
            assert count_macs(model, subnet) <= ratio * full
    assert select_argmax(model, weights) == space.largest()  # no budget: the argmax


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_gradient_search_trainer_runs_on_vision_models(tmp_path, family):
    model = tiny_vision_supernet(family)
    space = model.search_space
    batch = image_batch(n=8)
    data = datasets.Dataset.from_dict({k: v.tolist() for k, v in batch.items()})
    args = search_args(
        tmp_path,
        max_steps=3,
        per_device_train_batch_size=4,
        logging_steps=1,
        macs_sequence_length=None,  # images: MACs at the config's image size
        resource_penalty=1.0,
        target_macs_ratio=0.6,
    )
    trainer = GradientSearchTrainer(model=model, args=args, train_dataset=data, arch_dataset=data)
    assert trainer.macs_inputs == {"image_size": None}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "arch_loss" in entry]
    assert len(logs) == 3 and all(0 < entry["expected_macs_ratio"] <= 1 for entry in logs)
    subnet = trainer.select_subnet("argmax")
    assert subnet in space
    assert count_macs(model, subnet) <= 0.6 * count_macs(model, model.max_subnet())
    assert trainer.select_subnet("perturbation", num_eval_batches=1, tuning_steps=1) in space
    with pytest.raises(ValueError, match=f"`macs_sequence_length`=8 does not apply to this {family} model"):
        GradientSearchTrainer(model=model, args=search_args(tmp_path), train_dataset=data, arch_dataset=data)
