"""Serverless deployment of the pure ``functions/`` core: platform adapters (``adapters/``) and
the AWS deploy script (``deploy.py``). See ``localstack/README.md``."""
