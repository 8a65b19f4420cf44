"""sensor_msgs/Image and CompressedImage -> numpy, and numpy -> Image, without ROS (duck-typed).

Returned arrays:
- colour encodings (rgb8, bgr8, rgba8, bgra8, bayer_*8) and mono8: ``(H, W, 3)`` uint8 RGB
  (alpha dropped, mono replicated); bayer_*16 and rgb16/bgr16: ``(H, W, 3)`` uint16 RGB;
- mono16, 16UC1 and 32FC1 (depth-like data): the single-channel ``(H, W)`` array in native byte
  order (uint16 / float32), unscaled; :func:`to_teacher_rgb` is the one rule that turns any of these
  into the 8-bit RGB the 2D teacher sees.
``step`` padding and ``is_bigendian`` are honoured; a mismatch between ``data``, ``step`` and the
image size is a ValueError, as is an unknown encoding. rgb8 / rgba8 / mono16 / 16UC1 / 32FC1 results
are views of ``msg.data`` where possible (read-only when the message buffer is): copy before writing.

Hostile input: every decoder raises only ``ValueError``. CompressedImage payloads are decoded only as
the codecs the message's ``format`` names (JPEG or PNG, as image_transport's compressed and
compressedDepth plugins write them: ``jpeg``, ``png``, ``rgb8; jpeg compressed bgr8``,
``16UC1; compressedDepth png``, ...; an empty format is sniffed, JPEG/PNG only) and only when the magic
bytes agree. The image size is read from the PNG IHDR / JPEG SOF header and checked against
``max_pixels`` and ``expected_size`` (the CameraInfo's) *before* anything is decoded, so a
decompression bomb costs microseconds, not gigabytes.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from perception_nodes.io.fields import byte_buffer, non_negative_int
from perception_nodes.io.jpeg import jpeg_size
from perception_nodes.io.messages import MessageTypes, default_message_types

__all__ = ['ENCODINGS', 'MAX_PIXELS', 'image_to_array', 'image_to_rgb', 'compressed_to_rgb',
           'compressed_size', 'decode_image', 'to_teacher_rgb', 'rgb_to_image_msg', 'rgb_to_compressed_msg']

MAX_PIXELS = 1 << 26   # 67 Mpx (8K is 33 Mpx): the default bound on any decoded image

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


def _check_size(height: int, width: int, expected_size: tuple[int, int] | None, max_pixels: int | None,
                what: str) -> None:
    if expected_size is not None and (height, width) != (int(expected_size[0]), int(expected_size[1])):
        raise ValueError(f'{what} is {width}x{height} but {int(expected_size[1])}x{int(expected_size[0])} '
                         'was expected (CameraInfo size)')
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(f'{what} is {width}x{height} = {height * width} pixels, more than the limit of '
                         f'{max_pixels}')


def image_to_array(msg: Any, *, expected_size: tuple[int, int] | None = None,
                   max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Return the pixels of a sensor_msgs/Image as ``(H, W, C)`` (``(H, W)`` for one channel), native order.

    No colour conversion: channel order is that of the encoding. A view of ``msg.data`` when possible.
    ``expected_size`` (height, width) and ``max_pixels`` are checked before anything else (ValueError).
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
    _check_size(height, width, expected_size, max_pixels, f'{encoding} image')
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


def image_to_rgb(msg: Any, *, expected_size: tuple[int, int] | None = None,
                 max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Convert a sensor_msgs/Image to RGB (see the module docstring for the shape/dtype per encoding)."""
    arr = image_to_array(msg, expected_size=expected_size, max_pixels=max_pixels)
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


_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}          # IHDR colour type -> decoded channels


def _png_size(data: np.ndarray) -> tuple[int, int]:
    if data.size < 26 or bytes(data[12:16]) != b'IHDR':
        raise ValueError('PNG without an IHDR header (truncated or corrupt)')
    width, height = (int.from_bytes(bytes(data[i:i + 4]), 'big') for i in (16, 20))
    depth, colour = int(data[24]), int(data[25])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ValueError(f'PNG header: bit depth {depth} / colour type {colour} is not valid')
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ValueError(f'PNG header: size {width}x{height} is not valid')
    return height, width


