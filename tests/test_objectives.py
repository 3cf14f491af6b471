"""Objectives: the registry, analytic costs equal the cost functions, latency is well formed, and the task metric
equals a manual evaluation with the subnet active, from batches built once."""

from __future__ import annotations

import json
import math
from typing import Any

import datasets
import pytest
import torch
from sklearn.metrics import f1_score

from hf_nas import SubnetConfig, count_macs, count_parameters
from hf_nas.search.objectives import (
    OBJECTIVES,
    LatencyObjective,
    MacsObjective,
    Objective,
    ParametersObjective,
    TaskMetricObjective,
    get_objective,
    register_objective,
)

from .conftest import TINY, make_supernet

BUILT_INS = {
    "params": (ParametersObjective, "minimize", True),
    "macs": (MacsObjective, "minimize", True),
    "latency": (LatencyObjective, "minimize", False),
    "accuracy": (TaskMetricObjective, "maximize", False),
}


def spread_weights(model, seed: int = 0):
    """Redraw every linear weight with std 1/sqrt(fan_in): BERT's std-0.02 initialization makes a tiny random model
    predict one class for every input and every subnet, which would hide a subnet that is not really applied."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                weight = torch.randn(module.weight.shape, generator=generator)  # (out, in)
                module.weight.copy_(weight / math.sqrt(module.in_features))
    return model


@pytest.fixture(scope="module")
def classifier():
    """A tiny ElasticBertForSequenceClassification (3 labels) with random LayerNorms, biases and well-spread weights,
    in eval mode."""
    return spread_weights(make_supernet("BertForSequenceClassification", seed=0))


def subnets(model) -> list[SubnetConfig]:
    space = model.search_space
    return [space.largest(), space.smallest(), space.middle(), *(space.sample(seed=s) for s in range(3))]


def random_examples(n: int = 23, seed: int = 0, num_labels: int = TINY["num_labels"]) -> list[dict[str, Any]]:
    """Tokenized examples of different lengths, with a `label` and a raw-text column the objective must drop."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(n):
        length = int(torch.randint(2, 12, (1,), generator=generator))
        examples.append(
            {
                "input_ids": torch.randint(1, TINY["vocab_size"], (length,), generator=generator).tolist(),
                "attention_mask": [1] * length,
                "token_type_ids": torch.randint(0, 2, (length,), generator=generator).tolist(),
                "label": int(torch.randint(0, num_labels, (1,), generator=generator)),
                "sentence": f"example {i}",
            }
        )
    return examples


