"""Supernet training on real CIFAR-10 images (the shipped sample) for ViT and BEiT, and the image pipeline of the
scripts: train_supernet.py -> search_subnets.py -> extract_subnet.py on a tiny random ViT checkpoint."""

from __future__ import annotations

import json
import os
import statistics

import pytest
import torch
from transformers import AutoModelForImageClassification, ViTConfig, ViTImageProcessor, ViTModel

import hf_nas
from hf_nas.data import ImageClassificationCollator, ImageDataArguments, load_image_datasets, prepare_image_datasets
from hf_nas.metrics import build_compute_metrics
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments

from .test_scripts import COMMON, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "cifar10_sample")
TINY_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "patch_size": 8,
    "image_size": 32,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
CONFIGS = {
    "vit": (hf_nas.ElasticViTConfig, hf_nas.ElasticViTForImageClassification),
    "beit": (hf_nas.ElasticBeitConfig, hf_nas.ElasticBeitForImageClassification),
}


def sample_splits(image_size: int = 32):
    """The shipped CIFAR-10 sample (200 training, 100 test images) as `pixel_values` / `labels`."""
    data = ImageDataArguments(data_dir=SAMPLE)
    raw = load_image_datasets(data)
    processor = ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=0.5, image_std=0.5)
    return prepare_image_datasets(raw, processor, data), raw["train"].features["label"].names


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_supernet_training_on_cifar10_images_lowers_the_loss(kind, tmp_path):
    splits, names = sample_splits()
    config_class, model_class = CONFIGS[kind]
    torch.manual_seed(0)
    model = model_class(config_class(**TINY_VISION, num_labels=len(names)))
    args = SupernetTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=40,
        per_device_train_batch_size=20,
        learning_rate=2e-3,
        warmup_steps=4,
        logging_steps=1,
        seed=0,
        data_seed=0,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        sampler="sandwich",
        num_random_subnets=1,
        distillation="inplace",
        eval_subnets="largest,smallest",
    )
    trainer = SupernetTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=ImageClassificationCollator(),
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40
    first, last = statistics.mean(losses[:8]), statistics.mean(losses[-8:])
    assert last < first - 0.1, f"the loss did not fall: first steps {first:.3f}, last steps {last:.3f}"
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_largest_accuracy"] <= 1.0 and 0.0 <= metrics["eval_smallest_accuracy"] <= 1.0


def test_trainer_passes_interpolate_pos_encoding_from_the_collator(tmp_path):
    """Images of 16 px on a model built for 32 px train and evaluate only when the flag reaches the forward."""
    splits, names = sample_splits(image_size=16)
    torch.manual_seed(0)
    model = hf_nas.ElasticViTForImageClassification(hf_nas.ElasticViTConfig(**TINY_VISION, num_labels=len(names)))
    args = SupernetTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=50,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        eval_subnets="smallest",
    )
    for interpolate in (False, True):
        trainer = SupernetTrainer(
            model=model,
            args=args,
            train_dataset=splits["train"],
            eval_dataset=splits["validation"],
            data_collator=ImageClassificationCollator(interpolate_pos_encoding=interpolate),
        )
        if not interpolate:
            with pytest.raises(ValueError, match="(?i)image size"):
                trainer.train()
        else:
            trainer.train()
            assert "eval_smallest_loss" in trainer.evaluate()


@pytest.mark.slow
def test_image_scripts_train_search_extract(tmp_path):
    checkpoint = tmp_path / "vit"
    torch.manual_seed(0)
    ViTModel(ViTConfig(**TINY_VISION), add_pooling_layer=False).save_pretrained(
        checkpoint
    )  # a backbone, as pretrained
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(checkpoint)

    supernet = tmp_path / "supernet"
    run(
        "train_supernet.py",
        "--model_name_or_path",
        str(checkpoint),
        "--data_dir",
        SAMPLE,
        "--image_size",
        "16",  # not the checkpoint's 32: interpolate_pos_encoding defaults to True
        "--random_flip",
        "--output_dir",
        str(supernet),
        "--max_steps",
        "3",
        "--do_train",
        "--do_eval",
        "--max_eval_samples",
        "40",
        "--importance_batches",
        "1",
        "--attn_implementation",
        "eager",
        *COMMON,
    )
    config = json.loads((supernet / "config.json").read_text())
    assert config["model_type"] == "elastic_vit" and "search_space" in config
    assert config["id2label"]["3"] == "cat"
    processor = json.loads((supernet / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 16, "width": 16}
    metrics = json.loads((supernet / "eval_results.json").read_text())
    assert {"eval_largest_accuracy", "eval_smallest_accuracy"} <= set(metrics)

    search = tmp_path / "search"
    output = run(
        "search_subnets.py",
        "--supernet",
        str(supernet),
        "--data_dir",
        SAMPLE,
        "--output_dir",
        str(search),
        "--objectives",
        "accuracy,macs,latency",
        "--num_evaluations",
        "6",
        "--initial_evaluations",
        "4",
        "--evaluations_per_round",
        "2",
        "--candidates_per_round",
        "50",
        "--latency_min_run_time",
        "0.01",
    )
    assert "Pareto front" in output
    results = json.loads((search / "search_results.json").read_text())
    assert len(results["records"]) == 6
    assert all(0.0 <= r["values"]["accuracy"] <= 1.0 for r in results["records"])

    subnet = tmp_path / "subnet"
    run(
        "extract_subnet.py",
        "--supernet",
        str(supernet),
        "--results",
        str(search),
        "--pareto_index",
        "0",
        "--output_dir",
        str(subnet),
        "--latency_min_run_time",
        "0.01",
    )
    assert json.loads((subnet / "preprocessor_config.json").read_text())["size"] == {"height": 16, "width": 16}
    assert (subnet / "README.md").is_file()
    config = json.loads((subnet / "config.json").read_text())
    model = AutoModelForImageClassification.from_pretrained(subnet, trust_remote_code="auto_map" in config).eval()
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values, interpolate_pos_encoding=True).logits
    assert logits.shape == (2, 10)
