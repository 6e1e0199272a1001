"""Pure, stateless StratX functions: message schemas, the topic catalog and ingestion.

Nothing in this package talks to a broker, reads the environment or does file I/O, so every
function runs the same inside a Quix Streams app, a serverless handler or a unit test.
"""
