"""Training losses of the five papers (Affinity3D, POP-3D, CNS, ScanNet200, UnScene3D), and a combinator."""
from training.losses.combine import (LOSS_TYPES, LossOutput, LossSpec, NonFiniteLossError, WeightedSumLoss,
                                     build_loss_module)
from training.losses.common import DEFAULT_LOGIT_SCALE
from training.losses.consistency import latent_consistency, pool_by_region, prediction_consistency
from training.losses.instance import (InstanceLossConfig, batch_instance_losses, droploss_keep,
                                      hungarian_match, instance_losses, mask_iou, matching_cost)
from training.losses.knowledge_transfer import kl_divergence, visible_kl, visible_kl_layers
from training.losses.language import (ContrastiveConfig, class_balanced_focal, sample_negatives,
                                      text_anchored_contrastive)
from training.losses.lovasz import IGNORE_INDEX, lovasz_softmax, lovasz_softmax_logits
from training.losses.occupancy import feature_mse, gather_voxel_features, occupancy_loss, pop3d_loss
from training.losses.segmentation import affinity3d_segmentation_loss, weighted_cross_entropy

__all__ = [
    'DEFAULT_LOGIT_SCALE', 'IGNORE_INDEX', 'LOSS_TYPES', 'ContrastiveConfig', 'InstanceLossConfig',
    'LossOutput', 'LossSpec', 'NonFiniteLossError', 'WeightedSumLoss', 'affinity3d_segmentation_loss',
    'batch_instance_losses',
    'build_loss_module', 'class_balanced_focal', 'droploss_keep', 'feature_mse', 'gather_voxel_features',
    'hungarian_match', 'instance_losses', 'kl_divergence', 'latent_consistency', 'lovasz_softmax',
    'lovasz_softmax_logits', 'mask_iou', 'matching_cost', 'occupancy_loss', 'pool_by_region', 'pop3d_loss',
    'prediction_consistency', 'sample_negatives', 'text_anchored_contrastive', 'visible_kl',
    'visible_kl_layers', 'weighted_cross_entropy',
]
