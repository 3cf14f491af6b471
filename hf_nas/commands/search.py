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

One search at a time writes an --output_dir: a second one into the same folder stops at once, before loading
anything, naming the lock OUTPUT_DIR.lock, or waits for it with --wait_for_lock SECONDS. A search killed at any point (even kill -9) leaves
a complete search_results.json; rerun the same command to resume it: saved subnets are not measured again and the
search ends as the uninterrupted one would have.

The printed front, `pareto.csv` and `pareto.png` give each point of the front its `pareto_index` (0-based, what
`hf-nas extract --pareto_index` takes) and its `record` number (its place in search_results.json, `--record`).

The hypervolume is measured from a reference point fixed before the search (--reference_point fixed: the majority
class's accuracy, the full model's MACs, parameters and latency) to the ideal point (accuracy 1, costs 0), over every
objective, so hypervolumes of different searches compare.

`predicted_latency` is the latency of the extracted subnet predicted by a per-device latency table (per-layer timings
and a correction learned on whole-model measurements, measured once and cached in --latency_table_dir per device and
setting): cheap enough to score every candidate. `onnx_latency` times the extracted subnet exported to ONNX in ONNX
Runtime (`hf_nas.compression.OnnxLatencyObjective`), for searches that target that runtime.

Several processes share a search's accuracy evaluations; the main process times latencies alone and writes the
results, which are those of a one-process search with the same seed:

    torchrun --nproc_per_node 4 -m hf_nas search --supernet out/supernet ...
    accelerate launch --num_processes 4 -m hf_nas search --supernet out/supernet ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import datasets
from transformers import AutoTokenizer, HfArgumentParser, set_seed

import hf_nas.compression  # noqa: F401  (registers the onnx_latency objective)
from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import (
    HelpFormatter,
    ImageClassificationCollator,
    ImageDataArguments,
    TextDataArguments,
    argument_from_command_line,
    check_data_paths,
    data_arguments_class,
    load_image_datasets,
    load_image_processor,
    load_text_datasets,
    needs_interpolate_pos_encoding,
    prepare_image_datasets,
    processor_image_size,
    tokenize_classification,
)
from hf_nas.metrics import BUNDLED_METRICS
from hf_nas.models.auto import elastic_class_for
from hf_nas.search import (
    OBJECTIVES,
    STRATEGIES,
    Constraint,
    SearchProcesses,
    SubnetSearch,
    get_objective,
    init_search_processes,
    parse_constraints,
)
from hf_nas.search.objectives import TaskMetricObjective
from hf_nas.utils import OutputLockedError, command_output_lock, output_lock
from hf_nas.validation import check_model_path, check_wait_for_lock

logger = logging.getLogger(__name__)

TASK_METRICS = BUNDLED_METRICS  # the task metrics a search can measure offline: accuracy, f1
DEFAULT_OBJECTIVES = "accuracy,macs,latency"
REFERENCE_POINTS = {"fixed": "fixed", "records": None}  # --reference_point -> SubnetSearch(reference_point=...)
_TASK_METRIC = TaskMetricObjective  # the registered class (the name below may be swapped for a wrapper)


# Registered objectives built from Python objects only (a trained block-wise rater), which options cannot give
PYTHON_ONLY_OBJECTIVES = ("blockwise_loss",)


def cost_objectives() -> list[str]:
    """The registered objectives other than the task metric (see [`~hf_nas.search.objectives.OBJECTIVES`]) that the
    command can build from its options: the same list whichever other modules registered objectives of their own."""
    return sorted(
        n for n, cls in OBJECTIVES.items() if not issubclass(cls, _TASK_METRIC) and n not in PYTHON_ONLY_OBJECTIVES
    )


def _objectives_help() -> str:
    return (
        "Comma-separated objectives; the first is the y axis of pareto.png and orders the front. Allowed: the task "
        f"metrics {', '.join(TASK_METRICS)} (measured on the validation data; see --metrics) and the costs "
        f"{', '.join(cost_objectives())} (latency in ms, MACs and parameters as counts)."
    )


METRICS_HELP = (
    f"Task metric(s) to search with, comma-separated ({', '.join(TASK_METRICS)}; f1 is macro-averaged over more than "
    "two classes). They replace the task metric of --objectives: --metrics f1 searches f1,macs,latency. Default: the "
    "task metric named in --objectives."
)


