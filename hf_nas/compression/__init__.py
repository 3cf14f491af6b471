"""Compression of extracted subnets: the weights change, the checkpoint stays an ordinary transformers one.

- Sparsity ([`SPARSITY_METHODS`], `hf-nas compress --method`): [`magnitude_prune`] zeroes the smallest-magnitude share
  of the encoder layers' linear weights, globally (or 2 of every 4, `pattern="2:4"`); [`jackpot_prune`] searches a
  Lottery Jackpots mask of the frozen weights (scores, straight-through mask, magnitude initialization, short
  restriction) with distillation from the dense subnet; [`finetune_sparse`] is the baseline that trains the weights
  of a pruned model instead. [`sparsity_report`] measures zeros in any model.
- Quantization ([`QUANTIZATION_METHODS`], `hf-nas compress --quant --bits`): [`nupes_quantize`] (non-uniform, a learned
  power exponent and learned integer codes, block-wise output reconstruction, optionally followed by end-to-end distillation, or data-free) and [`uniform_quantize`]
  (round-to-nearest per channel); the checkpoint holds the dequantized weights and `quantization.safetensors` the
  codes, scales and exponents ([`QuantizationReport`]).
- ONNX ([`export_onnx`], `hf-nas compress --onnx`): export checked against ONNX Runtime, int8 dynamic quantization
  ([`quantize_onnx`]), ONNX Runtime latency ([`measure_onnx_latency`]) and the `onnx_latency` search objective
  ([`OnnxLatencyObjective`], registered on import).

A new sparsity method is one [`SparsityMethod`] entry ([`register_sparsity_method`]).

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

from .jackpot import (
    DistillationConfig,
    JackpotConfig,
    cosine_share,
    distillation_loss,
    finetune_sparse,
    jackpot_prune,
    short_restriction,
)
from .onnx import (
    EXPORTERS,
    OnnxExport,
    OnnxLatencyObjective,
    OnnxRuntimeModel,
    check_onnx,
    example_inputs,
    export_onnx,
    measure_onnx_latency,
    onnx_input_names,
    onnx_session,
    quantize_onnx,
)
from .quantization import (
    GRANULARITIES,
    QUANTIZATION_FILE,
    QUANTIZATION_METHODS,
    SUPPORTED_BITS,
    NupesConfig,
    QuantizationMethod,
    QuantizationReport,
    QuantizedWeight,
    check_bits,
    code_range,
    dequantize,
    get_quantization_method,
    nearest_codes,
    nupes_quantize,
    search_exponents,
    simulate_quantization,
    uniform_quantize,
)
from .sparsity import (
    PATTERNS,
    SPARSITY_METHODS,
    LayerSparsity,
    SparsityMethod,
    SparsityReport,
    check_compressible,
    check_pattern,
    check_sparsity,
    get_sparsity_method,
    magnitude_masks,
    magnitude_prune,
    prunable_weights,
    register_sparsity_method,
    sparsity_report,
)

__all__ = [
    "EXPORTERS",
    "GRANULARITIES",
    "PATTERNS",
    "QUANTIZATION_FILE",
    "QUANTIZATION_METHODS",
    "SPARSITY_METHODS",
    "SUPPORTED_BITS",
    "DistillationConfig",
    "JackpotConfig",
    "LayerSparsity",
    "NupesConfig",
    "OnnxExport",
    "OnnxLatencyObjective",
    "OnnxRuntimeModel",
    "QuantizationMethod",
    "QuantizationReport",
    "QuantizedWeight",
    "SparsityMethod",
    "SparsityReport",
    "check_bits",
    "check_compressible",
    "check_onnx",
    "check_pattern",
    "check_sparsity",
    "code_range",
    "cosine_share",
    "dequantize",
    "distillation_loss",
    "example_inputs",
    "export_onnx",
    "finetune_sparse",
    "get_quantization_method",
    "get_sparsity_method",
    "jackpot_prune",
    "magnitude_masks",
    "magnitude_prune",
    "measure_onnx_latency",
    "nearest_codes",
    "nupes_quantize",
    "onnx_input_names",
    "onnx_session",
    "prunable_weights",
    "quantize_onnx",
    "register_sparsity_method",
    "search_exponents",
    "short_restriction",
    "simulate_quantization",
    "sparsity_report",
    "uniform_quantize",
]
