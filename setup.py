"""ament_python package `perception_nodes`; also a plain pip-installable Python package."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'perception_nodes'


def share(*patterns: str) -> list[str]:
    """Files matching the patterns (relative to this file), for data_files."""
    here = os.path.dirname(os.path.abspath(__file__))
    found: list[str] = []
    for pattern in patterns:
        found += [os.path.relpath(p, here) for p in glob(os.path.join(here, pattern)) if os.path.isfile(p)]
    return sorted(found)


# Pins: versions installed and tested together on Python 3.11 (CPU machine, 2026-11).
# torch/torchvision must move together (open_clip needs the matching torchvision);
# the registry's standard torch build carries CUDA libraries and runs on CPU too.
INSTALL_REQUIRES = [
    'numpy>=1.26,<2.5',
    'torch==2.14.1',
    'torchvision==0.29.2',            # matches torch 2.14
    'open_clip_torch==3.3.0',         # model registry + pretrained tags used by teacher/
    'spconv==2.3.8',                  # CPU build; GPU machines: see the `gpu` extra
    'rosbags==0.11.9',                # bag I/O and message classes (same fields as rclpy's)
    'transforms3d==0.4.2',            # quaternions, slerp
    'opencv-python-headless>=4.10',   # image decode, Bayer, distortion
    'scikit-image==0.26.0',           # SLIC / Felzenszwalb superpixels
    'scikit-learn>=1.5',              # DBSCAN clustering
    'scipy>=1.13',                    # kd-trees, sparse eigensolvers
    'safetensors==0.8.0',             # weights (never pickles)
    'onnx==1.23.2',
    'onnxruntime==1.31.1',
    'tqdm>=4.66',
    'matplotlib>=3.8',
    'pyyaml>=6.0',
]

EXTRAS_REQUIRE = {
    'test': [
        'pytest>=8',
        'hypothesis>=6.100',
        'flake8>=7',
        'pydocstyle>=6.3',
        'lxml>=5',                    # package.xml schema checks
        'catkin_pkg>=1.0',            # package.xml format 3 parsing/validation (as ROS tools do)
    ],
    # On a CUDA machine: `pip uninstall -y spconv && pip install -e .[gpu]`
    # (spconv-cu118 and the CPU spconv install the same module; keep one).
    'gpu': [
        'spconv-cu118==2.3.8',
        'tensorrt>=10.3',
    ],
}

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*', 'training', 'training.*']),
    python_requires='>=3.10',
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', share('launch/*.py')),
        (f'share/{PACKAGE}/config', share('config/*.yaml')),
        (f'share/{PACKAGE}/config/vocabularies', share('config/vocabularies/*.yaml')),
        (f'share/{PACKAGE}/config/label_maps', share('config/label_maps/*.yaml')),
        (f'share/{PACKAGE}/config/pseudo_label', share('config/pseudo_label/*.yaml')),
        (f'share/{PACKAGE}/config/rviz', share('config/rviz/*.rviz')),
    ],
    package_data={PACKAGE: ['py.typed', 'teacher/model_configs/*.json']},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    zip_safe=False,
    maintainer='perception_nodes maintainers',
    maintainer_email='perception@example.com',
    description='Open-vocabulary 3D perception for ROS 2 (LiDAR + cameras, CLIP, distilled 3D student).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'ovp = perception_nodes.cli.main:main',
            'fusion_node = perception_nodes.nodes.fusion_node:main',
            'student_node = perception_nodes.nodes.student_node:main',
        ],
    },
)
