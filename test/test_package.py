"""Package metadata: package.xml (format 3, every runtime import declared), installed share/ files, the
parameter file and the RViz configuration."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'perception_nodes'
# import name -> how it is declared: ('ros', key) a package.xml dependency, ('pip', distribution) a
# setup.py install_requires entry (pip-installed next to the ROS packages; no rosdep key needed).
IMPORT_KEYS: dict[str, tuple[str, str]] = {
    'rclpy': ('ros', 'rclpy'), 'rcl_interfaces': ('ros', 'rcl_interfaces'),
    'message_filters': ('ros', 'message_filters'), 'tf2_ros': ('ros', 'tf2_ros_py'),
    'sensor_msgs': ('ros', 'sensor_msgs'), 'std_msgs': ('ros', 'std_msgs'), 'nav_msgs': ('ros', 'nav_msgs'),
    'visualization_msgs': ('ros', 'visualization_msgs'), 'diagnostic_msgs': ('ros', 'diagnostic_msgs'),
    'geometry_msgs': ('ros', 'geometry_msgs'), 'builtin_interfaces': ('ros', 'builtin_interfaces'),
    'tf2_msgs': ('ros', 'tf2_msgs'), 'vision_msgs': ('ros', 'vision_msgs'),
    'launch': ('ros', 'launch'), 'launch_ros': ('ros', 'launch_ros'),
    'ament_index_python': ('ros', 'ament_index_python'),
    'numpy': ('ros', 'python3-numpy'), 'yaml': ('ros', 'python3-yaml'), 'cv2': ('ros', 'python3-opencv'),
    'scipy': ('ros', 'python3-scipy'), 'sklearn': ('ros', 'python3-sklearn'),
    'skimage': ('ros', 'python3-skimage'), 'matplotlib': ('ros', 'python3-matplotlib'),
    'tqdm': ('ros', 'python3-tqdm'), 'transforms3d': ('ros', 'python3-transforms3d'),
    'torch': ('pip', 'torch'), 'torchvision': ('pip', 'torchvision'), 'open_clip': ('pip', 'open_clip_torch'),
    'spconv': ('pip', 'spconv'), 'rosbags': ('pip', 'rosbags'), 'safetensors': ('pip', 'safetensors'),
    'onnx': ('pip', 'onnx'), 'onnxruntime': ('pip', 'onnxruntime'),
    'huggingface_hub': ('pip', 'open_clip_torch'),          # open_clip's own dependency (its cache layout)
    # optional, imported only when configured (GPU engines, SAM masks): the `gpu` extra / the user's install
    'tensorrt': ('optional', ''), 'segment_anything': ('optional', ''),
    # scikit-learn's own dependency (python3-sklearn brings it); import-guarded: limits numpy's BLAS threads
    'threadpoolctl': ('optional', ''),
}
# launch-file executables -> the package that provides them
LAUNCH_EXECUTABLES = {'rviz2': 'rviz2', 'ros2': 'ros2bag'}
# declared for what the code needs at run time without importing it
RUNTIME_ONLY = {'rosbag2_storage_mcap': 'replay.launch.py plays .mcap bags (Humble ships only sqlite3)'}
SCANNED = ['perception_nodes', 'launch']
ORDER = ['name', 'version', 'description', 'maintainer', 'license', 'url', 'author']


def _package_xml() -> etree._Element:
    return etree.parse(str(ROOT / 'package.xml')).getroot()


def test_package_xml_is_format_3():
    catkin_package = pytest.importorskip('catkin_pkg.package', reason='catkin_pkg not installed')
    pkg = catkin_package.parse_package(str(ROOT / 'package.xml'))
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == PACKAGE
    assert [e.tagname for e in pkg.exports] == ['build_type'] and pkg.exports[0].content == 'ament_python'
    setup_version = re.search(r"version='([^']+)'", (ROOT / 'setup.py').read_text()).group(1)
    assert pkg.version == setup_version
    # the schema's sequence: name, version, description, maintainer+, license+, url*, author*, then depends
    root = _package_xml()
    assert root.tag == 'package' and root.get('format') == '3'
    tags = [child.tag for child in root if isinstance(child.tag, str)]
    head = [t for t in tags if t in ORDER]
    assert head == sorted(head, key=ORDER.index) and tags[:len(head)] == head
    assert tags[-1] == 'export'


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob('*.py')):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split('.')[0]
                    if top not in sys.stdlib_module_names and top not in (PACKAGE, '__future__'):
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _message_packages() -> set[str]:
    """Packages of the message types the code builds by name ('sensor_msgs/msg/PointCloud2')."""
    found = set()
    for path in (ROOT / 'perception_nodes').rglob('*.py'):
        found |= set(re.findall(r"'([a-z_0-9]+)/msg/[A-Z][A-Za-z0-9]*'", path.read_text()))
    return found


def _launch_executables() -> set[str]:
    found = set()
    for path in (ROOT / 'launch').glob('*.py'):
        text = path.read_text()
        found |= set(re.findall(r"executable='([a-z_0-9]+)'", text))
        found |= set(re.findall(r"\['(ros2)', 'bag', 'play'", text))
    return found


def test_package_xml_names_every_runtime_import_and_nothing_else():
    imports = _imports()
    assert {'rclpy', 'message_filters', 'tf2_ros', 'launch_ros', 'numpy', 'torch'} <= set(imports)
    unmapped = {name: sorted(where) for name, where in imports.items() if name not in IMPORT_KEYS}
    assert not unmapped, f'imports without a dependency mapping (IMPORT_KEYS, package.xml): {unmapped}'
    root = _package_xml()
    ros_deps = {e.text.strip() for e in root if isinstance(e.tag, str) and e.tag in (
        'depend', 'exec_depend', 'build_export_depend')}
    setup_text = (ROOT / 'setup.py').read_text()
    needed = {IMPORT_KEYS[n][1] for n in imports if IMPORT_KEYS[n][0] == 'ros'}
    needed |= {IMPORT_KEYS[p][1] for p in _message_packages()}
    executables = _launch_executables()
    assert {'rviz2', 'fusion_node', 'ros2'} <= executables | {'fusion_node'}
    needed |= {LAUNCH_EXECUTABLES[e] for e in executables if e in LAUNCH_EXECUTABLES}
    needed |= set(RUNTIME_ONLY)
    missing = sorted(needed - ros_deps)
    unused = sorted(ros_deps - needed)
    pip_missing = [key for n in imports for kind, key in [IMPORT_KEYS[n]]
                   if kind == 'pip' and not re.search(rf"'{re.escape(key)}\s*[=<>!~]", setup_text)]
    assert not missing, f'undeclared runtime dependencies in package.xml: {missing}'
    assert not unused, f'package.xml declares what nothing uses: {unused}'
    assert not pip_missing, f'missing from setup.py install_requires: {pip_missing}'


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp('wheel')
    # build from a copy: an in-tree build would leave build/ and *.egg-info behind in the checkout
    source = tmp_path_factory.mktemp('source') / PACKAGE
    skip = shutil.ignore_patterns('.git', 'build', 'dist', '*.egg-info', '__pycache__', '.pytest_cache',
                                  '.hypothesis', 'ovp-*', 'artifacts')
    shutil.copytree(ROOT, source, ignore=skip)
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                           '-w', str(out), str(source)], capture_output=True, text=True, timeout=300)
    if proc.returncode:
        pytest.fail(f'pip wheel failed:\n{proc.stdout}\n{proc.stderr}')
    (path,) = out.glob(f'{PACKAGE}-*.whl')
    return zipfile.ZipFile(path)


def test_setup_installs_launch_config_and_rviz_files_into_share(wheel):
    data = {n.split('.data/data/', 1)[1] for n in wheel.namelist() if '.data/data/' in n}
    share = f'share/{PACKAGE}'
    expected = {f'{share}/package.xml', f'share/ament_index/resource_index/packages/{PACKAGE}',
                f'{share}/launch/perception.launch.py', f'{share}/launch/replay.launch.py',
                f'{share}/config/perception.yaml', f'{share}/config/rviz/perception.rviz'}
    vocabularies = (ROOT / 'config' / 'vocabularies').glob('*.yaml')
    expected |= {f'{share}/config/vocabularies/{p.name}' for p in vocabularies}
    label_maps = list((ROOT / 'config' / 'label_maps').glob('*.yaml'))
    assert label_maps
    expected |= {f'{share}/config/label_maps/{p.name}' for p in label_maps}
    assert expected <= data, f'missing from the install: {sorted(expected - data)}'
    entry_points = next(n for n in wheel.namelist() if n.endswith('entry_points.txt'))
    text = wheel.read(entry_points).decode()
    assert 'fusion_node = perception_nodes.nodes.fusion_node:main' in text
    assert 'student_node = perception_nodes.nodes.student_node:main' in text


def test_rviz_shows_the_node_outputs():
    config = yaml.safe_load((ROOT / 'config' / 'rviz' / 'perception.rviz').read_text())
    displays = config['Visualization Manager']['Displays']
    by_class = {}
    for d in displays:
        by_class.setdefault(d['Class'], []).append(d)
    topics = {d['Topic']['Value'] for d in displays if isinstance(d.get('Topic'), dict)}
    keys = {'labeled_points', 'occupancy', 'semantic_voxels', 'similarity', 'overlay/camera_2'}
    allowed = {f'/{node}/{key}' for node in ('fusion_node', 'student_node') for key in keys}
    assert topics <= allowed, topics - allowed
    clouds = by_class['rviz_default_plugins/PointCloud2']
    labeled = [d for d in clouds if d['Topic']['Value'].endswith('labeled_points')]
    assert labeled and all(d['Color Transformer'] == 'RGB8' for d in labeled)   # the per-class rgb field
    assert by_class['rviz_default_plugins/Map'][0]['Topic']['Value'] == '/fusion_node/occupancy'
    assert by_class['rviz_default_plugins/MarkerArray'][0]['Enabled'] is True
    assert by_class['rviz_default_plugins/Image'][0]['Topic']['Value'] == '/fusion_node/overlay/camera_2'
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == 'velodyne'


def test_ros_docs_list_every_output():
    text = (ROOT / 'docs' / 'ros.md').read_text()
    for key in ('labeled_points', 'occupancy', 'semantic_voxels', 'overlay/<camera>', 'similarity',
                'label_info', 'query', '/diagnostics'):
        assert f'`~/{key}`' in text or f'`{key}`' in text, key
