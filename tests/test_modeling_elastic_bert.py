"""Elastic BERT supernets: vanilla checkpoints load without key mapping and the largest subnet is the vanilla model;
subnets are set, scoped and reset; a saved supernet reloads with its search space."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2Model,
    ViTConfig,
    ViTModel,
)

from hf_nas import (
    ElasticBertConfig,
    ElasticBertForMaskedLM,
    ElasticBertForSequenceClassification,
    ElasticBertModel,
    SearchSpace,
    SubnetConfig,
)

from .conftest import (
    ATTN_IMPLEMENTATIONS,
    HEAD_CLASSES,
    HEAD_NAMES,
    TINY,
    assert_outputs_close,
    make_supernet,
    make_vanilla,
    output_tensors,
    random_batch,
    tiny_elastic_config,
)

SUBNET = SubnetConfig(num_hidden_layers=2, num_attention_heads=(3, 1), intermediate_size=(16, 48), hidden_size=24)


def labels_for(head: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Labels of each head, so the test also covers the loss."""
    B, T = batch["input_ids"].shape
    g = torch.Generator().manual_seed(1)
    if head == "BertForSequenceClassification":
        return {"labels": torch.randint(0, TINY["num_labels"], (B,), generator=g)}
    if head == "BertForTokenClassification":
        return {"labels": torch.randint(0, TINY["num_labels"], (B, T), generator=g)}
    if head == "BertForQuestionAnswering":
        return {
            "start_positions": torch.randint(0, T, (B,), generator=g),
            "end_positions": torch.randint(0, T, (B,), generator=g),
        }
    if head == "BertForMaskedLM":
        labels = torch.randint(0, TINY["vocab_size"], (B, T), generator=g)
        labels[:, ::2] = -100
        return {"labels": labels}
    return {}


