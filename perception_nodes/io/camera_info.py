"""sensor_msgs/CameraInfo <-> :class:`perception_nodes.frame.CameraModel` (duck-typed, no ROS).

Reads ROS 2 field names (``d``, ``k``, ``r``, ``p``) and ROS 1 ones (``D``, ``K``, ``R``, ``P``).
An all-zero ``R`` means identity, an all-zero ``P`` means ``[K | 0]`` (drivers often leave them unset).
Binning and ROI are not applied: a message with binning > 1 or a partial ROI is rejected, so that a
silently wrong projection cannot happen.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from perception_nodes.frame import CameraModel
from perception_nodes.io.messages import MessageTypes, default_message_types
from perception_nodes.io.stamps import header

__all__ = ['DISTORTION_SIZES', 'camera_model_from_msg', 'camera_info_msg']

# distortion model -> accepted numbers of coefficients (OpenCV's 12/14-term rational models included)
DISTORTION_SIZES: dict[str, tuple[int, ...]] = {
    'plumb_bob': (0, 4, 5, 8), 'rational_polynomial': (0, 8, 12, 14), 'equidistant': (0, 4), 'none': (0,),
}


def _field(msg: Any, name: str) -> Any:
    for attr in (name.lower(), name.upper()):
        if hasattr(msg, attr):
            return getattr(msg, attr)
    raise ValueError(f'CameraInfo has no {name.lower()!r} field')


def _matrix(msg: Any, name: str, size: int) -> np.ndarray:
    try:
        values = np.asarray(_field(msg, name), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'CameraInfo {name.lower()}: {exc}') from None
    if values.size != size:
        raise ValueError(f'CameraInfo {name.lower()} has {values.size} values, expected {size}')
    if not np.all(np.isfinite(values)):
        raise ValueError(f'CameraInfo {name.lower()} has non-finite values')
    return values


def camera_model_from_msg(msg: Any, frame_id: str | None = None) -> CameraModel:
    """Return the camera model of a CameraInfo message; ``frame_id`` overrides ``msg.header.frame_id``."""
    try:
        width, height = int(msg.width), int(msg.height)
        model = str(msg.distortion_model)
        frame = frame_id if frame_id is not None else str(msg.header.frame_id).lstrip('/')
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f'not a CameraInfo message: {exc}') from None
    if width <= 0 or height <= 0:
        raise ValueError(f'CameraInfo has image size {width}x{height} (uncalibrated camera?)')
    k = _matrix(msg, 'K', 9).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] == 0:
        raise ValueError(f'CameraInfo K has no focal length (fx={k[0, 0]}, fy={k[1, 1]}): '
                         'uncalibrated camera')
    try:
        d = np.asarray(_field(msg, 'D'), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'CameraInfo d: {exc}') from None
    if model == '' and not np.any(d):
        model = 'none'
    if model not in DISTORTION_SIZES:
        raise ValueError(f'unsupported distortion model {model!r}; '
                         f'expected one of {sorted(DISTORTION_SIZES)}')
    if d.size not in DISTORTION_SIZES[model]:
        raise ValueError(f'{model} distortion needs {DISTORTION_SIZES[model]} coefficients, got {d.size}')
    r = _matrix(msg, 'R', 9).reshape(3, 3)
    p = _matrix(msg, 'P', 12).reshape(3, 4)
    for attr in ('binning_x', 'binning_y'):
        if int(getattr(msg, attr, 0) or 0) > 1:
            raise ValueError(f'CameraInfo {attr}={getattr(msg, attr)} is not supported')
    roi = getattr(msg, 'roi', None)
    if roi is not None and int(roi.width) and (int(roi.width), int(roi.height)) != (width, height):
        raise ValueError(f'CameraInfo ROI {roi.width}x{roi.height} is not supported')
    return CameraModel(frame_id=frame, width=width, height=height, K=k, D=d, distortion_model=model,
                       R=r if np.any(r) else np.eye(3), P=p if np.any(p) else None)


def camera_info_msg(model: CameraModel, stamp_ns: int, msgs: MessageTypes | None = None) -> Any:
    """Build a sensor_msgs/CameraInfo for ``model``.

    'none' is written as plumb_bob with zero coefficients.
    """
    msgs = msgs or default_message_types()
    distortion, d = model.distortion_model, model.D
    if distortion == 'none':
        distortion, d = 'plumb_bob', np.zeros(5)
    return msgs.new('sensor_msgs/msg/CameraInfo', header=header(model.frame_id, stamp_ns, msgs),
                    height=model.height, width=model.width, distortion_model=distortion,
                    d=np.asarray(d, dtype=np.float64), k=model.K.reshape(-1), r=model.R.reshape(-1),
                    p=np.asarray(model.P).reshape(-1))
