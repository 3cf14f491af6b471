from .configuration_elastic_bert import ElasticBertConfig
from .modeling_bert_subnet import (
    BertSubnetConfig,
    BertSubnetForMaskedLM,
    BertSubnetForQuestionAnswering,
    BertSubnetForSequenceClassification,
    BertSubnetForTokenClassification,
    BertSubnetModel,
)
from .modeling_elastic_bert import (
    ElasticBertForMaskedLM,
    ElasticBertForQuestionAnswering,
    ElasticBertForSequenceClassification,
    ElasticBertForTokenClassification,
    ElasticBertModel,
    ElasticBertPreTrainedModel,
)

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
    "ElasticBertPreTrainedModel",
]
