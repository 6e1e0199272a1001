"""MLflow "models from code" entry point: the pyfunc face of a StratX model bundle.

``training.log_and_register`` logs this file as the model's code (no pickled Python object), with
the bundle folder (boosters + meta.json) as its artifact; ``mlflow.pyfunc.load_model`` runs it.
"""

import mlflow.models

from stratx.bentos.lifecycle.model_store import BundleModel

mlflow.models.set_model(BundleModel())