def load_supernet(folder, head: str, attn_implementation: str):
    elastic_class = HEAD_CLASSES[head][1]
    model, info = elastic_class.from_pretrained(
        folder, attn_implementation=attn_implementation, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(model) is elastic_class
    assert type(model.config) is ElasticBertConfig and model.config.model_type == "elastic_bert"
    assert model.config._attn_implementation == attn_implementation
    return model.eval()


# ------------------------------------------------------------------------------------------------------------------
# largest subnet == vanilla
@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_vanilla_checkpoint_loads_and_full_size_equals_vanilla(tmp_path, head, attn_implementation):
    make_vanilla(head).save_pretrained(tmp_path)
    vanilla = HEAD_CLASSES[head][0].from_pretrained(tmp_path, attn_implementation=attn_implementation).eval()
    supernet = load_supernet(tmp_path, head, attn_implementation)
    assert supernet.active_subnet == supernet.max_subnet() == SubnetConfig.uniform(3, 4, 64, 32)
    assert supernet.search_space == SearchSpace.from_model_config(vanilla.config)
    # Same parameter names and values.
    vanilla_state, supernet_state = vanilla.state_dict(), supernet.state_dict()
    assert vanilla_state.keys() == supernet_state.keys()
    assert all(torch.equal(vanilla_state[k], supernet_state[k]) for k in vanilla_state)

    batch = random_batch()
    inputs = {**batch, **labels_for(head, batch)}
    with torch.no_grad():
        expected = vanilla(**inputs)
        actual = supernet(**inputs)
    assert_outputs_close(actual, expected, atol=1e-5)
    if head != "BertModel":
        assert "loss" in actual
    # A subnet changes the outputs, and resetting gives the vanilla outputs back. A vanilla checkpoint gets the default
    # space, whose layer rule picks the kept layers: build the subnet from the space.
    subnet = supernet.search_space.subnet(2, SUBNET.num_attention_heads, SUBNET.intermediate_size, SUBNET.hidden_size)
    with supernet.subnet(subnet), torch.no_grad():
        small = supernet(**inputs)
    pairs = zip(output_tensors(small).values(), output_tensors(expected).values(), strict=True)
    assert any(s.shape != e.shape or not torch.allclose(s, e) for s, e in pairs)
    with torch.no_grad():
        assert_outputs_close(supernet(**inputs), expected, atol=1e-5)


def test_masked_lm_decoder_is_tied_to_the_word_embeddings(tmp_path):
    make_vanilla("BertForMaskedLM").save_pretrained(tmp_path)
    model = load_supernet(tmp_path, "BertForMaskedLM", "eager")
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias


@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_hidden_states_and_attentions_at_full_size_equal_vanilla(tmp_path, attn_implementation):
    make_vanilla("BertModel").save_pretrained(tmp_path)
    vanilla = HEAD_CLASSES["BertModel"][0].from_pretrained(tmp_path, attn_implementation=attn_implementation).eval()
    supernet = load_supernet(tmp_path, "BertModel", attn_implementation)
    batch = random_batch()
    # sdpa computes no attention probabilities: only eager returns them.
    kwargs = {"output_hidden_states": True, "output_attentions": attn_implementation == "eager"}
    with torch.no_grad():
        expected = vanilla(**batch, **kwargs)
        actual = supernet(**batch, **kwargs)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 4
    pairs = list(zip(actual.hidden_states, expected.hidden_states, strict=True))
    if attn_implementation == "eager":
        assert len(actual.attentions) == len(expected.attentions) == 3
        pairs += list(zip(actual.attentions, expected.attentions, strict=True))
    for a, e in pairs:
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["BertModel", "BertForSequenceClassification"])
def test_hidden_states_and_attentions_of_a_subnet(head):
    model = make_supernet(head, attn_implementation="eager")
    batch = random_batch()
    model.set_subnet(SUBNET)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    B, T = batch["input_ids"].shape
    assert len(out.hidden_states) == SUBNET.num_hidden_layers + 1
    assert all(h.shape == (B, T, SUBNET.hidden_size) for h in out.hidden_states)
    assert len(out.attentions) == SUBNET.num_hidden_layers
    assert [a.shape for a in out.attentions] == [(B, heads, T, T) for heads in SUBNET.num_attention_heads]
    # Each attention row is a distribution that ignores padded keys.
    for attentions in out.attentions:
        torch.testing.assert_close(attentions.sum(-1), torch.ones(attentions.shape[:-1]))
        assert not attentions[2, :, :, batch["attention_mask"][2] == 0].any()
    if head == "BertModel":
        torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


# ------------------------------------------------------------------------------------------------------------------
# saving and reloading the supernet
def test_saved_supernet_reloads_with_auto_class_and_search_space(tmp_path):
    supernet = make_supernet("BertForSequenceClassification")
    narrowed = supernet.search_space.narrow(
        num_hidden_layers=[2, 3], hidden_size=[24, 32], intermediate_size=[32, 48, 64]
    )
    supernet.search_space = narrowed
    supernet.set_subnet(SubnetConfig(2, (3, 1), (32, 48), 24))  # the active subnet is not part of the checkpoint
    supernet.save_pretrained(tmp_path / "supernet")
    saved = json.loads((tmp_path / "supernet" / "config.json").read_text())
    assert saved["model_type"] == "elastic_bert" and saved["search_space"] == narrowed.to_dict()

    assert type(AutoConfig.from_pretrained(tmp_path / "supernet")) is ElasticBertConfig
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "supernet", attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(reloaded) is ElasticBertForSequenceClassification
    assert reloaded.search_space == narrowed
    assert reloaded.active_subnet == reloaded.max_subnet()
    reloaded.eval()

    batch = random_batch()
    supernet.reset_supernet()
    with torch.no_grad():
        assert_outputs_close(reloaded(**batch), supernet(**batch), atol=0)
        for seed in range(3):
            subnet = narrowed.sample(seed=seed)
            with supernet.subnet(subnet), reloaded.subnet(subnet):
                assert_outputs_close(reloaded(**batch), supernet(**batch), atol=0)
    with pytest.raises(ValueError, match=r"`hidden_size`=16 .*allowed: \[24, 32\]"):
        reloaded.set_subnet(SubnetConfig.uniform(2, 2, 32, 16))


