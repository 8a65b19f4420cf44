"""The ROS-free perception pipeline (Frame -> Outputs) and its fusion maths."""
from perception_nodes.pipeline.core import Pipeline
from perception_nodes.pipeline.fusion import FeatureAccumulator, classify, vote_segments

__all__ = ['Pipeline', 'FeatureAccumulator', 'classify', 'vote_segments']
