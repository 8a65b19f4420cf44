"""safe_yaml.load_yaml: safe_load's results; anchors/aliases and oversized input refused in one line."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from perception_nodes.safe_yaml import load_yaml
from perception_nodes.vocabulary import config_dir


def alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """The issue-15 item 15 shape: each level a list of ``fan`` aliases of the previous one."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f'a{i}: &a{i} [' + ', '.join([f'*a{i - 1}'] * fan) + ']')
    return '\n'.join(lines) + '\n'


def test_same_result_as_safe_load_for_every_shipped_file() -> None:
    files = sorted(config_dir().rglob('*.yaml'))
    assert len(files) >= 7
    for path in files:
        assert load_yaml(path) == yaml.safe_load(path.read_text(encoding='utf-8')), path


def test_text_and_bytes() -> None:
    assert load_yaml('a: 1\nb: [x, 2.5]\n') == {'a': 1, 'b': ['x', 2.5]}
    assert load_yaml(b'- 1\n- 2\n') == [1, 2]
    assert load_yaml('') is None
    assert load_yaml('config.yaml') == 'config.yaml'          # a str is text, never a file name


def test_alias_bomb_is_refused_quickly_with_one_line(tmp_path: Path) -> None:
    bomb = alias_bomb()
    assert len(bomb.encode()) < 600                           # a few hundred bytes ...
    path = tmp_path / 'bomb.yaml'
    path.write_text(bomb)
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load_yaml(path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert message.startswith(f'{path}: invalid YAML: YAML anchor ') and '\n' not in message
    assert 'line 1' in message
    assert elapsed < 5.0                                      # ... that safe_load would expand to 9**9 items


@pytest.mark.parametrize('text, what', [
    ('a: &x 1\n', 'anchor'),
    ('a: 1\nb: *x\n', 'alias'),                                # undefined alias: still the alias message
    ('base: &b {k: 1}\nother:\n  <<: *b\n', 'anchor'),
])
def test_any_anchor_or_alias_is_refused(text: str, what: str) -> None:
    with pytest.raises(ValueError, match=f'<text>: invalid YAML: YAML {what}'):
        load_yaml(text)


def test_size_limit_and_bad_files(tmp_path: Path) -> None:
    big = tmp_path / 'big.yaml'
    big.write_text('x: ' + 'a' * 2000 + '\n')
    with pytest.raises(ValueError, match=r'big.yaml: 2004 bytes is larger than the 1000-byte limit'):
        load_yaml(big, max_bytes=1000)
    with pytest.raises(ValueError, match='more than the 10-byte limit'):
        load_yaml('a: 123456789\n', max_bytes=10)
    with pytest.raises(ValueError, match='no such file'):
        load_yaml(tmp_path / 'missing.yaml')
    with pytest.raises(ValueError, match='not a file'):
        load_yaml(tmp_path)
    (tmp_path / 'latin.yaml').write_bytes(b'a: \xe9\n')
    with pytest.raises(ValueError, match='not UTF-8'):
        load_yaml(tmp_path / 'latin.yaml')
    with pytest.raises(ValueError, match=r'invalid YAML: .*line 2'):
        load_yaml('a: [1, 2\nb: }\n')
    with pytest.raises(ValueError, match='could not determine a constructor'):
        load_yaml('a: !!python/object/apply:os.system ["true"]\n')
    with pytest.raises(ValueError, match='nested too deeply'):
        load_yaml('[' * 50_000 + ']' * 50_000)
    with pytest.raises(ValueError, match='path or YAML text'):
        load_yaml(3)  # type: ignore[arg-type]
