"""Load open_clip models by name with a pretrained tag, a local weights file, or random weights.

Weights are read without unpickling: ``.safetensors`` through safetensors, ``.pt/.pth/.bin`` state
dicts through ``torch.load(weights_only=True)``. Pretrained tags resolve through open_clip's
registry; in offline mode (the default) nothing is downloaded and a missing file raises
:class:`WeightsUnavailableError` naming the file to place and where.

Importing this module is cheap: open_clip (which pulls in torchvision and torch._dynamo, about a second)
is imported by the functions that need it, so a geometry-only or student-only process never loads it.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from perception_nodes.hashing import file_sha256

CACHE_ENV = 'OVP_CLIP_CACHE'
RANDOM_TAGS = ('none', 'random', '')
WEIGHT_SUFFIXES = ('.safetensors', '.pt', '.pth', '.bin')


def _open_clip() -> Any:
    """open_clip, with this package's tiny models registered (imported on first use: module docstring)."""
    import open_clip

    from perception_nodes.teacher import tiny  # noqa: F401  (registers ovp-tiny, ovp-tiny-rn)
    return open_clip


class WeightsUnavailableError(FileNotFoundError):
    """CLIP weights are not on disk and may not be downloaded (offline)."""


def default_cache_dir() -> Path:
    """Where CLIP weights and text embeddings are cached: $OVP_CLIP_CACHE or ~/.cache/ovp/clip."""
    return Path(os.environ.get(CACHE_ENV, str(Path.home() / '.cache' / 'ovp' / 'clip')))


@dataclass
class ClipSpec:
    """Which CLIP to load. ``pretrained``: an open_clip tag, a weights file path, or 'none' (random).

    Tags set the activation the weights were trained with (OpenAI weights use QuickGELU); for a local
    file of OpenAI weights name the model ``ViT-B-32-quickgelu`` (etc.).
    """

    model: str = 'ViT-B-32'
    pretrained: str = 'openai'
    cache_dir: str | Path | None = None
    offline: bool = True
    device: str = 'cpu'
    seed: int = 0                      # random init for pretrained='none' (deterministic identity)


@dataclass
class LoadedClip:
    """An open_clip CLIP in eval mode with what the teachers and the text embedder need."""

    name: str
    model: Any                          # open_clip.CLIP (eval mode, on ``device``)
    tokenizer: Callable[..., torch.Tensor]
    embed_dim: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    image_size: tuple[int, int]         # (height, width) the model was trained at
    identity: str                       # model name + weights identity (cache key)
    pretrained_meaningful: bool         # False for random weights: outputs mean nothing
    device: torch.device
    kind: str                           # 'vit' or 'resnet'
    logit_scale: float                  # exp(learned logit scale); CLIP's trained value is 100

    @property
    def patch_size(self) -> int:
        """Output stride of the dense feature map (ViT patch size, or 32 for ResNets)."""
        if self.kind == 'vit':
            return int(self.model.visual.patch_size[0])
        return 32


def _flat_weights_name(model: str, tag: str) -> str:
    return f'{model}-{tag}.safetensors'


def _hf_candidates(cfg: dict) -> tuple[str, list[str]]:
    """(repo_id, filenames in preference order) of a pretrained cfg's Hugging Face entry."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    hub = cfg.get('hf_hub', '')
    if not hub:
        return '', []
    repo_id, filename = os.path.split(hub)  # 'org/name/' (default file) or 'org/name/file.bin'
    names = [HF_SAFE_WEIGHTS_NAME, filename or HF_WEIGHTS_NAME]
    if filename.endswith(('.bin', '.pth')):
        names = [filename[:-4] + '.safetensors', filename]
    return repo_id, names


def resolve_pretrained(model: str, tag: str, cache_dir: Path, offline: bool = True) -> tuple[Path, dict]:
    """Path of the weights file of an open_clip pretrained tag, and the tag's config.

    Looked up, without network, in order: ``cache_dir/<model>-<tag>.safetensors``; the Hugging Face
    cache layout under ``cache_dir`` (what open_clip downloads); ``cache_dir/<basename of url>``.
    Online (``offline=False``) a missing file is downloaded by open_clip into ``cache_dir``.
    """
    _open_clip()
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model
    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        tags = list_pretrained_tags_by_model(model)
        raise ValueError(f'unknown pretrained tag {tag!r} for CLIP model {model!r} and no such file; '
                         f'known tags: {tags or "none"}; or pass a weights file path, or "none" for random')
    flat = cache_dir / _flat_weights_name(model, tag)
    if flat.is_file():
        return flat, cfg
    repo_id, hf_names = _hf_candidates(cfg)
    if repo_id:
        from huggingface_hub import try_to_load_from_cache
        for name in hf_names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache_dir))
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found), cfg
    url = cfg.get('url', '')
    if url and (cache_dir / os.path.basename(url)).is_file():
        return cache_dir / os.path.basename(url), cfg
    if not offline:
        return Path(download_pretrained(cfg, cache_dir=str(cache_dir))), cfg
    source = f'"{hf_names[0]}" from https://huggingface.co/{repo_id}' if repo_id else url
    raise WeightsUnavailableError(
        f'CLIP weights for {model} / {tag} are not available offline. Place the weights file at '
        f'{flat} (download {source}, any open_clip state dict in safetensors format), '
        f'or pass --clip-pretrained /path/to/weights.safetensors, '
        f'or allow downloading (offline=False) into {cache_dir}.')


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from a file, never unpickling arbitrary objects (ValueError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f'CLIP weights file not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            state = load_file(str(path), device='cpu')
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f'{path}: not a readable safetensors file ({exc})') from exc
    elif path.suffix in WEIGHT_SUFFIXES:
        try:
            state = torch.load(str(path), map_location='cpu', weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
            raise ValueError(
                f'{path}: not a plain tensor state dict; refusing to unpickle it (torch.load with '
                f'weights_only=True failed: {str(exc).splitlines()[0]}). Convert it to safetensors.') from exc
    else:
        raise ValueError(f'{path}: unsupported weights format {path.suffix!r}; '
                         f'expected one of {WEIGHT_SUFFIXES}')
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path}: expected a mapping of parameter names to tensors')
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def load_weights_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model``; a ValueError lists missing/unexpected/mis-shaped keys."""
    from open_clip.model import resize_pos_embed
    state = dict(state)
    own = model.state_dict()
    for key in ('logit_scale', 'logit_bias'):
        if key in state and key in own and state[key].ndim != own[key].ndim:
            state[key] = state[key].reshape(own[key].shape)
    if 'logit_bias' in own and 'logit_bias' not in state and 'logit_scale' in state:
        state['logit_bias'] = torch.zeros_like(own['logit_bias'])
    try:
        resize_pos_embed(state, model)
    except Exception:  # noqa: BLE001  (mismatch is reported below with the keys)
        pass
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f'{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}'
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        def few(items: list[str]) -> str:
            return ', '.join(items[:5]) + (f' (+{len(items) - 5} more)' if len(items) > 5 else '')
        problems = []
        if missing:
            problems.append(f'{len(missing)} missing keys: {few(missing)}')
        if unexpected:
            problems.append(f'{len(unexpected)} unexpected keys: {few(unexpected)}')
        if shapes:
            problems.append(f'{len(shapes)} shape mismatches: {few(shapes)}')
        raise ValueError(f'weights {source} do not match the CLIP model: ' + '; '.join(problems))
    model.load_state_dict(state, strict=True)


