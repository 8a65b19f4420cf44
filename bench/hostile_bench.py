"""Peak RSS of ``ovp replay``: the KITTI sample vs the same bag with a PNG decompression bomb; one JSON line.

    python bench/hostile_bench.py [--frames 3] [--labeller teacher|none] [--unguarded]

Both bags carry the KITTI images as CompressedImage PNGs; in the bomb bag frame 1's image is a 124 KB
1-bit PNG declaring 32000x32000 pixels (issue 15, item 3). Each replay runs in its own process (the tiny
random CLIP), which reports its peak RSS (``ru_maxrss``), frames written and skipped reasons.
``--unguarded`` also measures what decoding that one image costs when its header is not checked first.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
from perception_nodes.cli.main import main
rc = main(sys.argv[1:])
print(json.dumps({'rc': rc, 'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

UNGUARDED = """
import json, resource, sys
import numpy as np
import perception_nodes.io.image as image
image._check_size = lambda *args, **kwargs: None          # what the decoder did before issue 15
class Msg:
    format = 'png'
    data = np.fromfile(sys.argv[1], dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
shape = image.decode_image(Msg(), teacher_rgb=True).shape
print(json.dumps({'shape': list(shape), 'before_mib': before,
                  'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', crc)


def png_bomb(width: int = 32000, height: int = 32000) -> bytes:
    """Return a valid 1-bit grey PNG of zeros: ~124 KB on disk, ``width * height`` bytes decoded."""
    row = b'\x00' * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b''.join(comp.compress(row * min(1000, height - y)) for y in range(0, height, 1000)) + comp.flush()
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0))
            + _chunk(b'IDAT', body) + _chunk(b'IEND', b''))


def _compressed_bag(src: Path, dst: Path, bomb_frame: int | None) -> None:
    import cv2
    import numpy as np

    from perception_nodes.io.bags import BagWriter, iter_messages
    from perception_nodes.io.image import image_to_rgb
    with BagWriter(dst) as writer:
        k = 0
        for m in iter_messages(src):
            if m.topic != '/camera_2/image_raw':
                writer.write(m.topic, m.msgtype, m.msg, m.log_time_ns)
                continue
            if k == bomb_frame:
                payload = png_bomb()
            else:
                bgr = cv2.cvtColor(image_to_rgb(m.msg), cv2.COLOR_RGB2BGR)
                payload = cv2.imencode('.png', bgr)[1].tobytes()
            msg = writer.msgs.new('sensor_msgs/msg/CompressedImage', header=m.msg.header, format='png',
                                  data=np.frombuffer(payload, dtype=np.uint8))
            writer.write('/camera_2/image_raw/compressed', 'sensor_msgs/msg/CompressedImage', msg,
                         m.log_time_ns)
            k += 1


def _replay(bag: Path, out: Path, config: Path, labeller: str, env: dict) -> dict:
    args = ['replay', '--bag', str(bag), '--out', str(out), '--config', str(config), '--quiet',
            '--clip-model', 'ovp-tiny', '--clip-pretrained', 'none', '--labeller', labeller]
    proc = subprocess.run([sys.executable, '-c', CHILD, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result['rc'] == 0:
        summary = json.loads((out / 'summary.json').read_text())
        result.update(frames=summary['frames'], skipped=[f"{s['what']} @ {s['where']}: {s['why']}"
                                                         for s in summary['skipped']])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=3)
    ap.add_argument('--labeller', choices=('teacher', 'none'), default='teacher')
    ap.add_argument('--unguarded', action='store_true', help='also decode the bomb without the header check')
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag

    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env['OVP_CLIP_CACHE'] = str(tmp_path / 'clip-cache')
        config = tmp_path / 'bench.yaml'
        config.write_text("vocabulary:\n  templates: ['a photo of a {}.']\n")
        raw = tmp_path / 'kitti'
        write_kitti_sample_bag(shared_data_dir() / 'kitti_raw_2011_09_26_seq', raw, max_frames=args.frames)
        clean, bomb = tmp_path / 'clean_png', tmp_path / 'bomb_png'
        _compressed_bag(raw, clean, None)
        _compressed_bag(raw, bomb, 1)
        result = {'bench': 'hostile', 'frames': args.frames, 'labeller': args.labeller,
                  'bomb_png_bytes': len(png_bomb()),
                  'clean': _replay(clean, tmp_path / 'clean_out', config, args.labeller, env),
                  'bomb': _replay(bomb, tmp_path / 'bomb_out', config, args.labeller, env)}
        delta = result['bomb']['peak_rss_mib'] - result['clean']['peak_rss_mib']
        result['bomb_minus_clean_mib'] = round(delta, 1)
        if args.unguarded:
            (tmp_path / 'bomb.png').write_bytes(png_bomb())
            proc = subprocess.run([sys.executable, '-c', UNGUARDED, str(tmp_path / 'bomb.png')], cwd=ROOT,
                                  env=env, capture_output=True, text=True, check=False)
            result['unguarded_decode'] = (json.loads(proc.stdout.strip().splitlines()[-1])
                                          if proc.returncode == 0 else
                                          {'rc': proc.returncode,
                                           'error': proc.stderr.strip().splitlines()[-1:]})
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
