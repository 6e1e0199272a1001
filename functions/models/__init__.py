"""Model recipes: pure target construction, feature matrices, fitting, baselines and metrics, one
module per model, each exposing ``RECIPE`` (:class:`stratx.functions.models.base.Recipe`). No
MLflow, no file I/O: ``stratx.bentos.lifecycle.training`` and ``stratx.bentos.lifecycle.evaluation`` do that.
Which models exist, and everything keyed by model, is declared once in :mod:`.registry`."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from stratx.functions.models.registry import MODEL_KEYS, MODELS, ModelSpec, spec

if TYPE_CHECKING:
    from stratx.functions.models.base import Recipe

__all__ = ["MODELS", "MODEL_KEYS", "ModelSpec", "available", "recipe", "spec"]


def available() -> list[str]:
    """The model keys whose recipe module exists, in :data:`MODEL_KEYS` order."""
    return [k for k in MODEL_KEYS if importlib.util.find_spec(f"{__name__}.{k}") is not None]


def recipe(key: str) -> Recipe:
    if key not in MODEL_KEYS:
        raise ValueError(f"unknown model {key!r}; available: {', '.join(available())}")
    if key not in available():
        raise ValueError(f"model {key!r} is not built yet; available: {', '.join(available())}")
    module = importlib.import_module(f"{__name__}.{key}")
    found: Recipe = module.RECIPE
    return found
