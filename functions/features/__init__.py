"""Feature functions: pure, stateful-by-argument, shared by the streaming apps and offline builds.

Every function takes its state as a plain JSON-serializable dict and returns the new state, so
the same code runs inside a Quix Streams stateful app and in an offline loop over a race: the
parity test proves both give the same numbers.
"""