def test_auto_classes_still_load_vanilla_checkpoints_as_vanilla(tmp_path):
    """Importing hf_nas registers the elastic types; it must not hijack plain `bert` checkpoints."""
    make_vanilla("BertForSequenceClassification").save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(model) is HEAD_CLASSES["BertForSequenceClassification"][0]


@pytest.mark.parametrize(
    ("checkpoint", "model_type"),
    [
        (
            lambda: ViTModel(
                ViTConfig(
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=4,
                    intermediate_size=37,
                    image_size=8,
                    patch_size=4,
                )
            ),
            "vit",
        ),
        (
            lambda: GPT2Model(
                GPT2Config(
                    n_embd=32, n_layer=1, n_head=4, vocab_size=99, n_positions=16, bos_token_id=0, eos_token_id=0
                )
            ),
            "gpt2",
        ),
    ],
)
def test_non_bert_checkpoint_is_rejected(tmp_path, checkpoint, model_type):
    checkpoint().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"is a `{model_type}` checkpoint.*\['bert', 'elastic_bert'\]"):
        ElasticBertForSequenceClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"`{model_type}` checkpoint"):
        ElasticBertConfig.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------------------------
# config validation
def test_config_default_search_space_and_validation():
    config = ElasticBertConfig(**TINY)  # the default space, default layer rule included
    assert SearchSpace.from_dict(config.search_space) == SearchSpace.from_model_config(config)
    assert config.attention_head_size == 8
    narrowed = SearchSpace.from_dict(config.search_space).narrow(hidden_size=[32])
    assert ElasticBertConfig(**TINY, search_space=narrowed.to_dict()).search_space == narrowed.to_dict()
    too_big = SearchSpace((3, 4), (4,), (64,), (32,), attention_head_size=8)
    with pytest.raises(
        ValueError, match=r"search_space.num_hidden_layers choices \[4\] exceed the supernet's num_hidden_layers=3"
    ):
        tiny_elastic_config(search_space=too_big.to_dict())
    other_head_size = SearchSpace((3,), (4,), (64,), (32,), attention_head_size=16)
    with pytest.raises(ValueError, match=r"attention_head_size=16 differs .* = 8"):
        tiny_elastic_config(search_space=other_head_size.to_dict())
    with pytest.raises(ValueError, match="encoder checkpoints only"):
        tiny_elastic_config(is_decoder=True)


# ------------------------------------------------------------------------------------------------------------------
# setting, scoping and resetting subnets
def active_sizes(model: ElasticBertModel) -> list[tuple[int, ...]]:
    """The active size of every elastic module, so a test can see that nothing changed."""
    sizes = [model.encoder.active_layers]
    for module in model.modules():
        for attr in ("active_in_features", "active_out_features", "active_features", "active_embedding_dim"):
            if hasattr(module, attr):
                sizes.append((attr, getattr(module, attr)))
    return sizes


def test_set_subnet_sets_every_module():
    model = make_supernet("BertForSequenceClassification")
    model.set_subnet(SUBNET)
    assert model.active_subnet == SUBNET
    bert = model.bert
    assert bert.encoder.active_layers == (0, 1)
    assert bert.embeddings.word_embeddings.active_embedding_dim == 24
    assert bert.embeddings.LayerNorm.active_features == 24
    for layer, heads, ffn in zip(
        bert.encoder.layer[:2], SUBNET.num_attention_heads, SUBNET.intermediate_size, strict=True
    ):
        assert layer.attention.self.active_num_attention_heads == heads
        assert layer.attention.self.query.active_in_features == 24
        assert (layer.attention.output.dense.active_in_features, layer.attention.output.dense.active_out_features) == (
            heads * 8,
            24,
        )
        assert (layer.intermediate.dense.active_in_features, layer.intermediate.dense.active_out_features) == (24, ffn)
        assert (layer.output.dense.active_in_features, layer.output.dense.active_out_features) == (ffn, 24)
        assert layer.output.LayerNorm.active_features == layer.attention.output.LayerNorm.active_features == 24
    assert (bert.pooler.dense.active_in_features, bert.pooler.dense.active_out_features) == (24, 24)
    assert (model.classifier.active_in_features, model.classifier.active_out_features) == (24, TINY["num_labels"])
    model.reset_supernet()
    assert model.active_subnet == model.max_subnet()
    assert all(layer.attention.self.active_num_attention_heads == 4 for layer in bert.encoder.layer)
    assert model.classifier.active_in_features == 32 and bert.encoder.active_layers == (0, 1, 2)


