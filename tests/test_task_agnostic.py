"""Task-agnostic mode (AutoDistil): distill K supernets, one per sub-space, from a masked-LM teacher on unlabeled
text with the self-attention relation loss only; then fine-tune one of them on a task."""

from __future__ import annotations

import datasets
import torch
from transformers import BertForMaskedLM

from hf_nas import ElasticBertForSequenceClassification, ElasticBertModel
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments

from .conftest import tiny_bert_config, tiny_elastic_config


def unlabeled_text(n: int = 32, length: int = 12) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (n, length), generator=g)
    return datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * length] * n})


def distill_args(tmp_path, name: str, **kwargs) -> SupernetTrainingArguments:
    return SupernetTrainingArguments(
        output_dir=str(tmp_path / name),
        distillation="teacher",
        attention_loss_weight=1.0,
        kd_loss_weight=0.0,
        task_loss_weight=0.0,
        eval_subnets="",
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        **kwargs,
    )


def test_attention_distillation_from_a_masked_lm_teacher_reduces_the_loss(tmp_path):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_bert_config()).eval()
    torch.manual_seed(1)
    student = ElasticBertModel(tiny_elastic_config())
    trainer = SupernetTrainer(
        model=student,
        args=distill_args(tmp_path, "run", max_steps=24),
        teacher_model=teacher,
        train_dataset=unlabeled_text(),
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 24 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher is never trained


def test_k_subspace_supernets_are_saved_and_fine_tune_from_there(tmp_path):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_bert_config()).eval()
    space = ElasticBertModel(tiny_elastic_config()).search_space
    subspaces = space.partition(3)
    for name, subspace in zip(("tiny", "small", "base"), subspaces, strict=True):
        torch.manual_seed(1)
        student = ElasticBertModel(tiny_elastic_config())
        student.search_space = subspace
        trainer = SupernetTrainer(
            model=student,
            args=distill_args(tmp_path, name, max_steps=2),
            teacher_model=teacher,
            train_dataset=unlabeled_text(),
        )
        trainer.train()
        trainer.save_model()
    for name, subspace in zip(("tiny", "small", "base"), subspaces, strict=True):
        model = ElasticBertForSequenceClassification.from_pretrained(str(tmp_path / name), num_labels=2)
        assert model.search_space == subspace
        # The distilled encoder weights carry over into the task model.
        distilled = ElasticBertModel.from_pretrained(str(tmp_path / name))
        torch.testing.assert_close(
            model.bert.encoder.layer[0].attention.self.query.weight,
            distilled.encoder.layer[0].attention.self.query.weight,
        )
