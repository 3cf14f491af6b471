"""hf-nas: neural architecture search for Hugging Face Transformers.

Importing `hf_nas` registers the elastic and per-layer subnet model types of every family in
`hf_nas.models.families` with `AutoConfig` / `AutoModel*`, so saved supernets and extracted subnets reload with the
Auto classes.
"""

__version__ = "0.1.0"

from .costs import LatencyResult, NoisyLatencyError, count_macs, count_parameters, measure_latency, time_forward
from .extraction import extract_subnet, save_subnet
from .gradient import GradientSearchArguments, GradientSearchTrainer
from .hub import build_model_card, export_subnet, push_subnet_folder
from .importance import rank_layers, reorder_by_importance
from .models.auto import register_auto_classes
from .models.beit import (
    BeitSubnetConfig,
    BeitSubnetForImageClassification,
    BeitSubnetModel,
    ElasticBeitConfig,
    ElasticBeitForImageClassification,
    ElasticBeitModel,
)
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
from .models.families import FAMILIES, ModelFamily, get_family, register_family
from .models.vit import (
    ElasticViTConfig,
    ElasticViTForImageClassification,
    ElasticViTModel,
    ViTSubnetConfig,
    ViTSubnetForImageClassification,
    ViTSubnetModel,
)
from .search import SearchResults, SubnetSearch
from .search_space import SearchSpace, SubnetConfig
from .training import RecipeArguments, SupernetTrainer, SupernetTrainingArguments

for _family in FAMILIES.values():
    register_auto_classes(_family)

__all__ = [
    "BeitSubnetConfig",
    "BeitSubnetForImageClassification",
    "BeitSubnetModel",
    "BertSubnetConfig",
    "BertSubnetForMaskedLM",
    "BertSubnetForQuestionAnswering",
    "BertSubnetForSequenceClassification",
    "BertSubnetForTokenClassification",
    "BertSubnetModel",
    "ElasticBeitConfig",
    "ElasticBeitForImageClassification",
    "ElasticBeitModel",
    "ElasticBertConfig",
    "ElasticBertForMaskedLM",
    "ElasticBertForQuestionAnswering",
    "ElasticBertForSequenceClassification",
    "ElasticBertForTokenClassification",
    "ElasticBertModel",
    "ElasticViTConfig",
    "ElasticViTForImageClassification",
    "ElasticViTModel",
    "GradientSearchArguments",
    "GradientSearchTrainer",
    "LatencyResult",
    "ModelFamily",
    "NoisyLatencyError",
    "RecipeArguments",
    "SearchResults",
    "SearchSpace",
    "SubnetConfig",
    "SubnetSearch",
    "SupernetTrainer",
    "SupernetTrainingArguments",
    "ViTSubnetConfig",
    "ViTSubnetForImageClassification",
    "ViTSubnetModel",
    "__version__",
    "build_model_card",
    "count_macs",
    "count_parameters",
    "export_subnet",
    "extract_subnet",
    "get_family",
    "measure_latency",
    "push_subnet_folder",
    "rank_layers",
    "register_auto_classes",
    "register_family",
    "reorder_by_importance",
    "save_subnet",
    "time_forward",
]
