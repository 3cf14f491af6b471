"""Search a trained supernet for the subnets with the best accuracy for their size and latency.

Writes `search_results.json` (every measured subnet), `pareto.csv`, `pareto.png` and the hypervolume to --output_dir;
rerun with the same --output_dir to resume an interrupted search. Arguments come from the command line or one JSON
file; `hf-nas search` and `scripts/search_subnets.py` are this same program.

    hf-nas search --supernet out/supernet --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/search --objectives accuracy,macs,latency --num_evaluations 100
    hf-nas search ... --constraint "latency<=10" --constraint "macs<=1e9"
    hf-nas search --supernet out/vit-supernet --data_dir data/cifar10_sample \
        --output_dir out/vit-search --num_evaluations 50
    hf-nas search --supernet out/supernet --train_file data/sst2_sample.tsv --validation_split_percentage 10 ...

The supernet's model type picks the data options: text classification for BERT (--validation_file, ...), image
classification for ViT and BEiT (--data_dir or --validation_dir, ...; see `hf_nas.data.ImageDataArguments`). Images
are evaluated, and MACs and latency measured, at the size of the image processor saved with the supernet (or
--image_size).

Subnets are measured on a validation split: the data's own, or, with `--validation_split_percentage N`, N% of the
training rows held out with `--seed`. Data without a validation split is an error, never a silent fallback to the
training rows the supernet was trained on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
from transformers import AutoTokenizer, HfArgumentParser, set_seed

from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import (
    ImageClassificationCollator,
    TextDataArguments,
    argument_from_command_line,
    data_arguments_class,
    load_image_datasets,
    load_image_processor,
    load_text_datasets,
    needs_interpolate_pos_encoding,
    prepare_image_datasets,
    processor_image_size,
    tokenize_classification,
)
from hf_nas.models.auto import elastic_class_for
from hf_nas.search import SubnetSearch, get_objective, parse_constraints
from hf_nas.search.objectives import TaskMetricObjective

logger = logging.getLogger(__name__)


@dataclass
class SearchArguments:
    supernet: str = field(metadata={"help": "A supernet saved by `hf-nas train`."})
    output_dir: str = field(metadata={"help": "Results folder (resumed when it holds search_results.json)."})
    objectives: str = field(default="accuracy,macs,latency", metadata={"help": "Comma-separated objective names."})
    strategy: str = field(default="nsga2", metadata={"help": "nsga2 or random."})
    use_predictors: bool = field(default=True, metadata={"help": "Screen candidates with predictors (LINAS)."})
    num_evaluations: int = field(default=100)
    candidates_per_round: int = field(default=1000)
    evaluations_per_round: int = field(default=10)
    initial_evaluations: int = field(default=20)
    constraint: list[str] = field(
        default_factory=list, metadata={"help": 'e.g. "latency<=10" or "macs<=1e9,accuracy>=0.8" (repeatable).'}
    )
    sequence_length: int = field(default=128, metadata={"help": "Sequence length of MACs and latency (text)."})
    latency_batch_size: int = field(default=1)
    latency_device: str = field(default="cpu")
    latency_min_run_time: float = field(default=0.5)
    eval_batch_size: int = field(default=64)
    validation_split_percentage: int | None = field(
        default=None,
        metadata={
            "help": "Measure on this percentage (1-99) of the training rows, held out with --seed, when the data has "
            "no validation split."
        },
    )
    seed: int = field(default=0)

    def __post_init__(self):
        percentage = self.validation_split_percentage
        if percentage is not None and not 1 <= percentage <= 99:
            raise ValueError(f"--validation_split_percentage must be an integer from 1 to 99, got {percentage}.")


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas search`: its data options are those of the supernet `--supernet` in `argv` (default
    `sys.argv[1:]`; text for BERT, images for ViT and BEiT)."""
    # The supernet decides the data options (text or image), so it is read before the full parse.
    supernet = argument_from_command_line("supernet", argv)
    data_class = (
        data_arguments_class(supernet) if supernet is not None and os.path.isdir(supernet) else TextDataArguments
    )
    return HfArgumentParser((SearchArguments, data_class), prog=prog, description=description_of(__doc__))


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas search` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    args, data_args = parse_arguments(build_parser(argv, prog=prog), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    datasets.utils.logging.set_verbosity_warning()
    set_seed(args.seed)

    if isinstance(data_args, TextDataArguments):
        model, metric_objective, shape = text_objectives(args, data_args)
    else:
        model, metric_objective, shape = image_objectives(args, data_args)
    objectives = []
    for name in [n.strip() for n in args.objectives.split(",") if n.strip()]:
        if name in ("accuracy", "f1"):
            objectives.append(metric_objective(name))
        elif name == "macs":
            objectives.append(get_objective("macs", **shape))
        elif name == "latency":
            objectives.append(
                get_objective(
                    "latency",
                    batch_size=args.latency_batch_size,
                    device=args.latency_device,
                    min_run_time=args.latency_min_run_time,
                    **shape,
                )
            )
        else:
            objectives.append(get_objective(name))
    search = SubnetSearch(
        model,
        objectives,
        args.strategy,
        num_evaluations=args.num_evaluations,
        constraints=[c for text in args.constraint for c in parse_constraints(text)],
        use_predictors=args.use_predictors,
        candidates_per_round=args.candidates_per_round,
        evaluations_per_round=args.evaluations_per_round,
        initial_evaluations=args.initial_evaluations,
        output_dir=args.output_dir,
        seed=args.seed,
    )
    results = search.run()
    hv, reference = results.hypervolume()
    names = results.names
    print(
        f"\nPareto front ({len(results.pareto_indices())} of {len(results.records)} measured subnets; "
        f"hypervolume {hv:.4g} w.r.t. {reference}):"
    )
    print("  ".join(["#".rjust(4), *[n.rjust(12) for n in names], "  subnet"]))
    for i in results.pareto_indices():
        record = results.records[i]
        subnet = record["subnet"]
        arch = (
            f"L={subnet['num_hidden_layers']} H={subnet['num_attention_heads']} "
            f"F={subnet['intermediate_size']} D={subnet['hidden_size']}"
        )
        print("  ".join([str(i).rjust(4), *[f"{record['values'][n]:12.4g}" for n in names], "  " + arch]))
    for name, score in results.predictor_scores.items():
        print(f"predictor {name}: MAE {score['mae']:.4g}, Kendall tau {score['kendall_tau']:.3f} (held-out)")
    print(f"\nResults in {os.path.abspath(args.output_dir)}: search_results.json, pareto.csv, pareto.png")


TEXT_VALIDATION_OPTIONS = "--validation_file, or --dataset_name with a validation split"
IMAGE_VALIDATION_OPTIONS = "--validation_dir, --data_dir with a validation folder, or --dataset_name with one"


def validation_split(raw: datasets.DatasetDict, args: SearchArguments, options: str) -> datasets.Dataset:
    """The rows subnets are measured on: the data's validation split, or the seeded share of the training rows that
    `--validation_split_percentage` asks for. No validation split and no percentage is an error (the training rows
    would overrate every subnet)."""
    percentage = args.validation_split_percentage
    if "validation" in raw:
        if percentage is not None:
            raise ValueError(
                f"--validation_split_percentage {percentage} holds out training rows, but the data has a validation "
                "split already; drop one of them."
            )
        return raw["validation"]
    if percentage is None:
        raise ValueError(
            f"The data has no validation split to measure the subnets on (splits: {sorted(raw)}). Give {options}; "
            "or --validation_split_percentage N to hold out N% of the training rows (seeded by --seed)."
        )
    train = raw.get("train")
    if train is None or len(train) < 2:
        raise ValueError(
            f"--validation_split_percentage {percentage} holds out training rows, but the data has "
            f"{0 if train is None else len(train)} (splits: {sorted(raw)}); give {options}."
        )
    logger.info("measuring on %d%% of the %d training rows (seed %d)", percentage, len(train), args.seed)
    return train.train_test_split(test_size=percentage / 100, seed=args.seed)["test"]


def text_objectives(args: SearchArguments, data_args: TextDataArguments):
    """The supernet, a factory of task-metric objectives on the tokenized validation set, and the input shape of
    the cost objectives."""
    dev = validation_split(load_text_datasets(data_args), args, TEXT_VALIDATION_OPTIONS)
    model = elastic_class_for(args.supernet, "sequence-classification").from_pretrained(args.supernet).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.supernet)
    if data_args.max_eval_samples is not None:
        dev = dev.select(range(min(data_args.max_eval_samples, len(dev))))
    label2id = dict(model.config.label2id)
    label2id.update({int(k) if str(k).isdigit() else k: v for k, v in model.config.label2id.items()})
    dev = tokenize_classification(dev, tokenizer, data_args, label2id)

    def metric_objective(name: str) -> TaskMetricObjective:
        return TaskMetricObjective(dev, metric=name, batch_size=args.eval_batch_size, tokenizer=tokenizer)

    return model, metric_objective, {"sequence_length": args.sequence_length}


def image_objectives(args: SearchArguments, data_args):
    """The image-classification counterpart of `text_objectives`: images at the saved processor's size (or
    --image_size), with the position embeddings interpolated when that differs from the checkpoint's size."""
    raw = load_image_datasets(data_args, seed=args.seed)  # a given validation split is cut to --max_eval_samples
    carved = "validation" not in raw
    dev = validation_split(raw, args, IMAGE_VALIDATION_OPTIONS)
    if carved and data_args.max_eval_samples is not None and data_args.max_eval_samples < len(dev):
        dev = dev.shuffle(seed=args.seed).select(range(data_args.max_eval_samples))
    model = elastic_class_for(args.supernet, "image-classification").from_pretrained(args.supernet).eval()
    processor = load_image_processor(args.supernet, data_args.image_size)
    image_size = processor_image_size(processor)
    dev = prepare_image_datasets(
        datasets.DatasetDict({"validation": dev}), processor, data_args, label2id=dict(model.config.label2id)
    )["validation"]
    interpolate = data_args.interpolate_pos_encoding
    if interpolate is None:
        interpolate = needs_interpolate_pos_encoding(model.config, image_size)
    logger.info("images of %s px, interpolate_pos_encoding=%s", image_size, interpolate)

    def metric_objective(name: str) -> TaskMetricObjective:
        return TaskMetricObjective(
            dev,
            metric=name,
            batch_size=args.eval_batch_size,
            collate_fn=ImageClassificationCollator(),
            model_kwargs={"interpolate_pos_encoding": True} if interpolate else None,
        )

    return model, metric_objective, {"image_size": image_size}


if __name__ == "__main__":
    main()
