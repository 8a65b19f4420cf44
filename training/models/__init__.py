"""Training-only modules (never exported): Affinity3D KT branch, CNS 2D net + latents, UnScene3D head."""
from training.models.affinity_branch import (GatedFusion, KnowledgeTransferBranch, KnowledgeTransferConfig,
                                             KnowledgeTransferOutput, ResNet34Encoder)
from training.models.cns_2d import CNS2DNet, LatentConfig, LatentProjections
from training.models.instance_head import InstanceHeadConfig, InstancePrediction, QueryMaskDecoder
from training.models.weights import WeightsError, load_pretrained, load_state_dict_file

__all__ = ['CNS2DNet', 'GatedFusion', 'InstanceHeadConfig', 'InstancePrediction', 'KnowledgeTransferBranch',
           'KnowledgeTransferConfig', 'KnowledgeTransferOutput', 'LatentConfig', 'LatentProjections',
           'QueryMaskDecoder', 'ResNet34Encoder', 'WeightsError', 'load_pretrained', 'load_state_dict_file']