def _jpeg_size(data: np.ndarray) -> tuple[int, int]:
    """(height, width) from the JPEG frame header (:func:`perception_nodes.io.jpeg.jpeg_size`)."""
    width, height = jpeg_size(data)
    return height, width


def _codec(fmt: str, data: np.ndarray) -> str:
    """'png' or 'jpeg': what ``format`` names, confirmed by the magic bytes (ValueError otherwise)."""
    low = fmt.lower()
    named = {c for c, words in (('jpeg', ('jpeg', 'jpg')), ('png', ('png',))) if any(w in low for w in words)}
    magic = 'png' if bytes(data[:8]) == _PNG_MAGIC else 'jpeg' if bytes(data[:3]) == b'\xff\xd8\xff' else None
    if len(named) > 1:
        raise ValueError(f'compressed image format {fmt!r} names both jpeg and png')
    if not named and 'compresseddepth' in low:
        named = {'png'}                    # "16UC1; compressedDepth": older plugins' only codec, PNG
    if not named:
        if low.strip():
            raise ValueError(f'unsupported compressed image format {fmt!r}: only jpeg and png are decoded')
        if magic is None:
            raise ValueError('cannot decode compressed image: empty format and the data is neither JPEG nor '
                             'PNG')
        return magic
    codec = named.pop()
    if magic != codec:
        found = f'a {magic.upper()}' if magic else 'neither JPEG nor PNG'
        raise ValueError(f'cannot decode compressed image: format {fmt!r} but the data is {found} '
                         f'(magic bytes {bytes(data[:4]).hex()})')
    return codec


def _payload(msg: Any) -> tuple[str, np.ndarray, bool, float, float]:
    try:
        fmt = str(msg.format)
        data = byte_buffer(msg.data, 'image data')
    except AttributeError as exc:
        raise ValueError(f'not a sensor_msgs/CompressedImage: {exc}') from None
    depth = 'compresseddepth' in fmt.lower()
    quant_a = quant_b = 0.0
    if depth:
        if 'rvl' in fmt.lower():
            raise ValueError(f'compressedDepth format {fmt!r}: only the png variant is supported')
        data, quant_a, quant_b = _depth_header(data)
    if data.size == 0:
        raise ValueError(f'empty compressed image (format {fmt!r})')
    return fmt, data, depth, quant_a, quant_b


def compressed_size(msg: Any) -> tuple[int, int]:
    """(height, width) a CompressedImage declares in its PNG/JPEG header, without decoding it."""
    fmt, data, _, _, _ = _payload(msg)
    return _png_size(data) if _codec(fmt, data) == 'png' else _jpeg_size(data)


