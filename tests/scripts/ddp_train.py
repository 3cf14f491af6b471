"""Train the tiny supernet a few steps, in one process or under `torchrun --nproc_per_node N` (gloo, CPU).

Launched by `tests/test_trainer.py::test_ddp_two_processes_match_one_process`. Every process trains on
`GLOBAL_BATCH_SIZE / world_size` examples per step, read in dataset order (a `SequentialSampler`), so that the
processes of a distributed run together see exactly the batch that a single process sees. Each process writes
`<outdir>/rank{r}.pt` holding its final weights, the subnets it trained at each step, the backward calls during which
DDP reduced gradients, and its log history.

    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_train.py OUTDIR
    python tests/scripts/ddp_train.py OUTDIR  # the one-process reference
    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_train.py OUTDIR --model vit  # images

With `--model vit` or `--model beit` the supernet is a tiny image classifier trained on random 32 px images by the
teacher-first recipe: a fixed teacher (a vanilla model of the supernet's weights) with hidden-state distillation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import SequentialSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.conftest`

from hf_nas.training import SupernetTrainer, SupernetTrainingArguments  # noqa: E402
from tests.conftest import make_supernet  # noqa: E402

GLOBAL_BATCH_SIZE = 8
MAX_STEPS = 4


def make_image_dataset(num_examples: int = 32, image_size: int = 32, seed: int = 0):
    """Random images with a learnable label (is the mean of the red channel above 0?)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(num_examples, 3, image_size, image_size, generator=generator)  # (N, 3, H, W)
    labels = (pixels[:, 0].mean(dim=(1, 2)) > 0).long()  # (N,)
    return [{"pixel_values": pixels[i], "labels": int(labels[i])} for i in range(num_examples)]


def make_image_supernet(kind: str):
    """A tiny ViT or BEiT (relative position bias per layer, layer scale, mean pooling) supernet classifier, and
    the vanilla model of the same weights as its teacher."""
    import hf_nas

    common = {
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "patch_size": 8,
        "image_size": 32,
        "num_labels": 2,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    torch.manual_seed(0)
    if kind == "vit":
        model = hf_nas.ElasticViTForImageClassification(hf_nas.ElasticViTConfig(**common))
    else:
        config = hf_nas.ElasticBeitConfig(
            **common,
            use_relative_position_bias=True,
            use_mean_pooling=True,
            layer_scale_init_value=0.1,
            drop_path_rate=0.0,
        )
        model = hf_nas.ElasticBeitForImageClassification(config)
    teacher = model.extract_subnet(model.max_subnet()).eval()
    return model, teacher


def make_dataset(num_examples: int = 32, seq_len: int = 8, seed: int = 0):
    """Random token ids with a learnable label (is the second token in the lower half of the vocabulary?)."""
    import datasets

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (num_examples, seq_len), generator=generator)  # (N, T)
    labels = (input_ids[:, 1] < 50).long()  # (N,)
    return datasets.Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": torch.ones_like(input_ids).tolist(),
            "labels": labels.tolist(),
        }
    )


class RecordingTrainer(SupernetTrainer):
    """Reads the data in order and records, per optimizer step, the batch read, the subnets sampled and the backward
    calls during which DDP reduced gradients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampled: list[tuple[int, int, list[dict]]] = []  # (step, micro step, subnets)
        self.num_backward = 0
        self.reduced_at: list[int] = []  # the backward call (1-based) during which each DDP bucket was reduced
        self.input_ids: list[torch.Tensor] = []  # the batch this process read at each step
        self._hooked = False
        backward = self.accelerator.backward

        def counting_backward(loss, **kwargs):
            self.num_backward += 1
            return backward(loss, **kwargs)

        self.accelerator.backward = counting_backward
        sample = self.sampler.sample

        def recording_sample(step, micro_step=0):
            subnets = sample(step, micro_step)
            self.sampled.append((step, micro_step, [s.to_dict() for s in subnets]))
            return subnets

        self.sampler.sample = recording_sample

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self._hooked and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def recording_allreduce(state, bucket):
                self.reduced_at.append(self.num_backward)
                return allreduce_hook(state, bucket)

            model.register_comm_hook(None, recording_allreduce)
            self._hooked = True
        key = "input_ids" if "input_ids" in inputs else "pixel_values"
        self.input_ids.append(inputs[key].detach().cpu().clone())
        return super().training_step(model, inputs, num_items_in_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir")
    parser.add_argument("--sampler", default="shiftnas")
    parser.add_argument("--model", choices=["bert", "vit", "beit"], default="bert")
    parser.add_argument(
        "--ddp-find-unused-parameters",
        choices=["true", "false"],
        default=None,
        help="Passed to `ddp_find_unused_parameters` (default: the Trainer's choice, True for a PreTrainedModel).",
    )
    options = parser.parse_args()
    outdir = options.outdir
    find_unused = None if options.ddp_find_unused_parameters is None else options.ddp_find_unused_parameters == "true"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)

    args = SupernetTrainingArguments(
        output_dir=os.path.join(outdir, "trainer"),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=GLOBAL_BATCH_SIZE // world_size,
        learning_rate=1e-3,
        sampler=options.sampler,
        ddp_find_unused_parameters=find_unused,
        num_random_subnets=2,
        attention_loss_weight=1.0 if options.model == "bert" else 0.0,
        hidden_loss_weight=1.0,
        distillation=None if options.model == "bert" else "teacher",
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo" if world_size > 1 else None,
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    if options.model == "bert":
        model, teacher, dataset, collator = (
            make_supernet("BertForSequenceClassification", num_labels=2),
            None,
            None,
            None,
        )
        dataset = make_dataset()
    else:
        from hf_nas.data import ImageClassificationCollator

        model, teacher = make_image_supernet(options.model)
        dataset, collator = make_image_dataset(), ImageClassificationCollator()
    trainer = RecordingTrainer(
        model=model, teacher_model=teacher, args=args, train_dataset=dataset, data_collator=collator
    )
    trainer.train()
    rank = trainer.args.process_index
    state_dict = {k: v.detach().clone() for k, v in trainer.supernet.state_dict().items()}
    torch.save(
        {
            "world_size": trainer.accelerator.num_processes,
            "state_dict": state_dict,
            "sampled": trainer.sampled,
            "num_backward": trainer.num_backward,
            "reduced_at": trainer.reduced_at,
            "input_ids": trainer.input_ids,
            "log_history": trainer.state.log_history,
            "sampler_state": trainer.sampler.state_dict(),
        },
        os.path.join(outdir, f"rank{rank}.pt"),
    )
    # Tear the gloo group down before the interpreter exits: left to interpreter shutdown, its threads can abort
    # a rank ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
