"""sensor_msgs/Image and CompressedImage -> numpy, and numpy -> Image, without ROS (duck-typed).

Returned arrays:
- colour encodings (rgb8, bgr8, rgba8, bgra8, bayer_*8) and mono8: ``(H, W, 3)`` uint8 RGB
  (alpha dropped, mono replicated); bayer_*16 and rgb16/bgr16: ``(H, W, 3)`` uint16 RGB;
- mono16, 16UC1 and 32FC1 (depth-like data): the single-channel ``(H, W)`` array in native byte
  order (uint16 / float32), unscaled; callers decide how to display it.
``step`` padding and ``is_bigendian`` are honoured; a mismatch between ``data``, ``step`` and the
image size is a ValueError, as is an unknown encoding. rgb8 / rgba8 / mono16 / 16UC1 / 32FC1 results
are views of ``msg.data`` where possible (read-only when the message buffer is): copy before writing.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from perception_nodes.io.fields import byte_buffer, non_negative_int
from perception_nodes.io.messages import MessageTypes, default_message_types

__all__ = ['ENCODINGS', 'image_to_array', 'image_to_rgb', 'compressed_to_rgb', 'decode_image',
           'rgb_to_image_msg', 'rgb_to_compressed_msg']

# encoding -> (numpy element type, channels)
ENCODINGS: dict[str, tuple[str, int]] = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'rgb16': ('u2', 3), 'bgr16': ('u2', 3), 'mono8': ('u1', 1), '8UC1': ('u1', 1),
    'mono16': ('u2', 1), '16UC1': ('u2', 1), '32FC1': ('f4', 1),
    'bayer_rggb8': ('u1', 1), 'bayer_bggr8': ('u1', 1), 'bayer_gbrg8': ('u1', 1), 'bayer_grbg8': ('u1', 1),
    'bayer_rggb16': ('u2', 1), 'bayer_bggr16': ('u2', 1),
    'bayer_gbrg16': ('u2', 1), 'bayer_grbg16': ('u2', 1),
}
# ROS names the 2x2 cell from its top-left pixel, OpenCV from the second row: rggb == OpenCV BayerBG.
_BAYER = {'rggb': cv2.COLOR_BayerBG2RGB, 'bggr': cv2.COLOR_BayerRG2RGB,
          'gbrg': cv2.COLOR_BayerGR2RGB, 'grbg': cv2.COLOR_BayerGB2RGB}


def image_to_array(msg: Any) -> np.ndarray:
    """Return the pixels of a sensor_msgs/Image as ``(H, W, C)`` (``(H, W)`` for one channel), native order.

    No colour conversion: channel order is that of the encoding. A view of ``msg.data`` when possible.
    """
    try:
        encoding = str(msg.encoding)
        height, width, step = (non_negative_int(msg, name, 'image ') for name in ('height', 'width', 'step'))
        big = bool(msg.is_bigendian)
        buf = byte_buffer(msg.data, 'image data')
    except AttributeError as exc:
        raise ValueError(f'not a sensor_msgs/Image: {exc}') from None
    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}')
    code, channels = ENCODINGS[encoding]
    dtype = np.dtype(code).newbyteorder('>' if big else '<')
    row = width * channels * dtype.itemsize
    if step < row:
        raise ValueError(f'{encoding} image: step {step} < width {width} * {channels * dtype.itemsize} bytes')
    if buf.size != step * height:
        raise ValueError(f'{encoding} image {width}x{height}: data has {buf.size} bytes, '
                         f'expected step {step} * height {height} = {step * height}')
    if height * width == 0:
        arr = np.zeros((height, width, channels), dtype=dtype)
    else:
        arr = np.ndarray((height, width, channels), dtype=dtype, buffer=buf,
                         strides=(step, channels * dtype.itemsize, dtype.itemsize))
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder('='))
    return arr[..., 0] if channels == 1 else arr


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image to RGB (see the module docstring for the shape/dtype per encoding)."""
    arr = image_to_array(msg)
    encoding = str(msg.encoding)
    if encoding in ('rgb8', 'rgb16'):
        return arr
    if encoding in ('bgr8', 'bgr16'):   # OpenCV swaps channels ~20x faster than a contiguous numpy copy
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB) if arr.size else arr[..., ::-1]
    if encoding == 'rgba8':
        return arr[..., :3]
    if encoding == 'bgra8':
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB) if arr.size else arr[..., 2::-1]
    if encoding in ('mono8', '8UC1'):
        return np.repeat(arr[..., None], 3, axis=2)
    if encoding.startswith('bayer_'):
        if arr.shape[0] < 2 or arr.shape[1] < 2:
            raise ValueError(f'{encoding} image {arr.shape[1]}x{arr.shape[0]} is too small to demosaic')
        return cv2.cvtColor(np.ascontiguousarray(arr), _BAYER[encoding[6:10]])
    return arr  # mono16, 16UC1, 32FC1: single channel


