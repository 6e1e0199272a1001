"""Model services (one BentoML service per model in bentos/<key>/), their serving kit and the model lifecycle."""
