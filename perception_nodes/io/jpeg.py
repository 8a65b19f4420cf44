"""JPEG headers without decoding: the image size from the SOF segment (for copying JPEGs into bags)."""
from __future__ import annotations

import struct

__all__ = ['jpeg_size', 'is_jpeg']

# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4 (DHT), C8 (JPG), CC (DAC) are not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}   # TEM, RST0-7, SOI: markers without a length field


def is_jpeg(data: bytes) -> bool:
    """Return True when ``data`` starts with the JPEG start-of-image marker."""
    return len(data) >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG from its start-of-frame header; ValueError when there is none."""
    if not is_jpeg(data):
        raise ValueError('not a JPEG (no start-of-image marker)')
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise ValueError(f'corrupt JPEG: expected a marker at byte {pos}')
        marker = data[pos + 1]
        if marker == 0xFF:            # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        (length,) = struct.unpack_from('>H', data, pos + 2)
        if marker in _SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack_from('>HH', data, pos + 5)
            if width == 0 or height == 0:
                raise ValueError(f'JPEG frame header gives size {width}x{height}')
            return int(width), int(height)
        if marker == 0xDA:            # start of scan before any frame header
            break
        pos += 2 + length
    raise ValueError('JPEG has no start-of-frame header (truncated or corrupt)')
