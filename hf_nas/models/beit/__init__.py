from .configuration_elastic_beit import ElasticBeitConfig
from .modeling_beit_subnet import BeitSubnetConfig, BeitSubnetForImageClassification, BeitSubnetModel
from .modeling_elastic_beit import (
    ElasticBeitForImageClassification,
    ElasticBeitModel,
    ElasticBeitPreTrainedModel,
)

__all__ = [
    "BeitSubnetConfig",
    "BeitSubnetForImageClassification",
    "BeitSubnetModel",
    "ElasticBeitConfig",
    "ElasticBeitForImageClassification",
    "ElasticBeitModel",
    "ElasticBeitPreTrainedModel",
]
