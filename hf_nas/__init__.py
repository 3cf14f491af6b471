"""hf-nas: neural architecture search for Hugging Face Transformers.

Importing `hf_nas` registers the elastic model types with `AutoConfig` / `AutoModel*`, so a saved supernet reloads
with the Auto classes.
"""

__version__ = "0.1.0"

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping

from . import extraction
from .costs import LatencyResult, count_macs, count_macs_measured, count_parameters, measure_latency, time_forward
from .extraction import extract_subnet, save_subnet
from .importance import rank_layers, reorder_by_importance
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
from .models.vit import (
    ElasticViTConfig,
    ElasticViTForImageClassification,
    ElasticViTModel,
    ViTSubnetConfig,
    ViTSubnetForImageClassification,
    ViTSubnetModel,
)
from .search_space import SearchSpace, SubnetConfig


def _register() -> None:
    families = [
        (
            ElasticBertConfig,
            BertSubnetConfig,
            {
                AutoModel: (ElasticBertModel, BertSubnetModel),
                AutoModelForSequenceClassification: (
                    ElasticBertForSequenceClassification,
                    BertSubnetForSequenceClassification,
                ),
                AutoModelForTokenClassification: (ElasticBertForTokenClassification, BertSubnetForTokenClassification),
                AutoModelForQuestionAnswering: (ElasticBertForQuestionAnswering, BertSubnetForQuestionAnswering),
                AutoModelForMaskedLM: (ElasticBertForMaskedLM, BertSubnetForMaskedLM),
            },
        ),
        (
            ElasticViTConfig,
            ViTSubnetConfig,
            {
                AutoModel: (ElasticViTModel, ViTSubnetModel),
                AutoModelForImageClassification: (ElasticViTForImageClassification, ViTSubnetForImageClassification),
            },
        ),
        (
            ElasticBeitConfig,
            BeitSubnetConfig,
            {
                AutoModel: (ElasticBeitModel, BeitSubnetModel),
                AutoModelForImageClassification: (
                    ElasticBeitForImageClassification,
                    BeitSubnetForImageClassification,
                ),
            },
        ),
    ]
    # transformers converts the legacy ViT/BEiT key layout (`encoder.layer.N.attention.attention.query`, ...) by
    # model class name, on load and (reversed) on save; the elastic base models share the vanilla ones' mapping.
    for elastic_name, vanilla_name in (("ElasticViTModel", "ViTModel"), ("ElasticBeitModel", "BeitModel")):
        conversion = get_checkpoint_conversion_mapping(vanilla_name)
        if conversion is not None:
            register_checkpoint_conversion_mapping(elastic_name, conversion, overwrite=True)
    for elastic_config, subnet_config, auto_classes in families:
        AutoConfig.register(elastic_config.model_type, elastic_config, exist_ok=True)
        AutoConfig.register(subnet_config.model_type, subnet_config, exist_ok=True)
        # Saving a per-layer subnet copies its modeling file into the folder and writes `auto_map`.
        subnet_config.register_for_auto_class()
        for auto_class, (elastic_class, subnet_class) in auto_classes.items():
            auto_class.register(elastic_config, elastic_class, exist_ok=True)
            auto_class.register(subnet_config, subnet_class, exist_ok=True)
            subnet_class.register_for_auto_class(auto_class.__name__)
            extraction.SUBNET_CLASSES[elastic_class.static_class_name] = subnet_class
        extraction.SUBNET_CONFIG_CLASSES[elastic_config.model_type] = subnet_config


_register()

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
    "LatencyResult",
    "SearchSpace",
    "SubnetConfig",
    "ViTSubnetConfig",
    "ViTSubnetForImageClassification",
    "ViTSubnetModel",
    "__version__",
    "count_macs",
    "count_macs_measured",
    "count_parameters",
    "extract_subnet",
    "measure_latency",
    "rank_layers",
    "reorder_by_importance",
    "save_subnet",
    "time_forward",
]