def test_subnet_context_restores_the_previous_subnet():
    model = make_supernet("BertForSequenceClassification")
    batch = random_batch()
    other = model.search_space.smallest()
    with torch.no_grad():
        full = model(**batch).logits
        model.set_subnet(SUBNET)
        before = model(**batch).logits
        with model.subnet(other) as scoped:
            assert scoped is model and model.active_subnet == other
            inside = model(**batch).logits
            with model.subnet(model.search_space.largest()):
                torch.testing.assert_close(model(**batch).logits, full, atol=0, rtol=0)
            assert model.active_subnet == other
        assert model.active_subnet == SUBNET
        torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)
        assert not torch.allclose(inside, before)
        # An error inside the block restores too.
        with pytest.raises(RuntimeError, match="boom"), model.subnet(other):
            raise RuntimeError("boom")
        assert model.active_subnet == SUBNET
        torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)
        model.reset_supernet()
        torch.testing.assert_close(model(**batch).logits, full, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("subnet", "pattern"),
    [
        (SubnetConfig(2, (3, 1), (16, 48), 20), r"`hidden_size`=20 .*allowed: \[16, 24, 32\]"),
        (SubnetConfig(2, (3, 5), (16, 48), 24), r"`num_attention_heads\[1\]`=5 .*allowed: \[1, 2, 3, 4\]"),
        (SubnetConfig(2, (3, 1), (16, 100), 24), r"`intermediate_size\[1\]`=100 .*allowed: \[16, 32, 48, 64\]"),
        (SubnetConfig.uniform(4, 4, 64, 32), r"`num_hidden_layers`=4 .*allowed: \[2, 3\]"),
        (SubnetConfig.uniform(1, 4, 64, 32), r"`num_hidden_layers`=1 .*allowed: \[2, 3\]"),
    ],
)
def test_set_subnet_outside_the_space_raises_and_changes_nothing(subnet, pattern):
    model = make_supernet("BertForSequenceClassification")
    model.set_subnet(SUBNET)
    sizes = active_sizes(model.bert)
    batch = random_batch()
    with torch.no_grad():
        before = model(**batch).logits
    with pytest.raises(ValueError, match=pattern):
        model.set_subnet(subnet)
    with pytest.raises(ValueError, match=pattern), model.subnet(subnet):
        pass
    assert model.active_subnet == SUBNET
    assert active_sizes(model.bert) == sizes
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)
    with pytest.raises(TypeError, match="SubnetConfig"):
        model.set_subnet(SUBNET.to_dict())


def test_base_model_tracks_the_active_subnet():
    """`model.bert` (the base model, itself a supernet) must know the subnet its modules run, so that using it
    directly (here: extracting the encoder of the active subnet) does not silently reset the head model."""
    model = make_supernet("BertForSequenceClassification")
    batch = random_batch()
    subnet = SubnetConfig(2, (1, 2), (16, 32), 32)  # full hidden size: a reset would go unnoticed by the shapes
    model.set_subnet(subnet)
    with torch.no_grad():
        before = model(**batch).logits
    assert model.base_model.active_subnet == subnet
    encoder = model.base_model.extract_subnet(subnet)
    assert model.active_subnet == subnet
    assert model.bert.encoder.active_layers == (0, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)
        with model.subnet(subnet):
            assert_outputs_close(encoder(**batch), model.bert(**batch), atol=1e-5)


