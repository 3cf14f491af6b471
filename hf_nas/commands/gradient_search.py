"""Search a supernet by gradient descent in its weight-entangled space (TangleNAS) and select subnets.

Trains the supernet's weights and its architecture parameters together (bi-level: weight steps on the training
rows, architecture steps on a held-out part of them), then selects a subnet per method (argmax of the architecture
weights, and/or perturbation-based selection, DARTS-PT), optionally under a MAC budget. Writes
`selected_subnets.json` (each subnet and its MAC ratio), the supernet with its architecture parameters, and with
--extract each selected subnet as an ordinary checkpoint (`subnet-<method>/`). Arguments come from the command line or
one JSON file; `hf-nas gradient-search` and `scripts/gradient_search.py` are this same program.

    hf-nas gradient-search --train_file data/sst2_sample.tsv --output_dir out/gradient \
        --max_steps 200 --arch_optimizer darts --resource_penalty 1 --target_macs_ratio 0.5 --extract
    hf-nas gradient-search --model_name_or_path path/to/vit --data_dir data/cifar10_sample --image_size 56 \
        --output_dir out/vit-gradient --max_steps 200 --target_macs_ratio 0.5 --extract
    hf-nas gradient-search args.json

The checkpoint's model type picks the data options, as for `hf-nas train`: text classification for BERT
(--train_file, ...), image classification for ViT and BEiT (--data_dir or --train_dir / --validation_dir,
--image_size, ...; `--help` after `--model_name_or_path` lists them). For images, MACs are counted at --image_size
(the image processor's size) unless --macs_image_size says otherwise, and the image processor is saved beside the
supernet and every extracted subnet.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import transformers
from torch.utils.data import DataLoader
from transformers import HfArgumentParser, set_seed

from hf_nas import SearchSpace, reorder_by_importance
from hf_nas.commands import parse_arguments
from hf_nas.commands.train import (
    check_run_paths,
    checkpoint_parser,
    default_checkpoint_help,
    find_last_checkpoint,
    load_supernet,
    prepare_images,
    prepare_text,
    setup_logging,
)
from hf_nas.data import TextDataArguments, processor_image_size
from hf_nas.extraction import save_subnet
from hf_nas.gradient import SELECTION_METHODS, GradientSearchArguments, GradientSearchTrainer, selection_summary
from hf_nas.metrics import build_compute_metrics
from hf_nas.models.auto import vanilla_model_type
from hf_nas.utils import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class GradientSearchScriptArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Vanilla BERT, ViT or BEiT checkpoint (a local folder or a Hub id) or a supernet saved by hf-nas "
            "train. "
            f"Default: {default_checkpoint_help()}."
        },
    )
    search_space_file: str | None = field(
        default=None, metadata={"help": "JSON of a SearchSpace narrowing the default one (SearchSpace.save)."}
    )
    reorder_by_importance: bool = field(
        default=True, metadata={"help": "Reorder heads and neurons by importance first (vanilla checkpoints only)."}
    )
    importance_batches: int = field(default=8, metadata={"help": "Training batches used to measure importance."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention implementation: eager or sdpa."})
    arch_split: float = field(
        default=0.1, metadata={"help": "Fraction of the training rows held out for the architecture steps."}
    )
    selection: str = field(default="argmax,perturbation", metadata={"help": "Comma-separated: argmax, perturbation."})
    max_macs_ratio: float | None = field(
        default=None, metadata={"help": "MAC budget of the selection (default: --target_macs_ratio)."}
    )
    perturbation_batches: int = field(default=4, metadata={"help": "Architecture-split batches per removal."})
    perturbation_tuning_steps: int = field(default=2, metadata={"help": "Weight steps between decisions."})
    extract: bool = field(default=False, metadata={"help": "Save each selected subnet to output_dir/subnet-<method>."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace the supernet already trained in --output_dir (its config.json and weights) and start "
            "afresh, instead of refusing (or resuming from its checkpoint-* folders)."
        },
    )


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas gradient-search`, with the data options of the checkpoint `--model_name_or_path` in
    `argv` (default `sys.argv[1:]`; text for BERT, images for ViT and BEiT)."""
    return checkpoint_parser((GradientSearchScriptArguments, GradientSearchArguments), argv, prog, __doc__)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas gradient-search` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    script_args, data_args, args = parse_arguments(build_parser(argv, prog), argv)
    setup_logging(args)
    path = check_run_paths(script_args, data_args, args)
    last_checkpoint = find_last_checkpoint(args, script_args.overwrite_output_dir, do_train=True)
    methods = [m.strip() for m in script_args.selection.split(",") if m.strip()]
    methods.sort(key=lambda m: SELECTION_METHODS.index(m) if m in SELECTION_METHODS else -1)  # argmax before tuning
    unknown = [m for m in methods if m not in SELECTION_METHODS]
    if unknown:
        raise ValueError(f"Unknown selection methods {unknown}; allowed: {list(SELECTION_METHODS)}.")
    if not 0 < script_args.arch_split < 1:
        raise ValueError(f"`arch_split` must be a fraction in (0, 1), got {script_args.arch_split}.")
    set_seed(args.seed)

    is_text = isinstance(data_args, TextDataArguments)
    data = (prepare_text if is_text else prepare_images)(path, data_args, args)
    if not is_text and args.macs_image_size is None:  # MACs at the size the images are fed at
        args.macs_image_size = processor_image_size(data.processor)
    model = load_supernet(path, data, script_args, args)
    if script_args.search_space_file is not None:
        model.search_space = SearchSpace.load(script_args.search_space_file)
    logger.info("search space: %s", model.search_space)

    parts = data.splits["train"].train_test_split(test_size=script_args.arch_split, seed=args.seed)
    train, arch = parts["train"], parts["test"]
    dev = data.splits.get("validation")
    collator = data.collator

    model_type = transformers.PreTrainedConfig.get_config_dict(path)[0].get("model_type")
    is_vanilla = model_type == vanilla_model_type(path)  # not a saved supernet: reorder its heads and neurons first
    if script_args.reorder_by_importance and is_vanilla and last_checkpoint is None:
        loader = DataLoader(train, batch_size=args.per_device_train_batch_size, collate_fn=collator)
        reorder_by_importance(model, loader, num_batches=script_args.importance_batches)

    trainer = GradientSearchTrainer(
        model=model,
        args=args,
        train_dataset=train,
        arch_dataset=arch,
        eval_dataset=dev,
        processing_class=data.processor,
        data_collator=collator,
        compute_metrics=build_compute_metrics([m.strip() for m in data_args.metrics.split(",") if m.strip()]),
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint or last_checkpoint)
    trainer.save_model()  # the supernet, its architecture parameters and the argmax subnet
    trainer.log_metrics("train", result.metrics)

    selected = {}
    budget = script_args.max_macs_ratio if script_args.max_macs_ratio is not None else args.target_macs_ratio
    for method in methods:
        subnet = trainer.select_subnet(
            method,
            max_macs_ratio=budget,
            num_eval_batches=script_args.perturbation_batches,
            tuning_steps=script_args.perturbation_tuning_steps,
        )
        selected[method] = selection_summary(model, subnet, **args.macs_inputs(model))
        logger.info("%s: %s (%.3f of the full model's MACs)", method, subnet, selected[method]["macs_ratio"])
        if script_args.extract and args.should_save:
            save_subnet(model, os.path.join(args.output_dir, f"subnet-{method}"), subnet, processor=data.processor)
    if args.should_save:
        atomic_write_text(
            os.path.join(args.output_dir, "selected_subnets.json"),
            json.dumps({"max_macs_ratio": budget, "subnets": selected}, indent=2) + "\n",
        )
    print(json.dumps(selected, indent=2))


if __name__ == "__main__":
    main()
