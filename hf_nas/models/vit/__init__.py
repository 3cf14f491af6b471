from .configuration_elastic_vit import ElasticViTConfig
from .modeling_elastic_vit import (
    ElasticViTForImageClassification,
    ElasticViTModel,
    ElasticViTPreTrainedModel,
)
from .modeling_vit_subnet import ViTSubnetConfig, ViTSubnetForImageClassification, ViTSubnetModel

__all__ = [
    "ElasticViTConfig",
    "ElasticViTForImageClassification",
    "ElasticViTModel",
    "ElasticViTPreTrainedModel",
    "ViTSubnetConfig",
    "ViTSubnetForImageClassification",
    "ViTSubnetModel",
]
