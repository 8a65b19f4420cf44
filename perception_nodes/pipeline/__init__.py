"""The ROS-free perception pipeline (Frame -> Outputs) with interchangeable labellers."""
from perception_nodes.pipeline.core import Pipeline
from perception_nodes.pipeline.labellers import (EnsembleLabeller, PointFeatures, StudentLabeller,
                                                 TeacherLabeller)

__all__ = ['Pipeline', 'TeacherLabeller', 'StudentLabeller', 'EnsembleLabeller', 'PointFeatures']
