"""Open vocabularies: classes with several phrasings, prompt templates, cached CLIP text embeddings.

A class embedding is the normalised mean of the normalised CLIP text features of every
template × phrase (prompt ensembling, Affinity3D Eq. 2–3; the label-free seed's Sec. 1 uses 85
templates and several phrasings per class because CLIP rarely saw e.g. "drivable surface").
"""
from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from perception_nodes.atomic import atomic_write
from perception_nodes.safe_yaml import load_yaml

if TYPE_CHECKING:  # torch and open_clip are only needed for embedding
    import torch

    from perception_nodes.teacher.clip_models import LoadedClip

PACKAGE = 'perception_nodes'
BUILTIN_VOCABULARIES = ('semantickitti', 'nuscenes', 'scannet20', 'scannet200', 'sim', 'street')

# The 80 prompt templates CLIP used for ImageNet zero-shot classification (Radford et al. 2021).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.',
    'a bad photo of the {}.', 'a cropped photo of the {}.', 'a tattoo of a {}.', 'the embroidered {}.',
    'a photo of a hard to see {}.', 'a bright photo of a {}.', 'a photo of a clean {}.',
    'a photo of a dirty {}.', 'a dark photo of the {}.', 'a drawing of a {}.', 'a photo of my {}.',
    'the plastic {}.', 'a photo of the cool {}.', 'a close-up photo of a {}.',
    'a black and white photo of the {}.', 'a painting of the {}.', 'a painting of a {}.',
    'a pixelated photo of the {}.', 'a sculpture of the {}.', 'a bright photo of the {}.',
    'a cropped photo of a {}.', 'a plastic {}.', 'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.', 'a photo of the {}.',
    'a good photo of the {}.', 'a rendering of the {}.', 'a {} in a video game.', 'a photo of one {}.',
    'a doodle of a {}.', 'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.', 'a photo of the clean {}.',
    'a photo of a large {}.', 'a rendition of a {}.', 'a photo of a nice {}.', 'a photo of a weird {}.',
    'a blurry photo of a {}.', 'a cartoon {}.', 'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.',
    'a pixelated photo of a {}.', 'itap of the {}.', 'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.', 'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.',
    'a photo of the large {}.', 'a black and white photo of a {}.', 'the plushie {}.',
    'a dark photo of a {}.', 'itap of a {}.', 'graffiti of the {}.', 'a toy {}.', 'itap of my {}.',
    'a photo of a cool {}.', 'a photo of a small {}.', 'a tattoo of the {}.',
)


@dataclass
class VocabClass:
    """One class: its name, the phrases CLIP is prompted with, an RGB display colour."""

    name: str
    phrases: list[str]
    color: tuple[int, int, int]
    ids: tuple[int, ...] = ()          # dataset label ids mapped to this class (evaluation only)

    def __post_init__(self) -> None:
        self.name = str(self.name).strip()
        if not self.name:
            raise ValueError('vocabulary class with an empty name')
        if isinstance(self.phrases, str):
            self.phrases = [self.phrases]
        self.phrases = [str(p).strip() for p in (self.phrases or []) if str(p).strip()]
        if not self.phrases:
            raise ValueError(f'vocabulary class {self.name!r} has no phrases')
        color = tuple(int(c) for c in self.color)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f'vocabulary class {self.name!r}: colour must be 3 values in 0..255, '
                             f'got {self.color}')
        self.color = color  # type: ignore[assignment]
        self.ids = tuple(int(i) for i in self.ids)


@dataclass
class Vocabulary:
    """An ordered set of classes; class index k is the label value written for class k."""

    name: str
    classes: list[VocabClass] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError(f'vocabulary {self.name!r} is empty (no classes)')
        seen: set[str] = set()
        for cls in self.classes:
            if cls.name in seen:
                raise ValueError(f'vocabulary {self.name!r}: class {cls.name!r} appears twice')
            seen.add(cls.name)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return [c.color for c in self.classes]

    def index(self, name: str) -> int:
        """Index of the class called ``name`` (ValueError if absent)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f'class {name!r} not in vocabulary {self.name!r}') from None

    def label_map(self) -> dict[int, int]:
        """Dataset label id -> class index, from the classes' ``ids`` (evaluation)."""
        return {i: k for k, cls in enumerate(self.classes) for i in cls.ids}


