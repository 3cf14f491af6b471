"""`evaluate` modules shipped with hf-nas (loadable offline) and a `compute_metrics` builder for the Trainer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["BUNDLED_METRICS", "build_compute_metrics", "load_metric"]

_HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED_METRICS = tuple(sorted(n for n in os.listdir(_HERE) if os.path.isfile(os.path.join(_HERE, n, f"{n}.py"))))


def load_metric(name: str) -> Any:
    """`evaluate.load(name)`, from the copy shipped with hf-nas when there is one (so it works offline)."""
    import evaluate

    if name in BUNDLED_METRICS:
        return evaluate.load(os.path.join(_HERE, name))
    try:
        return evaluate.load(name)
    except Exception as e:  # evaluate raises FileNotFoundError, ConnectionError, ... when offline
        raise ValueError(
            f"Cannot load the metric {name!r} ({e}). Metrics available offline: {list(BUNDLED_METRICS)}."
        ) from e


def build_compute_metrics(names: Sequence[str] = ("accuracy",)) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for classification: argmax of the logits against the labels, through `evaluate`.

    ```python
    >>> import numpy as np
    >>> from transformers import EvalPrediction
    >>> from hf_nas.metrics import build_compute_metrics
    >>> compute_metrics = build_compute_metrics(["accuracy", "f1"])
    >>> logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    >>> metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([1, 0, 0])))
    >>> {name: round(value, 3) for name, value in metrics.items()}
    {'accuracy': 0.667, 'f1': 0.667}
    ```
    """
    metrics = [load_metric(name) for name in names]

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.argmax(logits, axis=-1)
        result: dict[str, float] = {}
        for metric in metrics:
            result.update(metric.compute(predictions=predictions.tolist(), references=labels.tolist()))
        return result

    return compute_metrics
