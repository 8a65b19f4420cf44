"""GPU check of issue 14 (run by bench/gpu_check.sh on a CUDA machine): prints ONE JSON line.

Random weights throughout (latency does not depend on them; parity compares backends on the same weights):

- ``student``: the deployable student (``StudentConfig.deployable()``, exported to ONNX) on a 120k-point
  KITTI raw scan (padded to the graph's 131072): ``backend.infer`` p50 / p90 for ONNX Runtime CPU, ONNX
  Runtime CUDA EP, ONNX Runtime TensorRT EP (fp16) and the package's TensorRT engine (fp16, built first:
  ``engine_build_s``); target engine p50 < 10 ms. Parity with ONNX Runtime CPU: the cosine labels against
  20 random class embeddings (``classify``), fraction equal (target >= 0.999), and the largest embedding
  difference;
- ``maskclip``: MaskCLIP ViT-B-16 dense features in fp16 on the GPU for 6 cameras of 900x1600 (nuScenes
  size) resized to ``teacher.input_size`` (default 224x416): one batched ``dense_features`` call, p50 / p90;
- ``pipeline``: ``ovp replay`` frames/s on the KITTI sample with ``runtime.device: cuda``: the student
  labeller (TensorRT backend when it loads, else ONNX Runtime CUDA) and the teacher (ViT-B-16), through
  ``bench/replay_bench.py`` (idle only).

    python bench/gpu_check.py [--repeats 20] [--skip maskclip,pipeline] [--device cuda]

``--device cpu`` runs what can run without a GPU (a smoke test of this script; GPU rows report errors).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1e3, 2)


def _timed(fn, repeats: int, sync=None) -> dict:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return {'p50_ms': _ms(times, 50), 'p90_ms': _ms(times, 90)}


def _scan(n: int) -> np.ndarray:
    sys.path.insert(0, str(REPO / 'bench'))
    from student_bench import load_scan
    return load_scan(n)[0]


def student_rows(work: Path, repeats: int, device: str) -> dict:
    import torch

    from perception_nodes.classify import classify
    from perception_nodes.student.backends import BackendConfig, load_backend
    from perception_nodes.student.checkpoint import save_checkpoint
    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.model import build_student

    torch.manual_seed(0)
    config = StudentConfig.deployable()
    save_checkpoint(work / 'ckpt', build_student(config))
    scan = _scan(120_000)
    cache = str(work / 'cache')
    cases = {
        'ort_cpu': BackendConfig(kind='onnxruntime', device='cpu', engine_cache_dir=cache),
        'ort_cuda_ep': BackendConfig(kind='onnxruntime', device='cuda', engine_cache_dir=cache,
                                     providers=['CUDAExecutionProvider']),
        'ort_tensorrt_ep_fp16': BackendConfig(kind='onnxruntime', device='cuda', engine_cache_dir=cache,
                                              fp16=True, providers=['TensorrtExecutionProvider']),
        'tensorrt_engine_fp16': BackendConfig(kind='tensorrt', device='cuda', engine_cache_dir=cache,
                                              fp16=True),
    }
    generator = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(20, config.out_dim, generator=generator), dim=1)
    out: dict = {'points': len(scan), 'max_points': config.max_points, 'targets': {
        'tensorrt_engine_fp16_p50_ms': '< 10', 'labels_equal_to_ort_cpu': '>= 0.999'}}
    reference = None
    sync = torch.cuda.synchronize if device == 'cuda' and torch.cuda.is_available() else None
    for name, cfg in cases.items():
        if cfg.device == 'cuda' and device != 'cuda':
            out[name] = {'error': 'skipped: --device cpu'}
            continue
        try:
            t0 = time.perf_counter()
            backend = load_backend(cfg, work / 'ckpt')
            load_s = time.perf_counter() - t0
            result = backend.infer(scan)
            row = {'backend': backend.name, 'load_s': round(load_s, 1),
                   **_timed(lambda: backend.infer(scan), repeats, sync)}
            if name == 'tensorrt_engine_fp16':
                row['engine_build_s'] = row.pop('load_s')          # the first load builds the engine
            emb = torch.from_numpy(np.asarray(result.point_embeddings, np.float32))
            labels = classify(emb, text).labels
            if reference is None:
                reference = (emb, labels)
            else:
                row['labels_equal_to_ort_cpu'] = round(float((labels == reference[1]).float().mean()), 5)
                diff = (emb - reference[0]).abs()
                row['max_abs_embedding_diff'] = round(float(diff[torch.isfinite(diff)].max()), 5)
            out[name] = row
        except Exception as exc:  # noqa: BLE001  (each row reports its own failure)
            out[name] = {'error': f'{type(exc).__name__}: {exc}'[:400]}
    return out


def maskclip_rows(repeats: int, device: str, input_size: tuple[int, int]) -> dict:
    import torch

    from perception_nodes.frame import CameraModel, CameraView
    from perception_nodes.teacher.clip_models import ClipSpec, load_clip
    from perception_nodes.teacher.maskclip import MaskClipTeacher

    clip = load_clip(ClipSpec(model='ViT-B-16', pretrained='none', device=device))
    if device == 'cuda':
        clip.model.half()
    teacher = MaskClipTeacher(clip, input_size=input_size)
    rng = np.random.default_rng(0)
    model = CameraModel(frame_id='cam', width=1600, height=900,
                        K=np.array([[1266.0, 0, 816], [0, 1266.0, 491], [0, 0, 1]]))
    views = [CameraView(name=f'cam{i}', image=rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8),
                        model=model, T_cam_lidar=np.eye(4)) for i in range(6)]

    def run():
        with torch.autocast('cuda', dtype=torch.float16, enabled=device == 'cuda'):
            return teacher.dense_features(views)
    sync = torch.cuda.synchronize if device == 'cuda' else None
    maps = run()
    return {'model': 'ViT-B-16 (random weights)', 'dtype': 'float16' if device == 'cuda' else 'float32',
            'cameras': len(views), 'image': '900x1600', 'input_size': list(input_size),
            'feature_map': list(maps[0].shape), **_timed(run, repeats, sync)}


def pipeline_rows(device: str) -> dict:
    out = {}
    for labeller, clip_model in (('student', 'ovp-tiny'), ('teacher', 'ViT-B-16')):
        cmd = [sys.executable, str(REPO / 'bench' / 'replay_bench.py'), '--labeller', labeller,
               '--clip-model', clip_model, '--modes', 'idle', '--passes', '2',
               '--set', f'runtime.device={device}']
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
        if proc.returncode or not lines:
            out[labeller] = {'error': (proc.stderr.strip().splitlines() or ['failed'])[-1][:400]}
            continue
        case = next(iter(json.loads(lines[-1])['cases'].values()))
        keep = ('frames_per_s', 'frame_ms', 'stage_ms_p50', 'stage_ms_p90', 'error')
        out[labeller] = {k: case[k] for k in keep if k in case}
        out[labeller]['clip_model'] = clip_model
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=20)
    ap.add_argument('--device', default='cuda', choices=('cuda', 'cpu'))
    ap.add_argument('--skip', default='', help='sections to skip: student, maskclip, pipeline')
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    from perception_nodes.config import PerceptionConfig
    skip = {s for s in args.skip.split(',') if s}
    result: dict = {'bench': 'gpu_check', 'date': time.strftime('%Y-%m-%d'),
                    'python': platform.python_version(), 'torch': torch.__version__,
                    'cuda': torch.cuda.is_available(),
                    'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    'device': args.device}
    for module in ('tensorrt', 'onnxruntime'):
        try:
            result[module] = __import__(module).__version__
        except ImportError:
            result[module] = None
    if result['onnxruntime']:
        import onnxruntime
        result['ort_providers'] = onnxruntime.get_available_providers()
    work = Path(tempfile.mkdtemp(prefix='ovp-gpu-check-'))
    sections = {'student': lambda: student_rows(work, args.repeats, args.device),
                'maskclip': lambda: maskclip_rows(max(5, args.repeats // 2), args.device,
                                                  tuple(PerceptionConfig().teacher.input_size)),
                'pipeline': lambda: pipeline_rows(args.device)}
    for name, fn in sections.items():
        if name in skip:
            continue
        try:
            result[name] = fn()
        except Exception as exc:  # noqa: BLE001  (a section's failure is reported, the others still run)
            result[name] = {'error': f'{type(exc).__name__}: {exc}'[:400],
                            'where': traceback.format_exc().strip().splitlines()[-3][:300]}
    result['loadavg_1m'] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