@torch.no_grad()
def manual_predictions(model, subnet: SubnetConfig, examples: list[dict[str, Any]]) -> list[int]:
    """One unpadded forward per example with `subnet` active: the reference the batched objective must match."""
    predictions = []
    with model.subnet(subnet):
        for example in examples:
            inputs = {k: torch.tensor([example[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            predictions.append(int(model(**inputs).logits.argmax(-1)))
    return predictions


def accuracy(predictions: list[int], labels: list[int]) -> float:
    return sum(p == r for p, r in zip(predictions, labels, strict=True)) / len(labels)


# ----------------------------------------------------------------------------------------------------------------
# registry
def test_built_ins_are_registered():
    for name, (cls, direction, cheap) in BUILT_INS.items():
        assert OBJECTIVES[name] is cls
        assert (cls.name, cls.direction, cls.cheap) == (name, direction, cheap)
        assert issubclass(cls, Objective)


def test_register_and_get_a_new_objective():
    @register_objective
    class DepthObjective(Objective):
        name = "test_depth"
        direction = "minimize"
        cheap = True

        def __init__(self, scale: float = 1.0):
            self.scale = scale

        def __call__(self, model, subnet):
            return self.scale * subnet.num_hidden_layers

    try:
        objective = get_objective("test_depth", scale=2.0)
        assert isinstance(objective, DepthObjective)
        assert objective(None, SubnetConfig.uniform(3, 4, 64, 32)) == 6.0
        assert objective.describe() == {"name": "test_depth", "direction": "minimize"}
        assert register_objective(DepthObjective) is DepthObjective  # registering the same class again is harmless
    finally:
        del OBJECTIVES["test_depth"]


def test_register_rejects_bad_classes():
    class Base(Objective):
        name = "params"  # taken by ParametersObjective
        direction = "minimize"
        cheap = True

        def __call__(self, model, subnet):
            return 0.0

    with pytest.raises(ValueError, match="'params' is registered already"):
        register_objective(Base)

    class Sideways(Base):
        name = "test_sideways"
        direction = "sideways"

    with pytest.raises(ValueError, match="direction='sideways'.*'maximize', 'minimize'"):
        register_objective(Sideways)

    class NoName(Base):
        name = ""

    with pytest.raises(TypeError, match="name must be a non-empty str"):
        register_objective(NoName)

    class NotCheapFlag(Base):
        name = "test_flag"
        cheap = "yes"

    with pytest.raises(TypeError, match="cheap must be a bool"):
        register_objective(NotCheapFlag)

    with pytest.raises(TypeError, match="subclass of Objective"):
        register_objective(dict)
    assert not {"test_sideways", "test_flag", ""} & set(OBJECTIVES)


def test_get_objective_errors():
    with pytest.raises(ValueError, match=r"Unknown objective 'acc'; allowed: \[.*'accuracy'.*'latency'.*'macs'"):
        get_objective("acc")
    with pytest.raises(
        TypeError, match=r"'macs'.*allowed keyword arguments: \['sequence_length', 'batch_size', 'image_size'\]"
    ):
        get_objective("macs", seq_len=128)
    with pytest.raises(TypeError, match="'accuracy'.*dataset"):
        get_objective("accuracy")  # the dataset is required
    with pytest.raises(TypeError, match="str naming an objective"):
        get_objective(ParametersObjective)


def test_objectives_require_a_supernet(classifier):
    vanilla = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="elastic supernet.*Linear"):
        ParametersObjective()(vanilla, classifier.search_space.smallest())


# ----------------------------------------------------------------------------------------------------------------
# analytic costs
def test_params_equal_count_parameters(classifier):
    objective = get_objective("params")
    for subnet in subnets(classifier):
        value = objective(classifier, subnet)
        assert isinstance(value, float)
        assert value == count_parameters(classifier, subnet)


def test_macs_equal_count_macs(classifier):
    short, batched = get_objective("macs", sequence_length=64), get_objective("macs", sequence_length=16, batch_size=3)
    for subnet in subnets(classifier):
        assert short(classifier, subnet) == count_macs(classifier, subnet, sequence_length=64, batch_size=1)
        assert batched(classifier, subnet) == count_macs(classifier, subnet, sequence_length=16, batch_size=3)
    assert batched.describe() == {"name": "macs", "direction": "minimize", "sequence_length": 16, "batch_size": 3}
    assert MacsObjective().describe()["sequence_length"] == 128


def test_costs_reject_subnets_outside_the_space(classifier):
    outside = SubnetConfig.uniform(3, 4, 40, 32)  # FFN width 40 is not a choice
    with pytest.raises(ValueError, match="intermediate_size"):
        ParametersObjective()(classifier, outside)


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (MacsObjective, {"sequence_length": 0}, ValueError, "sequence_length"),
        (MacsObjective, {"batch_size": 1.5}, TypeError, "batch_size"),
        (LatencyObjective, {"min_run_time": 0}, ValueError, "min_run_time"),
        (LatencyObjective, {"device": "toaster"}, ValueError, "device"),
        (LatencyObjective, {"num_threads": 0}, ValueError, "num_threads"),
        (LatencyObjective, {"max_relative_iqr": -0.1}, ValueError, "max_relative_iqr"),
        (LatencyObjective, {"max_rounds": 0}, ValueError, "max_rounds"),
        (LatencyObjective, {"on_noisy": "drop"}, ValueError, "on_noisy"),
    ],
)
def test_bad_settings(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# latency
def test_latency_is_a_positive_float(classifier):
    objective = get_objective("latency", sequence_length=8, min_run_time=0.05, num_threads=1)
    active = classifier.active_subnet
    value = objective(classifier, classifier.search_space.smallest())
    assert isinstance(value, float) and value > 0 and math.isfinite(value)
    assert classifier.active_subnet == active  # the supernet is not changed: the extracted copy is timed
    assert not classifier.training


def test_latency_describe():
    described = LatencyObjective(batch_size=2, sequence_length=32, num_threads=3, min_run_time=0.25).describe()
    assert {k: v for k, v in described.items() if k != "hardware"} == {
        "name": "latency",
        "direction": "minimize",
        "batch_size": 2,
        "sequence_length": 32,
        "device": "cpu",
        "num_threads": 3,
        "min_run_time": 0.25,
        "warmup_runs": 5,
        "max_relative_iqr": 0.25,
        "max_rounds": 3,
        "unit": "ms",
    }
    assert isinstance(described["hardware"], str) and described["hardware"]
    assert LatencyObjective().describe()["num_threads"] == torch.get_num_threads()  # None is resolved
    json.dumps(described)


# ----------------------------------------------------------------------------------------------------------------
# task metric
def test_accuracy_equals_manual_evaluation(classifier):
    examples = random_examples()
    space = classifier.search_space
    # label every example with the largest subnet's prediction: it then scores 1, and other subnets their own value
    reference = manual_predictions(classifier, space.largest(), examples)
    examples = [{**e, "label": p} for e, p in zip(examples, reference, strict=True)]
    labels = [e["label"] for e in examples]
    objective = TaskMetricObjective(examples, batch_size=5)  # 23 examples: a last, partial batch

    assert objective(classifier, space.largest()) == 1.0
    values = set()
    for subnet in subnets(classifier):
        expected = accuracy(manual_predictions(classifier, subnet, examples), labels)
        value = objective(classifier, subnet)
        assert isinstance(value, float)
        assert value == pytest.approx(expected, abs=1e-12)
        values.add(value)
    assert len(values) > 1, "the subnets should not all score alike"


def test_accuracy_restores_subnet_and_training_mode(classifier):
    space = classifier.search_space
    objective = TaskMetricObjective(random_examples(n=6), batch_size=4)
    classifier.set_subnet(space.middle())
    try:
        classifier.train()
        objective(classifier, space.smallest())
        assert classifier.training
        assert classifier.active_subnet == space.middle()
        classifier.eval()
        objective(classifier, space.smallest())
        assert not classifier.training
        assert classifier.active_subnet == space.middle()
    finally:
        classifier.reset_supernet()
        classifier.eval()


def test_accuracy_restores_on_error(classifier):
    space = classifier.search_space

    def bad_labels(features):  # labels of the wrong shape make the evaluation fail mid-way
        return {
            "input_ids": torch.tensor([f["input_ids"][:2] for f in features]),
            "labels": torch.zeros(len(features), 2),
        }

    objective = TaskMetricObjective(random_examples(n=4), batch_size=2, collate_fn=bad_labels)
    before = classifier.active_subnet
    classifier.train()
    try:
        with pytest.raises(ValueError, match="logits of shape"):
            objective(classifier, space.smallest())
        assert classifier.training
        assert classifier.active_subnet == before
    finally:
        classifier.eval()


class CountingDataset:
    """An iterable of examples that counts how often it is read."""

    def __init__(self, examples):
        self.examples = examples
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        return iter(self.examples)


def test_batches_are_built_once(classifier):
    dataset = CountingDataset(random_examples(n=10))
    objective = TaskMetricObjective(dataset, batch_size=4)
    assert dataset.reads == 1
    batches = objective.batches
    tensors = [(inputs["input_ids"], labels) for inputs, labels in batches]
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    for subnet in subnets(classifier)[:3]:
        objective(classifier, subnet)
    assert dataset.reads == 1  # never read again
    assert objective.batches is batches
    for (inputs, labels), (input_ids, cached_labels) in zip(objective.batches, tensors, strict=True):
        assert inputs["input_ids"] is input_ids and labels is cached_labels


def test_default_collate_pads_with_zeros_and_drops_text():
    examples = random_examples(n=3)
    objective = TaskMetricObjective(examples, batch_size=3)
    [(inputs, labels)] = objective.batches
    longest = max(len(e["input_ids"]) for e in examples)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert inputs["input_ids"].shape == (3, longest)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert inputs["input_ids"][row, :n].tolist() == example["input_ids"]
        assert inputs["input_ids"][row, n:].eq(0).all() and inputs["attention_mask"][row, n:].eq(0).all()
    assert labels.tolist() == [e["label"] for e in examples] and labels.dtype == torch.long


def test_datasets_dataset_and_labels_column(classifier):
    examples = random_examples(n=9)
    from_list = TaskMetricObjective(examples, batch_size=4)
    dataset = datasets.Dataset.from_list([{**e, "labels": e.pop("label")} for e in random_examples(n=9)])
    from_dataset = TaskMetricObjective(dataset, batch_size=4)
    assert from_dataset.describe()["data_hash"] == from_list.describe()["data_hash"]
    subnet = classifier.search_space.smallest()
    assert from_dataset(classifier, subnet) == from_list(classifier, subnet)


def test_tokenizer_collate(classifier, tmp_path):
    from transformers import BertTokenizerFast

    words = [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    texts = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9 w10", "w11 w12"]
    examples = [{**tokenizer(t), "label": i % 3, "text": t} for i, t in enumerate(texts)]
    with_tokenizer = TaskMetricObjective(examples, batch_size=3, tokenizer=tokenizer)
    with_default = TaskMetricObjective(examples, batch_size=3)  # [PAD] has id 0 too
    assert with_tokenizer.describe()["data_hash"] == with_default.describe()["data_hash"]
    subnet = classifier.search_space.sample(seed=1)
    assert with_tokenizer(classifier, subnet) == with_default(classifier, subnet)
    with pytest.raises(ValueError, match="either `collate_fn` or `tokenizer`"):
        TaskMetricObjective(examples, tokenizer=tokenizer, collate_fn=lambda features: features)


def test_f1_names_the_objective(classifier):
    examples = random_examples(n=17, seed=3)
    objective = get_objective("accuracy", dataset=examples, metric="f1", metric_kwargs={"average": "macro"})
    assert objective.name == "f1" and TaskMetricObjective.name == "accuracy"
    assert objective.direction == "maximize" and not objective.cheap
    subnet = classifier.search_space.smallest()
    predictions = manual_predictions(classifier, subnet, examples)
    labels = [e["label"] for e in examples]
    expected = f1_score(labels, predictions, average="macro", labels=sorted(set(labels) | set(predictions)))
    assert objective(classifier, subnet) == pytest.approx(expected)


def test_token_classification_ignores_padded_labels():
    model = spread_weights(make_supernet("BertForTokenClassification", seed=1), seed=1)
    examples = random_examples(n=7, seed=4)
    generator = torch.Generator().manual_seed(5)
    for e in examples:
        e["labels"] = torch.randint(0, TINY["num_labels"], (len(e["input_ids"]),), generator=generator).tolist()
        del e["label"]
    subnet = model.search_space.sample(seed=2)
    hits = total = 0
    with torch.no_grad(), model.subnet(subnet):
        for e in examples:
            inputs = {k: torch.tensor([e[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            predictions = model(**inputs).logits.argmax(-1)[0].tolist()  # (T,)
            hits += sum(p == r for p, r in zip(predictions, e["labels"], strict=True))
            total += len(e["labels"])
    objective = TaskMetricObjective(examples, batch_size=3)
    assert objective(model, subnet) == pytest.approx(hits / total)


def test_task_metric_describe(classifier):
    examples = random_examples(n=10)
    objective = TaskMetricObjective(examples, batch_size=4, device="cpu")
    described = objective.describe()
    assert described == {
        "name": "accuracy",
        "direction": "maximize",
        "metric": "accuracy",
        "metric_kwargs": {},
        "batch_size": 4,
        "num_examples": 10,
        "device": "cpu",
        "data_hash": described["data_hash"],
    }
    assert len(described["data_hash"]) == 64
    json.dumps(described)
    # another validation set, or other labels, is told apart
    changed = [{**e, "label": (e["label"] + 1) % 3} for e in examples]
    assert TaskMetricObjective(changed, batch_size=4).describe()["data_hash"] != described["data_hash"]
    assert TaskMetricObjective(examples[:-1], batch_size=4).describe()["num_examples"] == 9
    assert 0.0 <= objective(classifier, classifier.search_space.smallest()) <= 1.0


@pytest.mark.parametrize(
    ("dataset", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "empty"),
        ([{"input_ids": [1, 2], "attention_mask": [1, 1]}], {}, ValueError, "label column"),
        ([{"text": "no tokens", "label": 0}], {}, ValueError, "model inputs"),
        (["not a dict"], {}, TypeError, r"dataset\[0\]"),
        ({"input_ids": [[1]], "label": [0]}, {}, TypeError, "datasets.Dataset` or a list of dicts"),
        ([{"input_ids": [1], "label": 0}], {"batch_size": 0}, ValueError, "batch_size"),
        ([{"input_ids": [1], "label": 0}], {"metric": None}, TypeError, "metric"),
        ([{"input_ids": [1], "label": 0}], {"metric_kwargs": "macro"}, TypeError, "metric_kwargs"),
        (
            [{"input_ids": [1], "label": 0}],
            {"collate_fn": lambda f: {"input_ids": torch.ones(1)}},
            ValueError,
            "labels",
        ),
    ],
)
def test_task_metric_bad_inputs(dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        TaskMetricObjective(dataset, **kwargs)


def test_task_metric_requires_a_supernet(classifier):
    objective = TaskMetricObjective(random_examples(n=2))
    with pytest.raises(TypeError, match="elastic supernet"):
        objective(torch.nn.Linear(2, 2), classifier.search_space.smallest())


def test_module_exports():
    import hf_nas.search.objectives as module

    assert module.__all__ == sorted(module.__all__)
    assert set(BUILT_INS) <= set(OBJECTIVES)
