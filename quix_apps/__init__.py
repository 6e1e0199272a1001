"""Quix Streams applications and the I/O around them: broker, topic admin, data sources, CLI."""
