"""The five papers' training recipes: each an ``nn.Module`` holding the student and its training-only parts.

| recipe | students | what it trains |
|---|---|---|
| ``affinity3d`` | sparse, range | α·Lovász + weighted CE (Eq. 19) + γ·visible KL of the KT branch (Eq. 20) |
| ``pop3d`` | sparse, range | occupancy CE + Lovász (Eq. 4) + λ·feature MSE (Eq. 7-8) (+ our point term) |
| ``cns`` | sparse, range | 3D student + DeepLabV3 2D net, CE + prediction and latent consistency |
| ``scannet200`` | sparse | contrastive pre-training (Eq. 1-3), C-Focal fine-tuning (Eq. 4-5) + copy-paste |
| ``unscene3d`` | sparse | query mask decoder, Hungarian Dice + BCE, DropLoss, self-training, Mask Addition |

"range" is the deployable range-view student (ONNX / TensorRT); scannet200 and unscene3d train on scene
clouds, which a single-viewpoint range image cannot hold (``recipe.allow_range_student`` overrides for
single sweeps).
"""
from __future__ import annotations

from training.recipes.affinity3d import Affinity3DRecipe
from training.recipes.base import FrameLossError, PhaseContext, Recipe, RecipeError, RecipeParams
from training.recipes.cns import CNSRecipe
from training.recipes.pop3d import Pop3DRecipe
from training.recipes.scannet200 import ScanNet200Recipe
from training.recipes.unscene3d import UnScene3DRecipe

RECIPES: dict[str, type[Recipe]] = {
    r.name: r for r in (Affinity3DRecipe, Pop3DRecipe, CNSRecipe, ScanNet200Recipe, UnScene3DRecipe)}


def recipe_class(name: str) -> type[Recipe]:
    """Return the recipe registered under ``name`` (RecipeError listing the known ones otherwise)."""
    if name not in RECIPES:
        raise RecipeError(f'unknown recipe {name!r}; known: {sorted(RECIPES)}')
    return RECIPES[name]


__all__ = ['RECIPES', 'FrameLossError', 'PhaseContext', 'Recipe', 'RecipeError', 'RecipeParams',
           'recipe_class']
