"""Model recipes: pure target construction, feature matrices, baselines and metrics, one module
per model (``lap_time`` first). No MLflow, no I/O: ``stratx.quix_apps.training`` and
``stratx.quix_apps.evaluation`` do that."""