def distinct_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` deterministic, well-separated RGB colours (golden-ratio hue steps, alternating value)."""
    colors = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        sat = 0.65 + 0.3 * ((i // 3) % 2)
        val = 0.95 - 0.3 * ((i // 2) % 2)
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def config_dir() -> Path:
    """Return the package's config/ folder: source checkout, then ament share/, then <prefix>/share."""
    candidates = [Path(__file__).resolve().parents[1] / 'config']
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(PACKAGE)) / 'config')
    except Exception:  # noqa: BLE001  (not a ROS install, or the package is not indexed)
        pass
    import sys
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE / 'config')
    for path in candidates:
        if (path / 'vocabularies').is_dir():
            return path
    raise FileNotFoundError(f'perception_nodes config/ not found; looked in {[str(c) for c in candidates]}')


def _classes_from_yaml(data: object, source: str) -> Vocabulary:
    if not isinstance(data, dict) or 'classes' not in data:
        raise ValueError(f'{source}: a vocabulary file needs a top-level "classes" list')
    entries = data['classes'] or []
    if not isinstance(entries, list):
        raise ValueError(f'{source}: "classes" must be a list')
    fallback = distinct_colors(len(entries))
    classes = []
    for k, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {'name': entry}
        if not isinstance(entry, dict) or 'name' not in entry:
            raise ValueError(f'{source}: class #{k} needs a "name"')
        phrases = entry.get('phrases', [entry['name']])
        try:
            classes.append(VocabClass(name=entry['name'], phrases=phrases,
                                      color=entry.get('color', fallback[k]), ids=entry.get('ids', ())))
        except (TypeError, ValueError) as exc:
            raise ValueError(f'{source}: {exc}') from exc
    return Vocabulary(name=str(data.get('name', Path(source).stem)), classes=classes)


def vocabulary_from_names(names: Iterable[str], name: str = 'custom') -> Vocabulary:
    """Build a vocabulary typed by a user: each name is its own phrase; deterministic distinct colours."""
    names = [str(n).strip() for n in names if str(n).strip()]
    colors = distinct_colors(len(names))
    return Vocabulary(name=name, classes=[VocabClass(n, [n], c) for n, c in zip(names, colors)])


def load_vocabulary(source: str | Path | Sequence[str] | Vocabulary) -> Vocabulary:
    """Load a vocabulary from what a user gives.

    A string: a built-in name (``semantickitti``, ...), a YAML file (absolute, relative to the working
    directory or to the package's share folder) or comma-separated class names. A list: class names, or a
    single entry that is such a string (as node parameters give it). A single unknown word is an error, not
    a one-class vocabulary (which would label every point alike): a typo must not pass silently.
    """
    if isinstance(source, Vocabulary):
        return source
    if isinstance(source, (list, tuple)):
        entries = [str(e).strip() for e in source if str(e).strip()]
        if not entries:
            raise ValueError('empty vocabulary: give a vocabulary name, a YAML file or class names')
        if len(entries) > 1:
            return vocabulary_from_names(entries)
        source = entries[0]
    text = str(source).strip()
    if not text:
        raise ValueError('empty vocabulary: give a vocabulary name, a YAML file or class names')
    if ',' in text:      # names first: a long list must never be tried as a file name
        return vocabulary_from_names(text.split(','))
    if text.lower() in BUILTIN_VOCABULARIES:
        path = config_dir() / 'vocabularies' / f'{text.lower()}.yaml'
    elif text.lower().endswith(('.yaml', '.yml')) or _is_file(Path(text).expanduser()):
        path = Path(text).expanduser()
        if not path.is_absolute() and not _is_file(path):
            try:
                shared = config_dir().parent / path
            except FileNotFoundError:
                shared = path
            path = shared if _is_file(shared) else path
    else:
        raise ValueError(f'unknown vocabulary {text!r}: use one of {BUILTIN_VOCABULARIES}, a YAML file, '
                         f'or comma-separated class names ("road,car")')
    if not _is_file(path):
        raise FileNotFoundError(f'vocabulary file not found: {path}')
    return _classes_from_yaml(load_yaml(path), str(path))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False (not OSError) for names the OS refuses, e.g. a long comma list."""
    try:
        return path.is_file()
    except OSError:
        return False


def validate_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Templates as a tuple; each must contain exactly one '{}' (ValueError otherwise)."""
    if isinstance(templates, str):
        templates = [templates]
    out = tuple(str(t) for t in templates)
    if not out:
        raise ValueError('no prompt templates')
    for t in out:
        if t.count('{}') != 1:
            raise ValueError(f'prompt template {t!r} must contain exactly one "{{}}"')
    return out


def load_templates(source: str | Path | Sequence[str] | None = None) -> tuple[str, ...]:
    """Prompt templates: None -> DEFAULT_TEMPLATES, 'default', a YAML file (a list, or {templates: [...]})."""
    if source is None or (isinstance(source, str) and source == 'default'):
        return DEFAULT_TEMPLATES
    if isinstance(source, (list, tuple)):
        return validate_templates(source)
    path = Path(source).expanduser()
    if not _is_file(path):
        raise FileNotFoundError(f'prompt template file not found: {path}')
    data = load_yaml(path)
    if isinstance(data, dict):
        data = data.get('templates')
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a list of templates (or a "templates" key holding one)')
    return validate_templates(data)


def class_cache_key(identity: str, templates: Sequence[str], phrases: Sequence[str]) -> str:
    """sha256 of (model + weights identity, templates, phrases): the text-embedding cache key of one class."""
    blob = json.dumps({'identity': identity, 'templates': list(templates), 'phrases': list(phrases)},
                      ensure_ascii=False, separators=(',', ':'))
    return hashlib.sha256(blob.encode('utf-8')).hexdigest()


class TextEmbedder:
    """CLIP text embeddings of vocabulary classes with a per-class disk cache (safetensors).

    Each class is cached under ``cache_dir/text/<key[:2]>/<key>.safetensors`` where the key hashes the
    model + weights identity, the templates and the class's phrases (not its name or colour), so
    editing one class re-encodes only that class. ``encoded_prompts`` counts prompts sent to CLIP.
    """

    def __init__(self, clip: LoadedClip, cache_dir: str | Path | None = None, batch_size: int = 256) -> None:
        from perception_nodes.teacher.clip_models import default_cache_dir
        self.clip = clip
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.batch_size = int(batch_size)
        self.encoded_prompts = 0
        self.encoded_classes = 0

    def _path(self, key: str) -> Path:
        return self.cache_dir / 'text' / key[:2] / f'{key}.safetensors'

    def _read(self, key: str) -> torch.Tensor | None:
        """Return the cached embedding of ``key``, or None when absent or not a valid entry (a miss).

        Valid: a regular safetensors file holding one float32 ``embedding`` of shape (C,), finite, of unit
        norm (within 1e-3), written for this model's identity. Anything else (a truncated or foreign
        file, NaN values, a directory at the entry's path) is a miss: the class is recomputed and the
        entry replaced.
        """
        import torch
        from safetensors import SafetensorError, safe_open
        path = self._path(key)
        try:
            if not path.is_file():
                return None
            with safe_open(str(path), framework='pt') as f:
                meta = f.metadata() or {}
                if set(f.keys()) != {'embedding'}:
                    return None
                emb = f.get_tensor('embedding')
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None
        if (emb.dtype != torch.float32 or tuple(emb.shape) != (self.clip.embed_dim,)
                or meta.get('identity') != self.clip.identity or not bool(torch.isfinite(emb).all())):
            return None
        if not math.isclose(float(emb.double().norm()), 1.0, abs_tol=1e-3):
            return None
        return emb

    def _write(self, key: str, emb: torch.Tensor, phrases: Sequence[str], n_templates: int) -> None:
        """Store ``emb`` atomically; a cache that cannot be written only costs a warning."""
        from safetensors.torch import save_file
        path = self._path(key)
        meta = {'identity': self.clip.identity, 'phrases': json.dumps(list(phrases)),
                'templates': str(n_templates)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
                os.rmdir(path)      # an empty directory where the entry belongs; a full one is left alone
            atomic_write(path, lambda tmp: save_file({'embedding': emb.detach().float().cpu().contiguous()},
                                                     tmp, metadata=meta))
        except OSError as exc:
            warnings.warn(f'text-embedding cache entry {path} not written ({exc.strerror or exc}); '
                          'the class is recomputed next time', RuntimeWarning, stacklevel=3)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm CLIP text features (P, C) of raw prompts, in batches."""
        import torch
        import torch.nn.functional as F

        from perception_nodes.teacher.clip_models import encode_text
        feats = []
        with torch.inference_mode():
            for i in range(0, len(prompts), self.batch_size):
                tokens = self.clip.tokenizer(list(prompts[i:i + self.batch_size])).to(self.clip.device)
                feats.append(F.normalize(encode_text(self.clip, tokens).float(), dim=-1))
        self.encoded_prompts += len(prompts)
        return torch.cat(feats)

    def embed_class(self, phrases: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Affinity3D Eq. 2–3: normalise(mean over templates × phrases of normalised text features)."""
        import torch.nn.functional as F
        prompts = [t.format(p) for p in phrases for t in templates]
        return F.normalize(self.encode_prompts(prompts).mean(dim=0), dim=0)

    def embed(self, vocabulary: Vocabulary | str | Sequence[str],
              templates: Sequence[str] | str | Path | None = None) -> torch.Tensor:
        """(K, C) unit rows, one per class, on the CLIP device; unchanged classes come from the cache."""
        import torch
        vocab = vocabulary_from_names(vocabulary) if isinstance(vocabulary, (list, tuple)) else \
            load_vocabulary(vocabulary)
        temps = load_templates(templates)
        rows = []
        for cls in vocab.classes:
            key = class_cache_key(self.clip.identity, temps, cls.phrases)
            emb = self._read(key)
            if emb is None:
                emb = self.embed_class(cls.phrases, temps).cpu()
                self.encoded_classes += 1
                self._write(key, emb, cls.phrases, len(temps))
            rows.append(emb)
        return torch.stack(rows).to(self.clip.device)
