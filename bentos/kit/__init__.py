"""What every BentoML service shares: champion loading, scoring, request/response models, network limits."""
