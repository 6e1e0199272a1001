"""Model bundles in the MLflow registry: the pyfunc wrapper they are logged as, and loading the
``@champion`` (or any version) back as a :class:`~stratx.functions.models.base.ModelBundle`.

Evaluation and the BentoML services load models through :func:`load_registered`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

from stratx.functions import models
from stratx.functions.models import base
from stratx.functions.settings import TrainingSettings

CHAMPION = "champion"


def import_pyfunc() -> ModuleType:
    """``mlflow.pyfunc``, imported with mlflow's own import-time warning silenced: its pyfunc type
    hints (``params: dict[str, Any]``) warn "Any type hint is inferred", an error under the tests'
    ``filterwarnings = error``. Every StratX import of mlflow.pyfunc goes through here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred", category=UserWarning)
        import mlflow.pyfunc
    return mlflow.pyfunc


if TYPE_CHECKING:
    from mlflow.pyfunc import PythonModel
else:
    PythonModel = import_pyfunc().PythonModel


class BundleModel(PythonModel):
    """pyfunc face of a bundle: ``predict(rows)`` = the recipe's ``predict`` on feature rows."""

    def load_context(self, context: Any) -> None:
        self.bundle = base.ModelBundle.load(Path(context.artifacts["bundle"]))
        self.recipe = models.recipe(self.bundle.key)

    def predict(
        self, context: object, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> pd.DataFrame:
        return self.recipe.predict(self.bundle, model_input)


@dataclass(frozen=True)
class Registered:
    bundle: base.ModelBundle
    model_name: str
    version: str
    tags: dict[str, str]


def find_bundle(folder: Path) -> Path:
    """The bundle folder inside a downloaded pyfunc model (``artifacts/bundle``)."""
    found = sorted(p.parent for p in folder.rglob("meta.json") if (p.parent / "meta.json").is_file())
    if not found:
        raise ValueError(f"no model bundle under {folder}")
    return found[0]


def load_registered(
    settings: TrainingSettings, key: str, alias: str = CHAMPION, dst: Path | None = None
) -> Registered:
    """The registry's ``<model_name>@alias`` for model ``key``; a clear error when there is none."""
    import tempfile

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from stratx.bentos.lifecycle import training

    recipe = models.recipe(key)
    client = training.client(settings)
    try:
        version = client.get_model_version_by_alias(recipe.model_name, alias)
    except MlflowException as exc:
        raise ValueError(
            f"no {recipe.model_name}@{alias} in {settings.mlflow_uri}; run `stratx train --model {key}` first"
        ) from exc
    target = dst or Path(tempfile.mkdtemp(prefix=f"stratx-{key}-"))
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{recipe.model_name}@{alias}", dst_path=str(target)
    )
    bundle = base.ModelBundle.load(find_bundle(Path(local)))
    if bundle.key != key:
        raise ValueError(f"{recipe.model_name} v{version.version} holds model {bundle.key!r}, not {key!r}")
    return Registered(bundle, recipe.model_name, str(version.version), dict(version.tags))
