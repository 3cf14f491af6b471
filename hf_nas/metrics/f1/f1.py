"""Binary or macro-averaged F1 as an `evaluate` module, shipped with hf-nas so evaluation works offline."""

import datasets
import evaluate

_DESCRIPTION = "F1: harmonic mean of precision and recall (binary for pos_label, or averaged over labels)."


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description="predictions and references: lists of int labels; average: 'binary' or 'macro'",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1):
        def f1(label):
            tp = sum(1 for p, r in zip(predictions, references, strict=True) if p == label and r == label)
            fp = sum(1 for p, r in zip(predictions, references, strict=True) if p == label and r != label)
            fn = sum(1 for p, r in zip(predictions, references, strict=True) if p != label and r == label)
            return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

        if average == "binary":
            return {"f1": float(f1(pos_label))}
        if average == "macro":
            labels = sorted(set(references) | set(predictions))
            return {"f1": float(sum(f1(label) for label in labels) / max(len(labels), 1))}
        raise ValueError(f"Unknown average {average!r}; allowed: 'binary', 'macro'.")
