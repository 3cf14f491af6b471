"""Search a supernet by gradient descent in its weight-entangled space (TangleNAS) and select subnets.

Trains the supernet's weights and its architecture parameters together (bi-level: weight steps on the training
rows, architecture steps on a held-out part of them), then selects a subnet per method (argmax of the architecture
weights, and/or perturbation-based selection, DARTS-PT), optionally under a MAC budget. Writes
`selected_subnets.json` (each subnet and its MAC ratio), the supernet with its architecture parameters, and with
--extract each selected subnet as an ordinary checkpoint (`subnet-<method>/`). Arguments come from the command line or
one JSON file; `hf-nas gradient-search` and `scripts/gradient_search.py` are this same program.

    hf-nas gradient-search --train_file data/sst2_sample.tsv --output_dir out/gradient \
        --max_steps 200 --arch_optimizer darts --resource_penalty 1 --target_macs_ratio 0.5 --extract
    hf-nas gradient-search args.json
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import transformers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed

from hf_nas import ElasticBertForSequenceClassification, SearchSpace, reorder_by_importance
from hf_nas.commands import description_of, parse_arguments
from hf_nas.commands.train import check_run_paths, default_checkpoint_help, find_last_checkpoint, setup_logging
from hf_nas.data import HelpFormatter, TextDataArguments, load_text_datasets, tokenize_classification
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
            "help": "Vanilla BERT checkpoint (a local folder or a Hub id) or a supernet saved by hf-nas train. "
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


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas gradient-search`."""
    return HfArgumentParser(
        (GradientSearchScriptArguments, TextDataArguments, GradientSearchArguments),
        prog=prog,
        description=description_of(__doc__),
        formatter_class=HelpFormatter,
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas gradient-search` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    script_args, data_args, args = parse_arguments(build_parser(prog), argv)
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

    raw = load_text_datasets(data_args)
    if "train" not in raw:
        raise ValueError("Gradient-based search trains the supernet: give --train_file or --dataset_name.")
    labels = sorted(set(raw["train"][data_args.label_column]))
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = ElasticBertForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label={i: str(label) for label, i in label2id.items()},
        label2id={str(label): i for label, i in label2id.items()},
    )
    if script_args.search_space_file is not None:
        model.search_space = SearchSpace.load(script_args.search_space_file)
    logger.info("search space: %s", model.search_space)

    train = raw["train"]
    if data_args.max_train_samples is not None and data_args.max_train_samples < len(train):
        train = train.shuffle(seed=args.seed).select(range(data_args.max_train_samples))
    parts = train.train_test_split(test_size=script_args.arch_split, seed=args.seed)
    train = tokenize_classification(parts["train"], tokenizer, data_args, label2id)
    arch = tokenize_classification(parts["test"], tokenizer, data_args, label2id)
    dev = None
    if "validation" in raw:
        dev = raw["validation"]
        if data_args.max_eval_samples is not None:
            dev = dev.select(range(min(data_args.max_eval_samples, len(dev))))
        dev = tokenize_classification(dev, tokenizer, data_args, label2id)
    collator = DataCollatorWithPadding(tokenizer)

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
        processing_class=tokenizer,
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
            save_subnet(model, os.path.join(args.output_dir, f"subnet-{method}"), subnet, processor=tokenizer)
    if args.should_save:
        atomic_write_text(
            os.path.join(args.output_dir, "selected_subnets.json"),
            json.dumps({"max_macs_ratio": budget, "subnets": selected}, indent=2) + "\n",
        )
    print(json.dumps(selected, indent=2))


if __name__ == "__main__":
    main()
