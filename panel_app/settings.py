"""`stratx dashboard` settings: :class:`DashboardSettings` lives with every other deployable's
settings in ``stratx.quix_apps.settings`` (the one module that lists every environment variable)."""

from stratx.quix_apps.settings import DashboardSettings

__all__ = ["DashboardSettings"]
