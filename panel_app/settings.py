"""`stratx dashboard` settings: :class:`DashboardSettings` lives with every other deployable's
settings in ``stratx.functions.settings`` (the one module that lists every environment variable)."""

from stratx.functions.settings import DashboardSettings

__all__ = ["DashboardSettings"]
