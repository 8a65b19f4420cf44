"""Issue 15, items 12-16: a bad setting is a one-line error naming the key, exit 2, before any work.

"Before any work" is checked on the outcome: the input bag given does not exist, so an error that names the
setting (not the missing bag) came first; no output folder and no temporary appear; nothing is allocated
(the memory limits say the number instead).
"""
from __future__ import annotations

import pytest


def _settings_error(kit, hostile, args=(), yaml=None):
    """Run ``ovp replay`` on a missing bag with ``args`` / a config ``yaml``; returns the one error line."""
    if yaml is not None:
        kit.config.write_text(yaml)
    names = hostile.listing(kit.tmp)
    out = kit.tmp / 'OUT'
    run = kit.replay(kit.tmp / 'no_such_bag', out, *args)
    assert run.rc == 2, run.err
    assert len(run.err) == 1 and run.err[0].startswith('ovp replay: error: '), run.err
    assert 'input bag not found' not in run.err[0]           # the setting was checked before the bag
    assert not out.exists() and hostile.listing(kit.tmp) == names
    return run.err[0]


SIZES = [   # item 12: sizes bounded by what they cost
    ('6 km nav grid', ['--set', 'grids.nav_size=6000,6000'], 'grids.nav_size[0] must be <= 2000'),
    ('2 km nav grid at 0.2 m', ['--set', 'grids.nav_size=2000,2000'], 'MiB per frame'),
    ('0.001 m cells', ['--set', 'grids.nav_resolution=0.001'], 'grids.nav_resolution must be >= 0.01'),
    ('20 km voxel grid', ['--set', 'grids.voxel_lower=-10000,-10000,-5', '--set',
                          'grids.voxel_upper=10000,10000,3', '--set', 'grids.voxel_shape=100000,100000,40'],
     'grids.voxel_shape (100000, 100000, 40) is 4e+11 voxels'),
    ('input_size 60000', ['--set', 'teacher.input_size=60000,60000'],
     'teacher.input_size[0] must be <= 4096'),
    ('input_size 4096', ['--set', 'teacher.input_size=4096,4096'],
     'teacher.input_size 4096x4096 needs ~192 MiB'),
    ('point_radius 100000', ['--set', 'overlay.point_radius=100000'], 'overlay.point_radius must be <= 20'),
]
NUMBERS = [   # item 13: NaN, inf, negative, zero
    ('NaN logit_scale', ['--set', 'labeller.logit_scale=nan'], 'labeller.logit_scale: must be a finite'),
    ('negative sync_slop', ['--set', 'inputs.sync_slop=-0.05'], 'inputs.sync_slop must be > 0'),
    ('NaN voxel_lower', ['--set', 'grids.voxel_lower=nan,0,0'], 'grids.voxel_lower[0]: must be a finite'),
    ('segments voxel_size 0', ['--set', 'segments.voxel_size=0'], 'segments.voxel_size must be >= 0.02'),
]
YAML = [      # items 13-15 from a config file
    ('NaN relative_threshold', 'fusion:\n  visibility_relative_threshold: .nan\n',
     'fusion.visibility_relative_threshold: must be a finite'),
    ('size .inf', 'grids:\n  nav_resolution: .inf\n', 'grids.nav_resolution: must be a finite'),
    ('colour 300', 'overlay:\n  unknown_color: [300, 0, 0]\n', 'overlay.unknown_color[0] must be <= 255'),
    ('alias bomb', 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                   + ''.join(f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
                             f'*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
                             f'*{chr(97 + i)}]\n' for i in range(8)), 'alias'),
]
DEVICE = [    # item 14
    ('garbage device', ['--device', 'gpu please'],
     "runtime.device must be cpu, cuda or cuda:N, got 'gpu please'"),
]


FLAGS = SIZES + NUMBERS + DEVICE


@pytest.mark.parametrize('case, args, said', FLAGS, ids=[c[0] for c in FLAGS])
def test_items12_13_14_bad_setting_is_one_line_naming_the_key(kit, hostile, case, args, said):
    assert said in _settings_error(kit, hostile, args)


@pytest.mark.parametrize('case, yaml, said', YAML, ids=[c[0] for c in YAML])
def test_items13_14_15_bad_config_file_is_one_line_naming_the_key(kit, hostile, case, yaml, said):
    line = _settings_error(kit, hostile, yaml=yaml)
    assert said in line and str(kit.config) in line


def test_item14_cuda_without_that_gpu(kit, hostile):
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f'cuda:{count}' if count else 'cuda'                   # a device this machine does not have
    line = _settings_error(kit, hostile, ['--device', device])
    assert f"runtime.device '{device}': this machine has" in line


def test_item14_cache_dir_that_is_a_file(kit, hostile):
    blocker = kit.tmp / 'a_file'
    blocker.write_text('not a folder')
    line = _settings_error(kit, hostile, ['--set', f'teacher.cache_dir={blocker}'])
    assert line.endswith(f"teacher.cache_dir '{blocker}': is a file, not a folder")
    line = _settings_error(kit, hostile, ['--set', f'teacher.cache_dir={blocker}/clip'])
    assert f'cannot be created: {blocker} is a file' in line


def test_item14_default_cache_pointing_at_a_file(kit, hostile, monkeypatch):
    blocker = kit.tmp / 'a_file'
    blocker.write_text('not a folder')
    monkeypatch.setenv('OVP_CLIP_CACHE', str(blocker))
    assert 'the CLIP cache ($OVP_CLIP_CACHE or default)' in _settings_error(kit, hostile)


def test_item15_alias_bomb_costs_nothing(kit, hostile):
    """The 464-byte bomb of the issue (9 levels): refused while parsing, before any expansion."""
    import tracemalloc
    tracemalloc.start()
    try:
        _settings_error(kit, hostile, yaml=YAML[-1][1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20                      # expanded, it would be 9**9 strings (~0.5 GB)


def test_item16_poisoned_text_cache_entries_are_recomputed(kit, hostile, tmp_path, monkeypatch):
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from perception_nodes.io.pointcloud2 import read_points
    cache = tmp_path / 'own-cache'
    monkeypatch.setenv('OVP_CLIP_CACHE', str(cache))
    vocab = ['road', 'car', 'building']
    first = kit.replay(kit.clean, kit.tmp / 'first', '--vocabulary', ','.join(vocab), '--max-frames', '1')
    assert first.rc == 0, first.err
    entries = sorted(cache.rglob('*.safetensors'))
    assert len(entries) == 3
    with safe_open(str(entries[0]), framework='pt') as f:
        meta, emb = f.metadata(), f.get_tensor('embedding')
    poisoned = torch.full_like(emb, float('nan'))
    save_file({'embedding': poisoned}, str(entries[0]), metadata=meta)     # same identity, NaN values
    entries[1].unlink()
    (entries[1] / 'squatter').mkdir(parents=True)                          # a full folder at an entry

    with pytest.warns(RuntimeWarning, match='text-embedding cache entry .* not written'):
        second = kit.replay(kit.clean, kit.tmp / 'second', '--vocabulary', ','.join(vocab),
                            '--max-frames', '1')
    assert second.rc == 0, second.err
    a, b = (read_points(run.messages(hostile.LABELED)[0].msg) for run in (first, second))
    np.testing.assert_array_equal(a['label'], b['label'])                 # same labels as the clean cache
    assert np.isfinite(b['score']).all()
    with safe_open(str(entries[0]), framework='pt') as f:
        assert torch.equal(f.get_tensor('embedding'), emb)                # the NaN entry was rewritten
    assert (entries[1] / 'squatter').is_dir()                             # the folder was left alone
