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
    # the older format string names no codec (PNG was compressedDepth's only one); RVL is refused
    msg.format = '32FC1; compressedDepth'
    np.testing.assert_allclose(compressed_to_rgb(msg).reshape(-1)[1:], depth.reshape(-1)[1:], rtol=1e-6)
    msg.format = '16UC1; compressedDepth rvl'
    with pytest.raises(ValueError, match='only the png variant'):
        compressed_to_rgb(msg)


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


# ------------------------------------------------------------------------------------------ hostile input
def _chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))


def make_png(width: int, height: int, depth: int, colour: int, rows: 'list[bytes] | None' = None,
             row_bytes: int | None = None) -> bytes:
    """A PNG built by hand (any IHDR, e.g. sizes OpenCV refuses to write): ``rows`` or all-zero rows."""
    import zlib
    comp = zlib.compressobj(9)
    if rows is not None:
        idat = comp.compress(b''.join(b'\0' + r for r in rows))
    else:
        block = (b'\0' + bytes(row_bytes)) * 1000
        idat = b''.join(comp.compress(block) for _ in range(height // 1000))
    idat += comp.flush()
    ihdr = struct.pack('>IIBBBBB', width, height, depth, colour, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr) + _chunk(b'IDAT', idat) + _chunk(b'IEND', b'')


def compressed(data: bytes, fmt: str = 'png'):
    return MSGS.new('sensor_msgs/msg/CompressedImage', format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.fixture(scope='module')
def png_bomb() -> bytes:
    """Issue 15 item 3: 124 KB of PNG declaring 32000x32000 1-bit grey (1 GB once decoded, 3 GB as RGB)."""
    return make_png(32000, 32000, 1, 0, row_bytes=4000)


def test_declared_100000_squared_png_is_a_value_error_not_cv2_error():
    """Issue 15 item 2: the header alone (a few bytes of IDAT) used to raise cv2.error out of imdecode."""
    data = make_png(100_000, 100_000, 8, 2, rows=[bytes(30)])
    msg = compressed(data)
    with pytest.raises(ValueError, match='100000x100000 = 10000000000 pixels, more than the limit'):
        decode_image(msg)
    with pytest.raises(ValueError, match='cannot decode compressed image'):     # no bound: OpenCV's error,
        decode_image(msg, max_pixels=None)                                      # as a ValueError


def test_decompression_bomb_is_refused_from_its_header_before_decoding(png_bomb):
    import resource
    assert len(png_bomb) < 130_000
    msg = compressed(png_bomb, 'mono8; png compressed mono8')
    from perception_nodes.io.image import compressed_size
    assert compressed_size(msg) == (32000, 32000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r'is 32000x32000 but 1242x375 was expected \(CameraInfo size\)'):
        decode_image(msg, expected_size=(375, 1242))
    with pytest.raises(ValueError, match='more than the limit'):
        decode_image(msg)                                                      # the default pixel bound
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100                                                      # nothing was decoded


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8', 'png', 'bgr8; png compressed bgr8'])
def test_expected_size_and_image_transport_formats(fmt):
    codec = 'png' if 'png' in fmt else 'jpeg'
    msg = rgb_to_compressed_msg(RGB, header('cam', 0), fmt=codec)
    msg.format = fmt
    from perception_nodes.io.image import compressed_size
    assert compressed_size(msg) == (5, 7)
    assert decode_image(msg, expected_size=(5, 7)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match='is 7x5 but 5x7 was expected'):
        decode_image(msg, expected_size=(7, 5))
    with pytest.raises(ValueError, match='more than the limit of 34'):
        decode_image(msg, max_pixels=34)


def test_raw_images_check_size_before_conversion():
    msg = rgb_to_image_msg(RGB, header('cam', 0), encoding='bgr8')
    assert decode_image(msg, expected_size=(5, 7)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match='bgr8 image is 7x5 but 8x5 was expected'):
        decode_image(msg, expected_size=(5, 8))
    with pytest.raises(ValueError, match='35 pixels, more than the limit of 30'):
        decode_image(msg, max_pixels=30)


@pytest.mark.parametrize('ext, fmt', [('.bmp', 'jpeg'), ('.tiff', 'jpeg'), ('.tiff', 'png'), ('.png', 'jpeg'),
                                      ('.jpg', 'png'), ('.bmp', ''), ('.tiff', 'tiff'), ('.bmp', 'bmp')])
def test_only_the_named_codec_with_matching_magic_is_decoded(ext, fmt):
    """Issue 15 item 19: TIFF/BMP (or any OpenCV codec) in a "jpeg" message used to be decoded."""
    ok, data = cv2.imencode(ext, RGB[..., ::-1])
    assert ok and cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None         # OpenCV would decode it
    with pytest.raises(ValueError, match='cannot decode|unsupported compressed image format'):
        decode_image(compressed(data.tobytes(), fmt))


def test_empty_format_is_sniffed_jpeg_or_png_only():
    for ext in ('.png', '.jpg'):
        ok, data = cv2.imencode(ext, RGB[..., ::-1])
        assert decode_image(compressed(data.tobytes(), ''), expected_size=(5, 7)).shape == (5, 7, 3)


def test_jpeg_header_walk_known_answers():
    from perception_nodes.io.image import compressed_size
    big = RNG.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):           # SOF0 and SOF2
        ok, data = cv2.imencode('.jpg', big, params)
        raw = data.tobytes()
        assert compressed_size(compressed(raw, 'jpeg')) == (37, 53)
        # an APP1 segment of 60 KB before the frame header (EXIF thumbnails) and fill bytes
        app1 = b'\xff\xe1' + struct.pack('>H', 60_002) + bytes(60_000)
        padded = raw[:2] + b'\xff\xff' + app1 + raw[2:]
        assert compressed_size(compressed(padded, 'jpeg')) == (37, 53)
        assert decode_image(compressed(padded, 'jpeg'), expected_size=(37, 53)).shape == (37, 53, 3)
    for cut in (3, 10, 30):
        with pytest.raises(ValueError, match='JPEG'):
            decode_image(compressed(raw[:cut], 'jpeg'))
    with pytest.raises(ValueError, match='JPEG without a frame header'):
        decode_image(compressed(b'\xff\xd8\xff\xda\x00\x02', 'jpeg'))


@pytest.mark.parametrize('mutate, match', [
    (lambda d: d[:20], 'IHDR'),
    (lambda d: d[:12] + b'IHDX' + d[16:], 'IHDR'),
    (lambda d: d[:16] + struct.pack('>I', 0) + d[20:], 'size 0x5'),
    (lambda d: d[:24] + b'\x03' + d[25:], 'bit depth 3'),
    (lambda d: d[:26] + b'\x00' * 4 + d[30:], 'cannot decode'),                  # IHDR CRC broken
])
def test_corrupt_png_headers(mutate, match):
    ok, data = cv2.imencode('.png', RGB)
    with pytest.raises(ValueError, match=match):
        decode_image(compressed(mutate(data.tobytes())))


def test_random_bytes_after_a_valid_magic_only_raise_value_error():
    rng = np.random.default_rng(7)
    ok, png = cv2.imencode('.png', RGB)
    ok, jpg = cv2.imencode('.jpg', RGB)
    for base, fmt in ((png.tobytes(), 'png'), (jpg.tobytes(), 'jpeg')):
        for _ in range(200):
            data = bytearray(base)
            for pos in rng.integers(len(fmt) + 1, len(data), size=rng.integers(1, 4)):
                data[pos] = rng.integers(0, 256)
            try:
                out = decode_image(compressed(bytes(data), fmt), expected_size=(5, 7))
            except ValueError:
                continue
            assert out.shape == (5, 7, 3)


# ------------------------------------------------------------------------------------------ teacher RGB rule
def test_to_teacher_rgb_rule():
    from perception_nodes.io.image import to_teacher_rgb
    # 16-bit full range: 65535 -> 255, linear
    full = np.array([[0, 257, 65535]], np.uint16)
    assert to_teacher_rgb(full)[..., 0].tolist() == [[0, 1, 255]]
    # 12-bit values in mono16: the 12-bit scale (4095 -> 255), not >> 8
    twelve = np.array([[0, 4095, 2048]], np.uint16)
    assert to_teacher_rgb(twelve)[..., 1].tolist() == [[0, 255, 128]]
    # below 256: 8-bit scale (values unchanged)
    assert to_teacher_rgb(np.array([[3, 200]], np.uint16))[..., 2].tolist() == [[3, 200]]
    # float intensities in [0, 1]; depth in metres stretched over finite [min, max], NaN/inf black
    assert to_teacher_rgb(np.array([[0.0, 0.5, 1.0]], np.float32))[..., 0].tolist() == [[0, 128, 255]]
    depth = np.array([[2.0, 4.0, np.nan, 6.0, np.inf]], np.float32)
    assert to_teacher_rgb(depth)[..., 0].tolist() == [[0, 128, 0, 255, 0]]
    assert to_teacher_rgb(np.full((2, 2), np.nan, np.float32)).max() == 0
    assert to_teacher_rgb(np.full((2, 2), 7.0, np.float32)).max() == 0
    # 16-bit colour keeps channels; 8-bit is passed through; every result is (H, W, 3) uint8 writable
    rgb16 = np.stack([full, full // 2, full // 4], axis=2)
    out = to_teacher_rgb(rgb16)
    assert out.shape == (1, 3, 3) and out[0, 2].tolist() == [255, 127, 64]     # 32767 * 255 / 65535 = 127.498
    assert to_teacher_rgb(RGB) is RGB or np.array_equal(to_teacher_rgb(RGB), RGB)
    for enc, arr in (('mono16', twelve), ('16UC1', full), ('32FC1', depth), ('rgb8', RGB), ('mono8', RGB)):
        msg = MSGS.deserialize(MSGS.serialize(rgb_to_image_msg(arr, header('c', 0), encoding=enc)),
                               'sensor_msgs/msg/Image')
        got = decode_image(msg, teacher_rgb=True)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3
        assert got.flags.c_contiguous and got.flags.writeable
    with pytest.raises(ValueError, match='int32 image'):
        to_teacher_rgb(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match='neither RGB'):
        to_teacher_rgb(np.zeros((2, 2, 4), np.uint8))
