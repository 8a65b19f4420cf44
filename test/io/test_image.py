"""Image / CompressedImage decoding: every encoding, padding, byte order, bayer, and bad input."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from perception_nodes.io.image import (compressed_to_rgb, decode_image, image_to_rgb, rgb_to_compressed_msg,
                                       rgb_to_image_msg)
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.stamps import header

MSGS = default_message_types()
RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def raw_image(encoding, rows: list[bytes], width, step, big=False):
    return MSGS.new('sensor_msgs/msg/Image', header=header('cam', 0), height=len(rows), width=width,
                    encoding=encoding, is_bigendian=big, step=step,
                    data=np.frombuffer(b''.join(rows), np.uint8))


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_colour_encodings_round_trip(encoding):
    msg = rgb_to_image_msg(RGB, header('cam', 1), encoding=encoding)
    back = MSGS.deserialize(MSGS.serialize(msg), 'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(image_to_rgb(back), RGB)
    np.testing.assert_array_equal(decode_image(back), RGB)


def test_known_bytes_with_row_padding():
    # 2x1 bgr8 image, rows padded to 8 bytes: pixel (0,0) = B1 G2 R3, (0,1) = B4 G5 R6
    msg = raw_image('bgr8', [bytes([1, 2, 3, 4, 5, 6, 99, 99]), bytes([7, 8, 9, 10, 11, 12, 0, 0])], 2, 8)
    out = image_to_rgb(msg)
    assert out.shape == (2, 2, 3)
    assert out[0].tolist() == [[3, 2, 1], [6, 5, 4]] and out[1, 1].tolist() == [12, 11, 10]


def test_mono_and_depth_encodings():
    grey = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    out = image_to_rgb(rgb_to_image_msg(grey, header('cam', 0), encoding='mono8'))
    assert out.shape == (4, 6, 3) and np.array_equal(out[..., 1], grey)
    # mono16 big-endian with padding: known values
    rows = [struct.pack('>3H', 1, 258, 65535) + b'\0\0', struct.pack('>3H', 7, 8, 9) + b'\0\0']
    for enc in ('mono16', '16UC1'):
        m16 = image_to_rgb(raw_image(enc, rows, 3, 8, big=True))
        assert m16.dtype == np.uint16 and m16.tolist() == [[1, 258, 65535], [7, 8, 9]]
    depth = np.array([[0.5, np.nan], [2.0, 1e3]], dtype=np.float32)
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image_msg(depth, header('cam', 0), encoding='32FC1')),
                                  depth)
    little = raw_image('32FC1', [struct.pack('<2f', 1.25, -3.0)], 2, 8)
    assert image_to_rgb(little).tolist() == [[1.25, -3.0]]


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_flat_colour_known_answer(pattern):
    colour = {'r': 200, 'g': 100, 'b': 50}
    mosaic = np.zeros((8, 8), np.uint8)
    for (dy, dx), c in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        mosaic[dy::2, dx::2] = colour[c]
    msg = raw_image(f'bayer_{pattern}8', [row.tobytes() for row in mosaic], 8, 8)
    out = image_to_rgb(msg)
    assert out[2:6, 2:6].reshape(-1, 3).tolist() == [[200, 100, 50]] * 16


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_round_trip(fmt):
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0] = np.arange(48) * 5
    smooth[..., 2] = 200
    msg = rgb_to_compressed_msg(smooth, header('cam', 0), fmt=fmt)
    back = MSGS.deserialize(MSGS.serialize(msg), 'sensor_msgs/msg/CompressedImage')
    out = decode_image(back)
    if fmt == 'png':
        np.testing.assert_array_equal(out, smooth)
    else:
        assert np.abs(out.astype(int) - smooth).mean() < 3


def test_compressed_grey_and_depth():
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    ok, png = cv2.imencode('.png', grey16)
    msg = MSGS.new('sensor_msgs/msg/CompressedImage', format='16UC1; png', data=png.reshape(-1))
    np.testing.assert_array_equal(compressed_to_rgb(msg), grey16)
    # compressedDepth 32FC1: stored value v = a / depth + b (inverse-depth quantisation)
    a, b = 100.0, -10.0
    depth = np.array([[1.0, 2.0], [4.0, 5.0]], np.float32)
    quant = np.round(a / depth + b).astype(np.uint16)
    quant[0, 0] = 0                                         # invalid pixel
    ok, png = cv2.imencode('.png', quant)
    data = struct.pack('<iff', 0, a, b) + png.tobytes()
    msg = MSGS.new('sensor_msgs/msg/CompressedImage', format='32FC1; compressedDepth png', data=data)
    out = compressed_to_rgb(msg)
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out.reshape(-1)[1:], depth.reshape(-1)[1:], rtol=1e-6)


@pytest.mark.parametrize('make, match', [
    (lambda: raw_image('yuv422', [b'\0' * 4], 2, 4), 'unsupported image encoding'),
    (lambda: raw_image('rgb8', [b'\0' * 5], 2, 5), 'step'),
    (lambda: raw_image('rgb8', [b'\0' * 6], 2, 7), 'expected step'),
    (lambda: MSGS.new('sensor_msgs/msg/CompressedImage', format='jpeg', data=b'not a jpeg'), 'cannot decode'),
    (lambda: MSGS.new('sensor_msgs/msg/CompressedImage', format='png'), 'empty'),
    (lambda: MSGS.new('std_msgs/msg/Header'), 'not an Image'),
])
def test_bad_images_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        decode_image(make())


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match='RGB array'):
        rgb_to_image_msg(np.zeros((2, 2)), header('c', 0))
    with pytest.raises(ValueError, match='cannot encode'):
        rgb_to_image_msg(RGB, header('c', 0), encoding='bayer_rggb8')
    with pytest.raises(ValueError, match='float32'):
        rgb_to_image_msg(np.zeros((2, 2), np.uint8), header('c', 0), encoding='32FC1')
