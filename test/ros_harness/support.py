"""Small stand-ins for the non-ROS-client modules that rclpy, launch and launch_ros import.

- ``rpyutils.import_c_library``: imports the binding module by name (the real one adds Windows DLL paths).
- ``ament_index_python``: ``get_package_share_directory`` / ``get_package_prefix`` / ``get_resource(s)`` /
  ``has_resource`` / ``get_packages_with_prefixes`` over a dict of known packages (``perception_nodes``:
  the repository root, whose ``config/`` and ``launch/`` mirror ``share/perception_nodes``);
  ``PackageNotFoundError`` for the others.
- ``osrf_pycommon``: ``process_utils.which`` / ``get_loop``; ``async_execute_process`` refuses to run
  anything (tests intercept process execution); ``terminal_color.remove_ansi_escape_sequences``.
"""
from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import types
from typing import Any


def rpyutils_module() -> types.ModuleType:
    m = types.ModuleType('rpyutils', 'rpyutils stand-in (ROS 2 harness).')

    def import_c_library(name: str, package: str | None = None) -> types.ModuleType:
        return importlib.import_module(name, package=package)

    m.import_c_library = import_c_library
    return m


def ament_index_modules(packages: dict[str, str]) -> dict[str, types.ModuleType]:
    """Return ``ament_index_python`` and its ``packages`` / ``resources`` submodules over a package dict."""
    root = types.ModuleType('ament_index_python', 'ament_index_python stand-in (ROS 2 harness).')
    root.__path__ = []
    pkgs = types.ModuleType('ament_index_python.packages')
    res = types.ModuleType('ament_index_python.resources')

    class PackageNotFoundError(KeyError):
        """The package is not in the (stand-in) ament index."""

    def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
        if package_name not in packages:
            raise PackageNotFoundError(f"package '{package_name}' not found, searching: {list(packages)}")
        return packages[package_name]

    def get_package_share_path(package_name: str, print_warning: bool = True) -> Any:
        from pathlib import Path
        return Path(get_package_share_directory(package_name))

    def get_package_prefix(package_name: str) -> str:
        share = get_package_share_directory(package_name)
        if share.endswith(os.path.join('share', package_name)):
            return os.path.dirname(os.path.dirname(share))
        return share

    def get_resources(resource_type: str) -> dict[str, str]:
        return {name: get_package_prefix(name) for name in packages} if resource_type == 'packages' else {}

    def get_resource(resource_type: str, resource_name: str) -> tuple[str, str]:
        if resource_type != 'packages' or resource_name not in packages:
            raise LookupError(f"Could not find the resource '{resource_name}' of type '{resource_type}'")
        return '', get_package_prefix(resource_name)

    def has_resource(resource_type: str, resource_name: str) -> str | None:
        if resource_type == 'packages' and resource_name in packages:
            return get_package_prefix(resource_name)
        return None

    def get_packages_with_prefixes() -> dict[str, str]:
        return get_resources('packages')

    for mod in (root, pkgs):
        mod.PackageNotFoundError = PackageNotFoundError
        mod.get_package_share_directory = get_package_share_directory
        mod.get_package_share_path = get_package_share_path
        mod.get_package_prefix = get_package_prefix
        mod.get_packages_with_prefixes = get_packages_with_prefixes
    for mod in (root, res):
        mod.get_resources = get_resources
        mod.get_resource = get_resource
        mod.has_resource = has_resource
    root.packages, root.resources = pkgs, res
    root.get_search_paths = lambda: sorted({get_package_prefix(p) for p in packages})
    return {'ament_index_python': root, 'ament_index_python.packages': pkgs,
            'ament_index_python.resources': res}


def osrf_pycommon_modules() -> dict[str, types.ModuleType]:
    root = types.ModuleType('osrf_pycommon', 'osrf_pycommon stand-in (ROS 2 harness).')
    root.__path__ = []
    process = types.ModuleType('osrf_pycommon.process_utils')
    color = types.ModuleType('osrf_pycommon.terminal_color')

    class AsyncSubprocessProtocol(asyncio.SubprocessProtocol):
        """Protocol base class launch's ExecuteLocal subclasses."""

        def __init__(self, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> None:
            self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
            self.complete: asyncio.Future | None = None

    async def async_execute_process(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError('the ROS 2 test harness does not start processes; '
                           'intercept ExecuteProcess instead')

    def get_loop() -> asyncio.AbstractEventLoop:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop

    process.AsyncSubprocessProtocol = AsyncSubprocessProtocol
    process.async_execute_process = async_execute_process
    process.get_loop = get_loop
    process.which = shutil.which
    color.remove_ansi_escape_sequences = lambda text: re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', text)
    root.process_utils, root.terminal_color = process, color
    return {'osrf_pycommon': root, 'osrf_pycommon.process_utils': process,
            'osrf_pycommon.terminal_color': color}
