"""JPEG headers without decoding: the image size from the SOF segment (bag converters, decoder guard)."""
from __future__ import annotations

import numpy as np

__all__ = ['jpeg_size', 'is_jpeg']

# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4 (DHT), C8 (JPG), CC (DAC) are not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}   # TEM, RST0-7, SOI: markers without a length field


def is_jpeg(data: bytes | memoryview) -> bool:
    """Return True when ``data`` starts with the JPEG start-of-image marker."""
    return len(data) >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def jpeg_size(data: bytes | memoryview | np.ndarray) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment, walking the marker segments (no decoding).

    The one JPEG header parser: the converters size the JPEGs they copy into bags with it, and the image
    decoder checks the declared size before decoding (decompression bombs). ValueError for anything that
    is not a JPEG with a frame header before its scan data.
    """
    mv = memoryview(data).cast('B')
    if not is_jpeg(mv):
        raise ValueError('not a JPEG (no start-of-image marker)')
    pos, n = 2, len(mv)
    while pos + 4 <= n:
        if mv[pos] != 0xFF:
            raise ValueError(f'corrupt JPEG: expected a marker at byte {pos}')
        marker = mv[pos + 1]
        if marker == 0xFF:            # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):    # end of image / start of scan before any frame header
            break
        length = (mv[pos + 2] << 8) | mv[pos + 3]
        if length < 2:
            raise ValueError(f'corrupt JPEG: segment length {length} at byte {pos}')
        if marker in _SOF:
            if pos + 9 > n or length < 8:
                raise ValueError('JPEG frame header (SOF) truncated')
            height, width = (mv[pos + 5] << 8) | mv[pos + 6], (mv[pos + 7] << 8) | mv[pos + 8]
            if width == 0 or height == 0:
                raise ValueError(f'JPEG frame header gives size {width}x{height}: not supported')
            return int(width), int(height)
        pos += 2 + length
    raise ValueError('JPEG without a frame header: no start-of-frame header (truncated or corrupt)')