def _is_weights_path(pretrained: str) -> bool:
    return pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained or os.path.exists(pretrained)


def load_clip(spec: ClipSpec) -> LoadedClip:
    """Create the open_clip model of ``spec``, load its weights, put it in eval mode on ``spec.device``."""
    open_clip = _open_clip()
    name = spec.model
    if name not in open_clip.list_models():
        raise ValueError(f'unknown CLIP model {name!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, RN50, '
                         f'and this package adds ovp-tiny, ovp-tiny-rn')
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    tag = (spec.pretrained or 'none').strip()
    cfg: dict = {}
    weights: Path | None = None
    if tag.lower() in RANDOM_TAGS:
        identity = f'{name}:random-init:seed{spec.seed}'
    elif _is_weights_path(tag):
        weights = Path(tag).expanduser()
        if not weights.is_file():
            raise WeightsUnavailableError(f'CLIP weights file not found: {weights}')
        identity = f'{name}:sha256:{file_sha256(weights)}'
    else:
        weights, cfg = resolve_pretrained(name, tag, cache_dir, offline=spec.offline)
        identity = f'{name}:{tag}'
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = open_clip.create_model(name, pretrained=None, device='cpu',
                                       force_quick_gelu=bool(cfg.get('quick_gelu', False)))
    if weights is not None:
        load_weights_into(model, read_state_dict(weights), str(weights))
    device = torch.device(spec.device)
    model = model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    visual = model.visual
    preprocess = dict(getattr(visual, 'preprocess_cfg', {}))
    mean = tuple(float(x) for x in cfg.get('mean', preprocess.get('mean', open_clip.OPENAI_DATASET_MEAN)))
    std = tuple(float(x) for x in cfg.get('std', preprocess.get('std', open_clip.OPENAI_DATASET_STD)))
    size = visual.image_size
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    kind = 'resnet' if hasattr(visual, 'attnpool') else 'vit'
    text_proj = getattr(model, 'text_projection', None)
    embed_dim = int(text_proj.shape[1]) if text_proj is not None else int(visual.output_dim)
    return LoadedClip(
        name=name, model=model, tokenizer=open_clip.get_tokenizer(name), embed_dim=embed_dim,
        image_mean=mean, image_std=std, image_size=size, identity=identity,
        pretrained_meaningful=weights is not None, device=device, kind=kind,
        logit_scale=float(model.logit_scale.exp().item()))


def encode_text(clip: LoadedClip, tokens: torch.Tensor) -> torch.Tensor:
    """Compute ``clip.model.encode_text`` on the tokens up to the longest prompt.

    CLIP's text transformer is causal and pools at the end-of-text token, so padding after the
    longest prompt cannot influence any output: trimming the 77-token context to it gives the same
    features several times faster. Towers without a causal mask or EOT pooling use open_clip's path.
    """
    model = clip.model
    mask = getattr(model, 'attn_mask', None)
    if mask is None or getattr(model, 'text_pool_type', None) not in ('argmax', 'eos') or tokens.ndim != 2:
        return model.encode_text(tokens)
    nonpad = (tokens != 0).any(dim=0).nonzero()
    length = int(nonpad.max()) + 1 if len(nonpad) else 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    if model.text_pool_type == 'argmax':
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    else:
        eos = (tokens == model.text_eos_id).int().argmax(dim=-1)
        x = x[torch.arange(x.shape[0], device=x.device), eos]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x
