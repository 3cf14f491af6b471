"""hf-nas: neural architecture search for Hugging Face Transformers.

Importing `hf_nas` registers the elastic model types with `AutoConfig` / `AutoModel*`, so a saved supernet reloads
with the Auto classes.
"""

__version__ = "0.1.0"

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from . import extraction
from .costs import LatencyResult, count_macs, count_macs_measured, count_parameters, measure_latency, time_forward
from .extraction import extract_subnet, save_subnet
from .importance import reorder_by_importance
from .models.bert import (
    BertSubnetConfig,
    BertSubnetForMaskedLM,
    BertSubnetForQuestionAnswering,
    BertSubnetForSequenceClassification,
    BertSubnetForTokenClassification,
    BertSubnetModel,
    ElasticBertConfig,
    ElasticBertForMaskedLM,
    ElasticBertForQuestionAnswering,
    ElasticBertForSequenceClassification,
    ElasticBertForTokenClassification,
    ElasticBertModel,
)
from .search_space import SearchSpace, SubnetConfig


def _register() -> None:
    auto_classes = {
        AutoModel: (ElasticBertModel, BertSubnetModel),
        AutoModelForSequenceClassification: (
            ElasticBertForSequenceClassification,
            BertSubnetForSequenceClassification,
        ),
        AutoModelForTokenClassification: (ElasticBertForTokenClassification, BertSubnetForTokenClassification),
        AutoModelForQuestionAnswering: (ElasticBertForQuestionAnswering, BertSubnetForQuestionAnswering),
        AutoModelForMaskedLM: (ElasticBertForMaskedLM, BertSubnetForMaskedLM),
    }
    AutoConfig.register(ElasticBertConfig.model_type, ElasticBertConfig, exist_ok=True)
    AutoConfig.register(BertSubnetConfig.model_type, BertSubnetConfig, exist_ok=True)
    # Saving a per-layer subnet copies its modeling file into the folder and writes `auto_map`.
    BertSubnetConfig.register_for_auto_class()
    for auto_class, (elastic_class, subnet_class) in auto_classes.items():
        auto_class.register(ElasticBertConfig, elastic_class, exist_ok=True)
        auto_class.register(BertSubnetConfig, subnet_class, exist_ok=True)
        subnet_class.register_for_auto_class(auto_class.__name__)
        extraction.SUBNET_CLASSES[elastic_class.static_class_name] = subnet_class
    extraction.SUBNET_CONFIG_CLASSES[ElasticBertConfig.model_type] = BertSubnetConfig


_register()

__all__ = [
    "BertSubnetConfig",
    "BertSubnetForMaskedLM",
    "BertSubnetForQuestionAnswering",
    "BertSubnetForSequenceClassification",
    "BertSubnetForTokenClassification",
    "BertSubnetModel",
    "ElasticBertConfig",
    "ElasticBertForMaskedLM",
    "ElasticBertForQuestionAnswering",
    "ElasticBertForSequenceClassification",
    "ElasticBertForTokenClassification",
    "ElasticBertModel",
    "LatencyResult",
    "SearchSpace",
    "SubnetConfig",
    "__version__",
    "count_macs",
    "count_macs_measured",
    "count_parameters",
    "extract_subnet",
    "measure_latency",
    "reorder_by_importance",
    "save_subnet",
    "time_forward",
]
