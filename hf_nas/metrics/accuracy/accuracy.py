"""Accuracy as an `evaluate` module, shipped with hf-nas so evaluation works offline."""

import datasets
import evaluate

_DESCRIPTION = "Accuracy: the fraction of predictions equal to the references."


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description="predictions and references: lists of int labels of equal length",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, sample_weight=None):
        if len(predictions) == 0:
            return {"accuracy": float("nan")}
        weights = sample_weight or [1.0] * len(predictions)
        hits = sum(w for p, r, w in zip(predictions, references, weights, strict=True) if p == r)
        return {"accuracy": float(hits / sum(weights))}