def compressed_to_rgb(msg: Any, *, expected_size: tuple[int, int] | None = None,
                      max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg / png, incl. ``compressedDepth``) with OpenCV.

    Colour -> (H, W, 3) uint8 (or uint16) RGB; 8-bit grey -> RGB; 16-bit grey -> (H, W) uint16;
    ``32FC1; compressedDepth`` -> (H, W) float32 depth (inverse-depth quantisation undone, 0 -> NaN).
    Only the codec ``format`` names is used, and only when the magic bytes match; the header's size is
    checked against ``max_pixels`` and ``expected_size`` (height, width) before decoding. ValueError for
    anything else (OpenCV errors included).
    """
    fmt, data, depth, quant_a, quant_b = _payload(msg)
    codec = _codec(fmt, data)
    height, width = _png_size(data) if codec == 'png' else _jpeg_size(data)
    _check_size(height, width, expected_size, max_pixels, f'{codec.upper()} image (format {fmt!r})')
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ValueError(f'cannot decode compressed image (format {fmt!r}): '
                         f'{str(exc).strip().splitlines()[-1]}') from None
    if img is None:
        raise ValueError(f'cannot decode compressed image (format {fmt!r}, {data.size} bytes)')
    if img.shape[:2] != (height, width):
        raise ValueError(f'decoded {codec} image is {img.shape[1]}x{img.shape[0]}, its header says '
                         f'{width}x{height}')
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


def decode_image(msg: Any, *, expected_size: tuple[int, int] | None = None,
                 max_pixels: int | None = MAX_PIXELS, teacher_rgb: bool = False) -> np.ndarray:
    """Dispatch on the message type: Image (has ``encoding``) or CompressedImage (has ``format``).

    ``expected_size``: (height, width) the image must have (the CameraInfo's), checked from the message
    fields / the compressed header before decoding; ``max_pixels``: refuse larger images (None: no
    bound); ``teacher_rgb``: return :func:`to_teacher_rgb` of the result ((H, W, 3) uint8, C-contiguous,
    writable; a copy when the decoded image is a read-only view of the message). Raises ValueError only.
    """
    if hasattr(msg, 'encoding'):
        img = image_to_rgb(msg, expected_size=expected_size, max_pixels=max_pixels)
    elif hasattr(msg, 'format'):
        img = compressed_to_rgb(msg, expected_size=expected_size, max_pixels=max_pixels)
    else:
        raise ValueError(f'not an Image or CompressedImage: {type(msg).__name__}')
    return to_teacher_rgb(img) if teacher_rgb else img


def to_teacher_rgb(img: np.ndarray) -> np.ndarray:
    """Convert any decoded image to the 8-bit RGB the 2D teacher sees: (H, W, 3) uint8, C-contiguous.

    One rule for every encoding (:func:`decode_image` results):

    - uint8: unchanged; one channel (mono8) is replicated to three;
    - uint16 (rgb16, bgr16, bayer_*16, mono16, 16UC1, 16-bit PNG): linear, ``v * 255 / (2**b - 1)``
      rounded, where ``b`` is the image's effective bit depth: the bit length of its largest value,
      at least 8. A 16-bit sensor maps 65535 to 255; a 12-bit one packed in 16 bits (values up to
      4095) uses the whole 8-bit range instead of 0..15; the scale only changes when the largest value
      crosses a power of two, so it does not flicker from frame to frame like a min-max stretch;
    - float (32FC1, compressedDepth): when every finite value lies in [0, 1] it is an intensity,
      ``v * 255``; otherwise (depth, range) a linear stretch of the finite values' [min, max] to
      0..255; NaN and +-inf become 0;
    - one channel is replicated to three (grey).
    Anything else (other dtypes or channel counts) raises ValueError. The result is a new array unless
    ``img`` already is a C-contiguous, writable uint8 RGB array (then it is returned as is).
    """
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f'image of shape {arr.shape} is neither RGB (H, W, 3) nor grey (H, W)')
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        top = int(arr.max()) if arr.size else 0
        full = (1 << max(8, top.bit_length())) - 1
        out = cv2.convertScaleAbs(arr, alpha=255.0 / full) if arr.size else arr.astype(np.uint8)
    elif arr.dtype.kind == 'f':
        values = arr.astype(np.float32, copy=False)
        finite = np.isfinite(values)
        ok = values[finite]
        if ok.size == 0:
            out = np.zeros(arr.shape, np.uint8)
        else:
            lo, hi = float(ok.min()), float(ok.max())
            if lo >= 0.0 and hi <= 1.0:
                lo, hi = 0.0, 1.0
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            scaled = np.where(finite, (np.where(finite, values, lo) - lo) * scale, 0.0)
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f'{arr.dtype} image cannot be shown as RGB')
    if out.ndim == 2:
        out = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_GRAY2RGB) if out.size else \
            np.zeros(out.shape + (3,), np.uint8)
    if not (out.flags.c_contiguous and out.flags.writeable):    # e.g. a view of read-only message bytes
        out = np.array(out, order='C')
    return out


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
