"""Resuming ViT and BEiT runs: transformers saves their weights under legacy names, so a Trainer that loads a
checkpoint's raw file skips every encoder weight; hf-nas's trainers read it under the model's own names."""

from __future__ import annotations

import pytest
import torch
from transformers import BeitConfig, BeitForImageClassification, ViTConfig, ViTForImageClassification

import hf_nas
from hf_nas.training import (
    ResumableTrainer,
    SupernetTrainer,
    SupernetTrainingArguments,
    load_checkpoint_weights,
    saved_key_names,
)

from .conftest import make_supernet
from .test_trainer import StopAtStep
from .test_vision_training import TINY_VISION

TINY = {**TINY_VISION, "num_labels": 3}
BEIT = {"drop_path_rate": 0.0, "use_relative_position_bias": True, "layer_scale_init_value": 0.1}
ELASTIC = {
    "vit": (hf_nas.ElasticViTConfig, hf_nas.ElasticViTForImageClassification, {}),
    "beit": (hf_nas.ElasticBeitConfig, hf_nas.ElasticBeitForImageClassification, BEIT),
}
VANILLA = {"vit": (ViTConfig, ViTForImageClassification, {}), "beit": (BeitConfig, BeitForImageClassification, BEIT)}


class Images(torch.utils.data.Dataset):
    """Random 32-px images with 3 labels, the same for every call."""

    def __init__(self, n: int = 32):
        generator = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(n, 3, 32, 32, generator=generator)
        self.labels = torch.randint(0, 3, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.pixels[i], "labels": self.labels[i]}


def args_for(output_dir, cls=SupernetTrainingArguments, **overrides):
    defaults = {
        "max_steps": 4,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "seed": 0,
        "disable_tqdm": True,
    }
    return cls(output_dir=str(output_dir), **{**defaults, **overrides})


def elastic(kind: str):
    config_class, model_class, extra = ELASTIC[kind]
    torch.manual_seed(0)
    return model_class(config_class(**TINY, **extra))


def vanilla(kind: str):
    config_class, model_class, extra = VANILLA[kind]
    torch.manual_seed(0)
    return model_class(config_class(**TINY, **extra))


def assert_same_weights(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    expected_weights, actual_weights = expected.state_dict(), actual.state_dict()
    assert actual_weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        torch.testing.assert_close(actual_weights[name], value, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def straight_killed_resumed(make_trainer, tmp_path):
    """A 4-step run, and the same run killed after its checkpoint at step 2 and resumed by a new trainer on a new
    model: the two trainers that finished."""
    straight = make_trainer(tmp_path / "straight", [])
    straight.train()
    killed = make_trainer(tmp_path / "run", [StopAtStep(2)], save_strategy="steps", save_steps=2)
    killed.train()
    assert killed.state.global_step == 2
    resumed = make_trainer(tmp_path / "run", [], save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    return straight, resumed


@pytest.mark.parametrize("kind", list(ELASTIC))
def test_a_resumed_vision_supernet_run_equals_the_uninterrupted_one(kind, tmp_path):
    """The encoder (saved under legacy names) and the switchable norms' budgets come back: the resumed run ends with
    the uninterrupted run's weights. Loading the raw checkpoint file would have restarted the encoder from the
    initial weights."""

    def trainer(output_dir, callbacks, **overrides):
        args = args_for(
            output_dir,
            sampler="sandwich",
            num_random_subnets=1,
            distillation="inplace",
            switchable_layer_norms="0.75,0.375",
            switchable_norm_learning_rate=1e-2,
            **overrides,
        )
        return SupernetTrainer(model=elastic(kind), args=args, train_dataset=Images(), callbacks=callbacks)

    straight, resumed = straight_killed_resumed(trainer, tmp_path)
    assert_same_weights(resumed.model, straight.model)
    initial = trainer(tmp_path / "initial", []).model
    moved = [n for n, p in initial.named_parameters() if not torch.equal(p, straight.model.get_parameter(n))]
    assert any(".layers." in n for n in moved), "training did not move the encoder: the test would prove nothing"


@pytest.mark.parametrize("kind", list(VANILLA))
def test_resumable_trainer_resumes_a_vanilla_vision_model(kind, tmp_path):
    """`ResumableTrainer` (the teachers' and `hf-nas finetune`'s trainer) resumes a vanilla ViT/BEiT exactly."""
    from transformers import TrainingArguments

    def trainer(output_dir, callbacks, **overrides):
        args = args_for(output_dir, TrainingArguments, **overrides)
        return ResumableTrainer(model=vanilla(kind), args=args, train_dataset=Images(), callbacks=callbacks)

    straight, resumed = straight_killed_resumed(trainer, tmp_path)
    assert_same_weights(resumed.model, straight.model)


def test_load_best_model_at_end_restores_the_best_checkpoints_encoder(tmp_path):
    """`load_best_model_at_end` on a ViT: the model ends with the weights of the best checkpoint (the first one, by a
    metric that only falls), encoder included."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback, TrainingArguments

    class FallingScore(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics["eval_score"] = -float(state.global_step)

    args = args_for(
        tmp_path / "out",
        TrainingArguments,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        save_total_limit=None,
    )
    model = vanilla("vit")
    trainer = ResumableTrainer(
        model=model, args=args, train_dataset=Images(), eval_dataset=Images(8), callbacks=[FallingScore()]
    )
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    best = vanilla("vit")
    load_checkpoint_weights(best, trainer.state.best_model_checkpoint)
    assert_same_weights(trainer.model, best)
    last = load_file(tmp_path / "out" / "checkpoint-4" / "model.safetensors")
    key = "vit.encoder.layer.0.attention.attention.query.weight"
    assert not torch.equal(last[key], trainer.model.vit.layers[0].attention.q_proj.weight), "no training after step 2"


def test_saved_key_names_are_those_save_pretrained_writes(tmp_path):
    from safetensors.torch import load_file

    for kind in ("vit", "beit"):
        model = elastic(kind)
        model.save_pretrained(tmp_path / kind)
        names = saved_key_names(model)
        assert set(names) == set(model.state_dict())
        assert set(names.values()) == set(load_file(tmp_path / kind / "model.safetensors"))
        assert any(k != v for k, v in names.items())
    bert = make_supernet("BertForSequenceClassification")
    assert all(k == v for k, v in saved_key_names(bert).items())


def test_load_checkpoint_weights_refuses_a_folder_without_weights_and_another_models_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no model weights: expected model\.safetensors"):
        load_checkpoint_weights(elastic("vit"), tmp_path)
    elastic("beit").save_pretrained(tmp_path / "beit")
    with pytest.raises(ValueError, match=r"was not saved from this ElasticViTForImageClassification: \d+ weights"):
        load_checkpoint_weights(elastic("vit"), tmp_path / "beit")
    # a supernet with switchable norms does not resume from a checkpoint without them, nor the other way round
    plain = elastic("vit")
    plain.save_pretrained(tmp_path / "plain")
    with_norms = SupernetTrainer(
        model=elastic("vit"),
        args=args_for(tmp_path / "out", switchable_layer_norms="0.5"),
        train_dataset=Images(),
    ).model
    with pytest.raises(ValueError, match=r"weights of the model are not in it \(.*budget_"):
        load_checkpoint_weights(with_norms, tmp_path / "plain")
