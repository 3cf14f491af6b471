"""Compression of extracted subnets: the weights change, the checkpoint stays an ordinary transformers one.

[`magnitude_prune`] zeroes the smallest-magnitude share of the encoder layers' linear weights of a subnet (or a
vanilla BERT, ViT or BEiT model), globally and unstructured; [`sparsity_report`] measures those zeros in any model.
[`SPARSITY_METHODS`] is the registry of sparsity methods that `hf-nas compress --method` chooses from: a new method is
one [`SparsityMethod`] entry.

Example:

```python
>>> from transformers import BertConfig, BertForSequenceClassification
>>> from hf_nas.compression import SPARSITY_METHODS
>>> model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
...                                                  num_attention_heads=4, intermediate_size=64))
>>> report = SPARSITY_METHODS["magnitude"](model, 0.25)
>>> f"{report.share:.2f}", len(report.layers)  # 6 linear layers in each of the 2 encoder layers
('0.25', 12)
```
"""

from __future__ import annotations

from .sparsity import (
    SPARSITY_METHODS,
    LayerSparsity,
    SparsityMethod,
    SparsityReport,
    check_sparsity,
    get_sparsity_method,
    magnitude_prune,
    prunable_weights,
    sparsity_report,
)

__all__ = [
    "SPARSITY_METHODS",
    "LayerSparsity",
    "SparsityMethod",
    "SparsityReport",
    "check_sparsity",
    "get_sparsity_method",
    "magnitude_prune",
    "prunable_weights",
    "sparsity_report",
]
