"""I/O micro-benchmarks; prints ONE JSON line.

- PointCloud2 decode of a 120k-point x, y, z, intensity cloud (a zero-copy view: microseconds);
- image decode of a 1242x375 frame: rgb8, bgr8 (views, plus the contiguous RGB copy frames use) and png;
- bag read throughput on a bag converted from the KITTI raw sample (raw records, deserialized
  messages, assembled frames), in a temporary folder.
Usage: python bench/io_bench.py [--frames N] [--repeat R]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from perception_nodes.io.bags import bag_summary, iter_messages
from perception_nodes.io.frames import default_topics, iter_frames
from perception_nodes.io.image import decode_image, rgb_to_compressed_msg, rgb_to_image_msg
from perception_nodes.io.kitti import shared_data_dir
from perception_nodes.io.kitti_bag import kitti_to_bag
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, read_points, read_points_numpy, xyz_fields
from perception_nodes.io.stamps import header


def timed_us(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` in microseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=10, help='KITTI raw frames to put in the bag')
    parser.add_argument('--repeat', type=int, default=50, help='repetitions of each micro-benchmark')
    args = parser.parse_args()
    out: dict[str, object] = {'bench': 'io'}

    rng = np.random.default_rng(0)
    xyzi = rng.normal(size=(120_000, 4)).astype(np.float32)
    cloud = create_cloud(header('velodyne', 0), xyz_fields([('intensity', FLOAT32)]), xyzi)
    view = read_points(cloud)
    out['pc2_points'] = len(view)
    out['pc2_read_points_is_view'] = bool(np.shares_memory(view, cloud.data))
    out['pc2_read_points_us'] = round(timed_us(lambda: read_points(cloud), args.repeat), 2)
    out['pc2_read_xyz_numpy_us'] = round(timed_us(lambda: read_points_numpy(cloud, ['x', 'y', 'z']),
                                                  args.repeat), 2)
    out['pc2_xyz_copy_us'] = round(timed_us(
        lambda: np.ascontiguousarray(read_points_numpy(cloud, ['x', 'y', 'z'])), args.repeat), 2)
    fields = xyz_fields([('intensity', FLOAT32)])
    out['pc2_create_cloud_us'] = round(timed_us(lambda: create_cloud(header('velodyne', 0), fields, xyzi),
                                                args.repeat), 2)

    data = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    pngs = sorted((data / 'image_02' / 'data').glob('*.png'))
    if pngs:
        rgb = cv2.cvtColor(cv2.imread(str(pngs[0])), cv2.COLOR_BGR2RGB)
        out['image_source'] = 'kitti_raw'
    else:
        rgb = rng.integers(0, 256, size=(375, 1242, 3), dtype=np.uint8)
        out['image_source'] = 'random'
    hdr = header('camera_2', 0)
    for enc in ('rgb8', 'bgr8'):
        msg = rgb_to_image_msg(rgb, hdr, encoding=enc)
        out[f'image_{enc}_decode_us'] = round(timed_us(lambda: decode_image(msg), args.repeat), 2)
        out[f'image_{enc}_decode_contiguous_us'] = round(timed_us(
            lambda: np.ascontiguousarray(decode_image(msg)), args.repeat), 2)
    png = rgb_to_compressed_msg(rgb, hdr, fmt='png')
    out['image_png_bytes'] = int(png.data.size)
    out['image_png_decode_ms'] = round(timed_us(lambda: decode_image(png), max(5, args.repeat // 5)) / 1e3, 3)
    jpeg = rgb_to_compressed_msg(rgb, hdr, fmt='jpeg')
    out['image_jpeg_decode_ms'] = round(timed_us(lambda: decode_image(jpeg), max(5, args.repeat // 5)) / 1e3,
                                        3)

    if data.is_dir():
        with tempfile.TemporaryDirectory(prefix='io_bench_') as tmp:
            bag = Path(tmp) / 'kitti_raw'
            t0 = time.perf_counter()
            info = kitti_to_bag(data, bag, max_frames=args.frames)
            out['bag_convert_s'] = round(time.perf_counter() - t0, 3)
            size = bag_summary(bag).size_bytes
            out['bag_frames'] = info.frames
            out['bag_mb'] = round(size / 1e6, 2)
            for mode, deserialize in (('raw', False), ('deserialized', True)):
                best = float('inf')
                for _ in range(3):
                    t0 = time.perf_counter()
                    n = sum(1 for _ in iter_messages(bag, deserialize=deserialize))
                    best = min(best, time.perf_counter() - t0)
                out[f'bag_read_{mode}_msgs_per_s'] = round(n / best, 1)
                out[f'bag_read_{mode}_mb_per_s'] = round(size / 1e6 / best, 1)
            t0 = time.perf_counter()
            frames = sum(1 for _ in iter_frames(bag, default_topics(bag)))
            elapsed = time.perf_counter() - t0
            out['bag_frames_per_s'] = round(frames / elapsed, 2)
    else:
        out['bag_skipped'] = f'no KITTI raw sample at {data}'
    print(json.dumps(out))


if __name__ == '__main__':
    main()