@dataclass
class SearchArguments:
    supernet: str = field(metadata={"help": "A supernet saved by `hf-nas train` (a local folder or a Hub id)."})
    output_dir: str = field(
        metadata={
            "help": "Folder of search_results.json, pareto.csv and pareto.png; a folder that holds "
            "search_results.json is resumed."
        }
    )
    objectives: str = field(default=DEFAULT_OBJECTIVES, metadata={"help": _objectives_help()})
    strategy: str = field(
        default="nsga2", metadata={"help": f"Search strategy, one of: {', '.join(sorted(STRATEGIES))}."}
    )
    use_predictors: bool = field(
        default=True,
        metadata={
            "help": "Screen candidates with predictors of the measured objectives (LINAS) and measure only the "
            "predicted front (default: on; --no_use_predictors measures every proposal of the strategy)."
        },
    )
    num_evaluations: int = field(
        default=100, metadata={"help": "Subnets measured in total (a resumed search goes on up to this many)."}
    )
    candidates_per_round: int = field(
        default=1000, metadata={"help": "With predictors: candidates explored on predicted values per round."}
    )
    evaluations_per_round: int = field(
        default=10, metadata={"help": "With predictors: subnets of the predicted front measured per round."}
    )
    initial_evaluations: int = field(
        default=20, metadata={"help": "With predictors: random subnets measured before the first fit."}
    )
    constraint: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Bounds on objectives, NAME<=VALUE or NAME>=VALUE, comma-separated and repeatable, e.g. "
            "'macs<=5e8,latency<=3' (latency in ms, MACs and params as counts, task metrics from 0 to 1). Subnets "
            "outside them are kept in search_results.json but never on the front."
        },
    )
    sequence_length: int = field(
        default=128, metadata={"help": "Text: tokens per sequence of the MACs and latency measurements."}
    )
    latency_batch_size: int = field(default=1, metadata={"help": "Inputs per forward pass when timing latency."})
    latency_device: str = field(default="cpu", metadata={"help": "Torch device latency is timed on (cpu, cuda:0)."})
    latency_min_run_time: float = field(
        default=0.5, metadata={"help": "Seconds of timed runs per subnet for its latency."}
    )
    latency_table_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache folder of the latency tables of predicted_latency, one file per device and setting "
            "(when unset: $HF_NAS_CACHE/latency or ~/.cache/hf_nas/latency)."
        },
    )
    reference_point: str = field(
        default="fixed",
        metadata={
            "help": "The hypervolume's reference point: fixed (set before the search: majority-class accuracy, the "
            "full model's costs; comparable across searches) or records (the range of the measured values)."
        },
    )
    eval_batch_size: int = field(
        default=64, metadata={"help": "Validation examples per forward pass of the task metric."}
    )
    validation_split_percentage: int | None = field(
        default=None,
        metadata={
            "help": "Measure on this percentage (1-99) of the training rows, held out with --seed, when the data has "
            "no validation split. Default: none, the data's validation split."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the strategy, the predictors and --validation_split_percentage."}
    )
    wait_for_lock: float = field(
        default=0.0,
        metadata={
            "help": "Seconds to wait when another search is writing --output_dir (its lock OUTPUT_DIR.lock is "
            "held) before giving up; 0 refuses at once, inf waits as long as it takes. Two searches never write one "
            "folder at the same time."
        },
    )

    def __post_init__(self):
        check_model_path("--supernet", self.supernet)
        percentage = self.validation_split_percentage
        if percentage is not None and not 1 <= percentage <= 99:
            raise ValueError(f"--validation_split_percentage must be an integer from 1 to 99, got {percentage}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy {self.strategy!r} is not a strategy; allowed: {sorted(STRATEGIES)}.")
        for name in ("num_evaluations", "candidates_per_round", "evaluations_per_round", "initial_evaluations"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        check_wait_for_lock(self.wait_for_lock)
        if self.reference_point not in REFERENCE_POINTS:
            raise ValueError(
                f"--reference_point {self.reference_point!r} is not allowed; allowed: {', '.join(REFERENCE_POINTS)}."
            )


@dataclass
class SearchTextDataArguments(TextDataArguments):
    """[`~hf_nas.data.TextDataArguments`] of `hf-nas search`: `--metrics` is the task metric searched with, and the
    local files must exist."""

    metrics: str | None = field(default=None, metadata={"help": METRICS_HELP})

    def __post_init__(self):
        check_data_paths(self)
        super().__post_init__()


@dataclass
class SearchImageDataArguments(ImageDataArguments):
    """[`~hf_nas.data.ImageDataArguments`] of `hf-nas search`: `--metrics` is the task metric searched with, and the
    local folders must exist."""

    metrics: str | None = field(default=None, metadata={"help": METRICS_HELP})

    def __post_init__(self):
        check_data_paths(self)
        super().__post_init__()


def _split(option: str, text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"{option} {text!r} names nothing; give comma-separated names, e.g. {DEFAULT_OBJECTIVES}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{option} {text!r} names an objective twice; give each once.")
    return names


def objective_names(objectives: str, metrics: str | None = None) -> list[str]:
    """The objectives a search measures: `--objectives`, checked against the task metrics and the registered cost
    objectives, with its task metric replaced by `--metrics` when given.

    Example:

    ```python
    >>> from hf_nas.commands.search import objective_names
    >>> objective_names("accuracy,macs,latency", metrics="f1")
    ['f1', 'macs', 'latency']
    >>> objective_names("acc,macs")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: --objectives 'acc,macs': unknown objective 'acc'; allowed: accuracy, f1, latency, macs, onnx_latency...
    ```
    """
    names = _split("--objectives", objectives)
    allowed = [*TASK_METRICS, *cost_objectives()]
    for name in names:
        if name not in allowed:
            raise ValueError(
                f"--objectives {objectives!r}: unknown objective {name!r}; allowed: {', '.join(allowed)}."
            )
    if metrics is None:
        return names
    wanted = _split("--metrics", metrics)
    for name in wanted:
        if name not in TASK_METRICS:
            raise ValueError(
                f"--metrics {metrics!r}: unknown task metric {name!r}; allowed: {', '.join(TASK_METRICS)}."
            )
    present = [n for n in names if n in TASK_METRICS]
    if not present:
        raise ValueError(
            f"--metrics {metrics} is the task metric to search with, but --objectives {objectives!r} has none; "
            f"add it, e.g. --objectives {','.join([*wanted, *names])}."
        )
    first = names.index(present[0])
    replaced = [
        *[n for n in names[:first] if n not in present],
        *wanted,
        *[n for n in names[first:] if n not in present],
    ]
    if present != wanted and objectives != DEFAULT_OBJECTIVES:
        raise ValueError(
            f"--metrics {metrics} and --objectives {objectives!r} name different task metrics; name them once, e.g. "
            f"--objectives {','.join(replaced)}."
        )
    return replaced


def search_constraints(texts: Sequence[str], names: Sequence[str]) -> list[Constraint]:
    """The `--constraint` texts parsed, each on one of the objectives `names`."""
    constraints = [c for text in texts for c in parse_constraints(text)]
    for constraint in constraints:
        if constraint.objective not in names:
            raise ValueError(
                f"--constraint {str(constraint)!r} is on {constraint.objective!r}, which is not an objective of this "
                f"search; allowed: {', '.join(names)} (--objectives)."
            )
    return constraints


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas search`: its data options are those of the supernet `--supernet` in `argv` (default
    `sys.argv[1:]`; text for BERT, images for ViT and BEiT)."""
    # The supernet decides the data options (text or image), so it is read before the full parse.
    supernet = argument_from_command_line("supernet", argv)
    image = supernet is not None and os.path.isdir(supernet) and data_arguments_class(supernet) is ImageDataArguments
    data_class = SearchImageDataArguments if image else SearchTextDataArguments
    return HfArgumentParser(
        (SearchArguments, data_class), prog=prog, description=description_of(__doc__), formatter_class=HelpFormatter
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas search` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    args, data_args = parse_arguments(build_parser(argv, prog=prog), argv)
    names = objective_names(args.objectives, data_args.metrics)
    constraints = search_constraints(args.constraint, names)
    processes = init_search_processes()  # under torchrun / accelerate launch: join the other processes
    level = logging.INFO if processes.is_main else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    with ExitStack() as stack:
        # the main process holds the lock before the data and the supernet load, until the last write
        def lock() -> None:
            stack.enter_context(lock_output_dir(args))

        processes.on_main(lock)
        run_search(args, data_args, names, constraints, processes)


def run_search(
    args: SearchArguments,
    data_args: TextDataArguments | ImageDataArguments,
    names: list[str],
    constraints: list[Constraint],
    processes: SearchProcesses | None = None,
) -> None:
    """Load the supernet and the validation data, run the search (resumed from --output_dir) and print its front.
    With several `processes`, they load one after the other (a shared datasets cache is written once) and share the
    search."""
    processes = processes if processes is not None else SearchProcesses()
    datasets.utils.logging.set_verbosity_warning()
    set_seed(args.seed)
    if names != _split("--objectives", args.objectives):
        logger.info("objectives: %s (--metrics %s)", ",".join(names), data_args.metrics)

    load = text_objectives if isinstance(data_args, TextDataArguments) else image_objectives
    model, metric_objective, shape = processes.one_at_a_time(lambda: load(args, data_args))
    objectives = []
    for name in names:
        if name in TASK_METRICS:
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
        elif name == "predicted_latency":
            if "sequence_length" not in shape:
                raise ValueError(
                    "--objectives predicted_latency: latency tables time the layers of BERT supernets; measure the "
                    "latency of this supernet with the objective latency."
                )
            objectives.append(
                get_objective(
                    "predicted_latency",
                    batch_size=args.latency_batch_size,
                    device=args.latency_device,
                    cache_dir=args.latency_table_dir,
                    **shape,
                )
            )
        elif name == "onnx_latency":
            objectives.append(
                get_objective(
                    "onnx_latency",
                    batch_size=args.latency_batch_size,
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
        constraints=constraints,
        use_predictors=args.use_predictors,
        candidates_per_round=args.candidates_per_round,
        evaluations_per_round=args.evaluations_per_round,
        initial_evaluations=args.initial_evaluations,
        output_dir=args.output_dir,
        seed=args.seed,
        wait_for_lock=args.wait_for_lock,
        reference_point=REFERENCE_POINTS[args.reference_point],
        processes=processes,
    )
    results = search.run()  # keeps the lock of --output_dir that `main` holds
    if processes.is_main:
        print_summary(results, args)


def lock_output_dir(args: SearchArguments) -> ExitStack:
    """Hold the lock of --output_dir (see [`~hf_nas.utils.output_lock`]) until the returned `ExitStack` closes.
    While another process holds it, end at once with one line naming the lock, or, with --wait_for_lock, say so and
    wait for it up to that many seconds."""
    if args.wait_for_lock:
        stack = ExitStack()
        try:
            stack.enter_context(output_lock(args.output_dir))
            return stack
        except OutputLockedError:
            logger.warning(
                "%s is being written by another process: waiting up to %g s for its lock",
                os.path.abspath(args.output_dir),
                args.wait_for_lock,
            )
    return command_output_lock(args.output_dir, args.wait_for_lock)


def print_summary(results, args: SearchArguments) -> None:
    """The front (pareto_index, record, objectives in units, subnet), the normalized hypervolume, the predictors'
    held-out scores and how to extract a point."""
    print("\n" + results.format_front())
    for name, score in results.predictor_scores.items():
        print(f"predictor {name}: MAE {score['mae']:.4g}, Kendall tau {score['kendall_tau']:.3f} (held-out)")
    print(
        f"\nResults in {os.path.abspath(args.output_dir)}: search_results.json, pareto.csv, pareto.png. Extract a "
        f"point: hf-nas extract --supernet {args.supernet} --results {args.output_dir} --pareto_index N "
        "--output_dir OUT (N from the pareto_index column; --record R takes a record number)."
    )


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


def metric_kwargs(name: str, num_labels: int) -> dict[str, str] | None:
    """The metric's `compute` arguments: F1 over more than two classes is macro-averaged (binary F1 needs two)."""
    return {"average": "macro"} if name == "f1" and num_labels > 2 else None


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
        return TaskMetricObjective(
            dev,
            metric=name,
            batch_size=args.eval_batch_size,
            tokenizer=tokenizer,
            metric_kwargs=metric_kwargs(name, model.config.num_labels),
        )

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
            metric_kwargs=metric_kwargs(name, model.config.num_labels),
            model_kwargs={"interpolate_pos_encoding": True} if interpolate else None,
        )

    return model, metric_objective, {"image_size": image_size}


if __name__ == "__main__":
    main()