def _depth_header(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """compressed_depth_image_transport: 4-byte format enum + 2 float32 quantisation params, then PNG."""
    if data.size < 12:
        raise ValueError('compressedDepth image shorter than its 12-byte header')
    quant = data[4:12].view('<f4')
    return data[12:], float(quant[0]), float(quant[1])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg / png, incl. ``compressedDepth``) with OpenCV.

    Colour -> (H, W, 3) uint8 (or uint16) RGB; 8-bit grey -> RGB; 16-bit grey -> (H, W) uint16;
    ``32FC1; compressedDepth`` -> (H, W) float32 depth (inverse-depth quantisation undone, 0 -> NaN).
    """
    try:
        fmt = str(msg.format)
        data = byte_buffer(msg.data, 'image data')
    except AttributeError as exc:
        raise ValueError(f'not a sensor_msgs/CompressedImage: {exc}') from None
    depth = 'compressedDepth' in fmt
    quant_a = quant_b = 0.0
    if depth:
        data, quant_a, quant_b = _depth_header(data)
    if data.size == 0:
        raise ValueError(f'empty compressed image (format {fmt!r})')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'cannot decode compressed image (format {fmt!r}, {data.size} bytes)')
    if depth and fmt.split(';')[0].strip() == '32FC1':
        inv = img.astype(np.float32)
        with np.errstate(divide='ignore'):
            out = np.where(img > 0, quant_a / (inv - quant_b), np.nan).astype(np.float32)
        return out
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2) if img.dtype == np.uint8 else img
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(msg: Any) -> np.ndarray:
    """Dispatch on the message type: Image (has ``encoding``) or CompressedImage (has ``format``)."""
    if hasattr(msg, 'encoding'):
        return image_to_rgb(msg)
    if hasattr(msg, 'format'):
        return compressed_to_rgb(msg)
    raise ValueError(f'not an Image or CompressedImage: {type(msg).__name__}')


def rgb_to_image_msg(rgb: np.ndarray, header: Any, msgs: MessageTypes | None = None,
                     encoding: str = 'rgb8') -> Any:
    """Build a sensor_msgs/Image from an RGB (or single-channel) array, little-endian, unpadded rows.

    ``rgb`` is (H, W, 3) RGB for rgb8/bgr8/rgba8/bgra8 (alpha = 255), (H, W) for mono8, mono16,
    16UC1, 32FC1 (also accepted: (H, W, 3) RGB for mono8, converted to grey).
    """
    msgs = msgs or default_message_types()
    if encoding not in ENCODINGS or encoding.startswith('bayer_'):
        raise ValueError(f'cannot encode {encoding!r}; use one of rgb8, bgr8, rgba8, bgra8, mono8, mono16, '
                         '16UC1, 32FC1, rgb16, bgr16')
    code, channels = ENCODINGS[encoding]
    arr = np.asarray(rgb)
    if channels == 1:
        if arr.ndim == 3 and arr.shape[2] == 3 and encoding in ('mono8', '8UC1'):
            arr = cv2.cvtColor(np.ascontiguousarray(arr, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        if arr.ndim != 2:
            raise ValueError(f'{encoding} needs an (H, W) array, got shape {arr.shape}')
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f'{encoding} needs an (H, W, 3) RGB array, got shape {arr.shape}')
    elif encoding in ('bgr8', 'bgr16'):
        arr = arr[..., ::-1]
    elif encoding == 'rgba8':
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, arr.dtype)], axis=2)
    elif encoding == 'bgra8':
        arr = np.concatenate([arr[..., ::-1], np.full(arr.shape[:2] + (1,), 255, arr.dtype)], axis=2)
    target = np.dtype(code).newbyteorder('<')
    if arr.dtype.kind != target.kind and not (arr.dtype.kind in 'iub' and target.kind in 'iu'):
        raise ValueError(f'{encoding} needs {target.name} pixels, got {arr.dtype}')
    out = np.ascontiguousarray(arr, dtype=target)
    height, width = out.shape[:2]
    return msgs.new('sensor_msgs/msg/Image', header=header, height=height, width=width, encoding=encoding,
                    is_bigendian=False, step=width * channels * target.itemsize,
                    data=out.reshape(-1).view(np.uint8))


def rgb_to_compressed_msg(rgb: np.ndarray, header: Any, msgs: MessageTypes | None = None,
                          fmt: str = 'jpeg', quality: int = 90) -> Any:
    """Build a sensor_msgs/CompressedImage (``fmt`` 'jpeg' or 'png') from an (H, W, 3) uint8 RGB array."""
    msgs = msgs or default_message_types()
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB array, got {arr.shape} {arr.dtype}')
    if fmt not in ('jpeg', 'png'):
        raise ValueError(f'compressed format {fmt!r}: expected jpeg or png')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', bgr, params)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {arr.shape} image as {fmt}')
    return msgs.new('sensor_msgs/msg/CompressedImage', header=header,
                    format=f'rgb8; {fmt} compressed bgr8', data=encoded.reshape(-1))
