"""The one check an adapter makes at import: is the extra it belongs to installed?

Each adapter module calls :func:`require` before importing its framework, so a missing
extra fails with one line that says what to install, not with a ``ModuleNotFoundError``
from deep inside an import chain.
"""

from __future__ import annotations

import importlib.util

from db_manager.errors import MissingExtra

__all__ = ["require"]


def require(feature: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` unless every one of ``modules`` can be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"{feature} needs {', '.join(missing)}, which is not installed; "
            f"install it with: pip install 'db_manager[{extra}]'",
            extra=extra,
            name=missing[0],
        )
