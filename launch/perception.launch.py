"""Start the perception nodes (and RViz).

    ros2 launch perception_nodes perception.launch.py mode:=fusion \
        lidar_topic:=/kitti/velo/pointcloud cameras:=/kitti/camera_color_left/image_raw rviz:=true
    ros2 launch perception_nodes perception.launch.py mode:=student student_model:=/models/student.onnx

Arguments left empty keep the values of ``params_file`` (config/perception.yaml by default).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from perception_nodes.runtime.launch_args import MODES, launch_overrides, nodes_for_mode

PACKAGE = 'perception_nodes'


def _nodes(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    actions = []
    for name in nodes_for_mode(arg('mode')):
        overrides = launch_overrides(name, arg('lidar_topic'), arg('cameras'), arg('input_qos'),
                                     arg('use_sim_time'), arg('student_model'))
        actions.append(Node(package=PACKAGE, executable=name, name=name, output='screen',
                            parameters=[arg('params_file'), overrides],
                            arguments=['--ros-args', '--log-level', arg('log_level')]))
        actions.append(LogInfo(msg=f'{name}: overrides {sorted(overrides)} on top of {arg("params_file")}'))
    return actions


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument('mode', default_value='fusion', choices=sorted(MODES),
                              description='fusion: LiDAR+camera CLIP fusion; student: LiDAR-only 3D student; '
                                          'both: run the two side by side'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml']),
                              description='node parameters (see config/perception.yaml)'),
        DeclareLaunchArgument('lidar_topic', default_value='',
                              description='PointCloud2 topic; empty: lidar_topic of params_file'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='comma-separated image topics (/ns/image_raw or '
                                          '/ns/image_raw/compressed; CameraInfo from /ns/camera_info); '
                                          'empty: the cameras of params_file'),
        DeclareLaunchArgument('input_qos', default_value='', choices=['', 'sensor_data', 'reliable'],
                              description="input QoS; empty: params_file ('reliable' for bag playback)"),
        DeclareLaunchArgument('student_model', default_value='',
                              description='student model (.onnx, .engine or .safetensors) for student_node; '
                                          'empty: labeller.student of params_file'),
        DeclareLaunchArgument('use_sim_time', default_value='false', choices=['true', 'false'],
                              description='use /clock (bag playback with --clock)'),
        DeclareLaunchArgument('rviz', default_value='true', choices=['true', 'false'],
                              description='start RViz with config/rviz/perception.rviz'),
        DeclareLaunchArgument(
            'rviz_config', description='RViz configuration file',
            default_value=PathJoinSubstitution([share, 'config', 'rviz', 'perception.rviz'])),
        DeclareLaunchArgument('log_level', default_value='info', description='ROS log level of the nodes'),
        OpaqueFunction(function=_nodes),
        Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
             arguments=['-d', LaunchConfiguration('rviz_config')],
             parameters=[{'use_sim_time': LaunchConfiguration('use_sim_time')}],
             condition=IfCondition(LaunchConfiguration('rviz'))),
    ])
