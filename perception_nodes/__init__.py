"""perception_nodes: open-vocabulary 3D perception for ROS 2.

Everything in this package except :mod:`perception_nodes.nodes` runs without ROS.
"""
__version__ = '0.1.0'
