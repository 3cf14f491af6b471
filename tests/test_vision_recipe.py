"""The teacher-first recipe on ViT and BEiT: hidden-state distillation at the kept layers of image models, gradient
search through `scripts/gradient_search.py` on an image folder, the fine-tune of `scripts/extract_subnet.py` on images,
and a 2-process torchrun image run that trains the same subnets and weights on both ranks as one process does."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    BeitConfig,
    BeitModel,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

import hf_nas
from hf_nas import SubnetConfig, count_macs
from hf_nas.data import ImageClassificationCollator
from hf_nas.models.supernet import SupernetMixin
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments, get_sampler
from hf_nas.training.distillation import hidden_state_loss

from .test_scripts import COMMON, run
from .test_trainer import DDP_SCRIPT, _failure, _free_port, _load, _run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "cifar10_sample")
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "patch_size": 8,
    "image_size": 32,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
BEIT_EXTRA = {  # drop_path_rate 0: no stochastic depth, so training-mode outputs are deterministic
    "use_relative_position_bias": True,
    "use_mean_pooling": True,
    "layer_scale_init_value": 0.1,
    "drop_path_rate": 0.0,
}
FAMILIES = ["vit", "beit"]


def vanilla_teacher(family: str, num_labels: int = 3):
    """A tiny random vanilla ViT or BEiT classifier (BEiT: per-layer relative position bias, layer scale, mean
    pooling): the fixed teacher."""
    torch.manual_seed(0)
    if family == "vit":
        from transformers import ViTForImageClassification

        model = ViTForImageClassification(ViTConfig(**TINY, num_labels=num_labels))
    else:
        from transformers import BeitForImageClassification

        model = BeitForImageClassification(BeitConfig(**TINY, **BEIT_EXTRA, num_labels=num_labels))
    with torch.no_grad():  # layer scale and biases away from their initial values, so every weight matters
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def supernet_of(teacher, tmp_path):
    """The supernet initialised from the teacher's weights (the teacher-first recipe's starting point)."""
    teacher.save_pretrained(tmp_path / "teacher")
    family = teacher.config.model_type
    cls = hf_nas.ElasticViTForImageClassification if family == "vit" else hf_nas.ElasticBeitForImageClassification
    return cls.from_pretrained(tmp_path / "teacher", attn_implementation="eager")


def images(n: int = 4, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 32, 32, generator=generator)
    return [{"pixel_values": pixels[i], "labels": i % 3} for i in range(n)]


def logged_hidden_loss(supernet, teacher, subnet: SubnetConfig, data: list[dict], tmp_path) -> float:
    """The `loss_hidden` the trainer logs for one step of `subnet` alone, with hidden-state distillation only and a
    learning rate of 0 (the weights do not move)."""
    args = SupernetTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=len(data),
        learning_rate=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        distillation="teacher",
        task_loss_weight=0.0,
        kd_loss_weight=0.0,
        hidden_loss_weight=1.0,
        eval_subnets="",
    )
    trainer = SupernetTrainer(
        model=supernet,
        teacher_model=teacher,
        args=args,
        sampler=get_sampler("fixed", supernet.search_space, subnets=[subnet]),
        train_dataset=data,
        data_collator=ImageClassificationCollator(),
    )
    trainer.train()
    (entry,) = [e for e in trainer.state.log_history if "loss_hidden" in e]
    return float(entry["loss_hidden"])


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_distillation_of_image_models_is_zero_for_the_teachers_own_architecture(family, tmp_path):
    teacher = vanilla_teacher(family)
    supernet = supernet_of(teacher, tmp_path)
    data = images()
    loss = logged_hidden_loss(supernet, teacher, supernet.search_space.largest(), data, tmp_path)
    assert loss == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_distillation_of_image_models_maps_kept_layers_to_the_same_teacher_layers(family, tmp_path):
    """A depth-2 subnet keeping supernet layers 1 and 3 (spread) with a narrower hidden size is distilled at the
    embeddings and at teacher layers 1 and 3, over every token ([CLS] and patches) and its own channels."""
    teacher = vanilla_teacher(family)
    supernet = supernet_of(teacher, tmp_path)
    space = supernet.search_space
    subnet = SubnetConfig(2, [2, 3], [32, 48], 16, layers=(1, 3))
    assert subnet in space and space.layers_for(2) == (1, 3)
    data = images()
    batch = ImageClassificationCollator()(data)
    with torch.no_grad():
        expected_teacher = teacher(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        with supernet.subnet(subnet):
            student = supernet(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
    assert len(student) == 3 and len(expected_teacher) == 5
    assert student[1].shape == (4, 17, 16)  # 16 patches + [CLS], the subnet's 16 channels
    pairs = [(student[0], expected_teacher[0]), (student[1], expected_teacher[2]), (student[2], expected_teacher[4])]
    expected = torch.stack([hidden_state_loss(s, t) for s, t in pairs]).mean().item()
    by_hand = torch.stack([((s - t[..., :16]) ** 2).mean() for s, t in pairs]).mean().item()
    assert expected == pytest.approx(by_hand, rel=1e-5)
    wrong = [(student[1], expected_teacher[1]), (student[2], expected_teacher[2])]  # the first-k mapping
    first_k = torch.stack([hidden_state_loss(s, t) for s, t in [pairs[0], *wrong]]).mean().item()
    assert abs(first_k - expected) > 1e-3 * expected  # the two mappings are told apart
    loss = logged_hidden_loss(supernet, teacher, subnet, data, tmp_path)
    assert loss == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# scripts: gradient search and the extraction fine-tune on an image folder
def save_checkpoint(family: str, folder) -> None:
    """A tiny vanilla backbone and its image processor, as a pretrained checkpoint is saved."""
    torch.manual_seed(0)
    if family == "vit":
        ViTModel(ViTConfig(**TINY), add_pooling_layer=False).save_pretrained(folder)
    else:
        BeitModel(BeitConfig(**TINY, **BEIT_EXTRA)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_search_script_on_an_image_folder_selects_extracts_and_reloads(family, tmp_path):
    checkpoint, out = tmp_path / family, tmp_path / "gradient"
    save_checkpoint(family, checkpoint)
    run(
        "gradient_search.py",
        "--model_name_or_path",
        str(checkpoint),
        "--data_dir",
        SAMPLE,
        "--image_size",
        "16",
        "--output_dir",
        str(out),
        "--max_steps",
        "3",
        "--importance_batches",
        "1",
        "--target_macs_ratio",
        "0.5",
        "--selection",
        "argmax",
        "--extract",
        *COMMON,
    )
    selected = json.loads((out / "selected_subnets.json").read_text())["subnets"]["argmax"]
    supernet = AutoModelForImageClassification.from_pretrained(out).eval()
    assert isinstance(supernet, SupernetMixin)
    subnet = SubnetConfig.from_dict(selected["subnet"])
    full = count_macs(supernet, supernet.max_subnet(), image_size=16)
    assert selected["macs_ratio"] == pytest.approx(count_macs(supernet, subnet, image_size=16) / full, rel=1e-9)
    assert json.loads((out / "subnet-argmax" / "preprocessor_config.json").read_text())["size"] == {
        "height": 16,
        "width": 16,
    }
    config = json.loads((out / "subnet-argmax" / "config.json").read_text())
    reloaded = AutoModelForImageClassification.from_pretrained(
        out / "subnet-argmax", trust_remote_code="auto_map" in config
    ).eval()
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        with supernet.subnet(subnet):
            expected = supernet(pixel_values=pixels, interpolate_pos_encoding=True).logits
        actual = reloaded(pixel_values=pixels, interpolate_pos_encoding=True).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_extract_fine_tunes_an_image_subnet_and_reports_accuracy_before_and_after(tmp_path):
    checkpoint, supernet = tmp_path / "beit", tmp_path / "supernet"
    save_checkpoint("beit", checkpoint)
    run(
        "train_supernet.py",
        "--model_name_or_path",
        str(checkpoint),
        "--data_dir",
        SAMPLE,
        "--image_size",
        "16",
        "--output_dir",
        str(supernet),
        "--recipe",
        "teacher_first",
        "--max_steps",
        "2",
        "--teacher_max_steps",
        "2",
        "--do_train",
        "--importance_batches",
        "1",
        *COMMON,
    )
    assert (supernet / "teacher" / "config.json").is_file()
    subnet_json = tmp_path / "subnet.json"
    SubnetConfig(2, [2, 2], [32, 32], 32, layers=(1, 3)).save(subnet_json)
    output = run(
        "extract_subnet.py",
        "--supernet",
        str(supernet),
        "--subnet_json",
        str(subnet_json),
        "--output_dir",
        str(tmp_path / "subnet"),
        "--finetune_steps",
        "2",
        "--finetune_batch_size",
        "8",
        "--data_dir",
        SAMPLE,
        "--skip_latency",
    )
    assert "fine-tune: accuracy" in output
    card = (tmp_path / "subnet" / "README.md").read_text()
    assert "accuracy_without_retraining" in card and "trained alone for 2 steps" in card
    assert "teacher: " in card and "cifar10_sample" in card


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--finetune_steps", "2"], "--finetune_steps needs the data"),
        (["--finetune_steps", "2", "--train_dir", "/no/such/folder"], "--train_dir"),
    ],
)
def test_extract_fine_tune_without_training_data_is_refused(tmp_path, argv, match):
    from hf_nas.commands.extract import main

    supernet = hf_nas.ElasticViTForImageClassification(hf_nas.ElasticViTConfig(**TINY, num_labels=3))
    supernet.save_pretrained(tmp_path / "supernet")
    subnet_json = tmp_path / "subnet.json"
    supernet.search_space.smallest().save(subnet_json)
    args = ["--supernet", str(tmp_path / "supernet"), "--subnet_json", str(subnet_json)]
    with pytest.raises((ValueError, FileNotFoundError, SystemExit), match=match):
        main([*args, "--output_dir", str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------------------
# two processes
@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_image_run_on_two_processes_trains_the_same_subnets_and_weights_as_one(family, tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    result = _run([sys.executable, str(DDP_SCRIPT), str(one_dir), "--model", family])
    assert result.returncode == 0, _failure(result)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(DDP_SCRIPT),
        str(two_dir),
        "--model",
        family,
    ]
    result = _run(command)
    assert result.returncode == 0, _failure(result)
    one = _load(one_dir / "rank0.pt")
    ranks = [_load(two_dir / f"rank{r}.pt") for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and one["world_size"] == 1
    assert ranks[0]["sampled"] == ranks[1]["sampled"] == one["sampled"]
    assert any(s["layers"] != list(range(s["num_hidden_layers"])) for _, _, step in one["sampled"] for s in step)
    for step in range(len(one["input_ids"])):  # each rank read its half of the one process's batch
        torch.testing.assert_close(torch.cat([r["input_ids"][step] for r in ranks]), one["input_ids"][step])
    for name, value in ranks[0]["state_dict"].items():
        torch.testing.assert_close(ranks[1]["state_dict"][name], value, atol=0, rtol=0)
        torch.testing.assert_close(
            value, one["state_dict"][name], atol=1e-4, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )
    hidden = [e["loss_hidden"] for e in one["log_history"] if "loss_hidden" in e]
    assert hidden and all(h > 0 for h in hidden[1:])  # the students were distilled at their kept layers