def test_narrowing_the_search_space_of_a_model():
    model = make_supernet("BertForSequenceClassification")
    narrowed = model.search_space.narrow(hidden_size=[32])
    model.search_space = narrowed
    assert model.search_space == narrowed and model.config.search_space == narrowed.to_dict()
    with pytest.raises(ValueError, match=r"`hidden_size`=24 .*allowed: \[32\]"):
        model.set_subnet(SUBNET)
    too_big = SearchSpace((2, 3), (4,), (64,), (32, 40), attention_head_size=8)
    with pytest.raises(
        ValueError, match=r"search_space.hidden_size choices \[40\] exceed the supernet's hidden_size=32"
    ):
        model.search_space = too_big
    assert model.search_space == narrowed, "a rejected space leaves the old one"
    with pytest.raises(TypeError, match="must be a SearchSpace"):
        model.search_space = narrowed.to_dict()


# ------------------------------------------------------------------------------------------------------------------
# training through a subnet
def test_backward_through_a_subnet_reaches_only_active_weights():
    model = make_supernet("BertForSequenceClassification").train()
    batch = random_batch()
    model.set_subnet(SUBNET)
    model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
    h = SUBNET.hidden_size
    emb = model.bert.embeddings
    assert emb.word_embeddings.weight.grad[:, :h].any() and not emb.word_embeddings.weight.grad[:, h:].any()
    assert emb.LayerNorm.weight.grad[:h].abs().min() > 0 and not emb.LayerNorm.weight.grad[h:].any()
    for layer, heads, ffn in zip(
        model.bert.encoder.layer[:2], SUBNET.num_attention_heads, SUBNET.intermediate_size, strict=True
    ):
        inner = heads * 8
        for proj in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
            grad = proj.weight.grad
            assert grad[:inner, :h].abs().sum(1).min() > 0
            assert not grad[inner:].any() and not grad[:, h:].any() and not proj.bias.grad[inner:].any()
        grad = layer.attention.output.dense.weight.grad
        assert grad[:h, :inner].abs().sum(1).min() > 0 and not grad[h:].any() and not grad[:, inner:].any()
        grad = layer.intermediate.dense.weight.grad
        assert grad[:ffn, :h].abs().sum(1).min() > 0 and not grad[ffn:].any() and not grad[:, h:].any()
        grad = layer.output.dense.weight.grad
        assert grad[:h, :ffn].abs().sum(1).min() > 0 and not grad[h:].any() and not grad[:, ffn:].any()
        for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
            assert norm.weight.grad[:h].abs().min() > 0 and not norm.weight.grad[h:].any()
            assert not norm.bias.grad[h:].any()
    dropped = model.bert.encoder.layer[2]
    assert all(p.grad is None or not p.grad.any() for p in dropped.parameters())
    grad = model.classifier.weight.grad
    assert grad[:, :h].abs().sum(0).min() > 0 and not grad[:, h:].any()
    assert model.bert.pooler.dense.weight.grad[:h, :h].any() and not model.bert.pooler.dense.weight.grad[h:].any()


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = random_batch()
    grads = []
    for checkpointing in (False, True):
        model = make_supernet("BertForSequenceClassification").train()
        if checkpointing:
            # `activation_checkpointing_enable` in recent transformers, `gradient_checkpointing_enable` at the floor
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
            assert all(layer.gradient_checkpointing for layer in model.bert.encoder.layer)
        model.set_subnet(SUBNET)
        model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=0, msg=name)


def test_inputs_embeds_equal_input_ids():
    model = make_supernet("BertModel")
    batch = random_batch()
    with torch.no_grad(), model.subnet(SUBNET):
        embeds = model.get_input_embeddings()(batch["input_ids"])  # (B, T, h)
        assert embeds.shape[-1] == SUBNET.hidden_size
        from_ids = model(**batch)
        from_embeds = model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        )
    assert_outputs_close(from_embeds, from_ids, atol=1e-6)


def test_masked_lm_subnet_logits_cover_the_vocabulary():
    model = make_supernet("BertForMaskedLM")
    with torch.no_grad(), model.subnet(SUBNET):
        logits = model(**random_batch()).logits
    assert logits.shape == (3, 9, TINY["vocab_size"])
    assert isinstance(model, ElasticBertForMaskedLM)
