"""Play a bag with --clock, run the perception nodes on simulated time, and show RViz.

    ros2 launch perception_nodes replay.launch.py bag:=kitti.mcap mode:=fusion \
        lidar_topic:=/kitti/velo/pointcloud cameras:=/kitti/camera_color_left/image_raw

Bag playback publishes reliably, so the nodes subscribe with input_qos reliable by default here.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'perception_nodes'
FORWARDED = ('mode', 'params_file', 'lidar_topic', 'cameras', 'student_model', 'rviz', 'rviz_config',
             'log_level')


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    bag = LaunchConfiguration('bag')
    play = ['ros2', 'bag', 'play', bag, '--clock', '--rate', LaunchConfiguration('rate')]
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'perception.launch.py'])),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in FORWARDED]
        + [('use_sim_time', 'true'), ('input_qos', LaunchConfiguration('input_qos'))])
    return LaunchDescription([
        DeclareLaunchArgument('bag', description='bag to play (folder, .mcap or .db3; see ovp kitti-to-bag)'),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback rate'),
        DeclareLaunchArgument('loop', default_value='false', choices=['true', 'false'],
                              description='loop the bag'),
        DeclareLaunchArgument('start_delay', default_value='3.0',
                              description='seconds to wait for the nodes (model loading) before playing'),
        DeclareLaunchArgument('input_qos', default_value='reliable', choices=['sensor_data', 'reliable'],
                              description='input QoS of the nodes (bag playback publishes reliably)'),
        DeclareLaunchArgument('mode', default_value='fusion', description='fusion | student | both'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml'])),
        DeclareLaunchArgument('lidar_topic', default_value=''),
        DeclareLaunchArgument('cameras', default_value=''),
        DeclareLaunchArgument('student_model', default_value=''),
        DeclareLaunchArgument('rviz', default_value='true', choices=['true', 'false']),
        DeclareLaunchArgument(
            'rviz_config', default_value=PathJoinSubstitution([share, 'config', 'rviz', 'perception.rviz'])),
        DeclareLaunchArgument('log_level', default_value='info'),
        perception,
        TimerAction(period=LaunchConfiguration('start_delay'), actions=[
            ExecuteProcess(cmd=play + ['--loop'], output='screen',
                           condition=IfCondition(LaunchConfiguration('loop'))),
            ExecuteProcess(cmd=play, output='screen', condition=UnlessCondition(LaunchConfiguration('loop'))),
        ]),
    ])
