"""klaviyo-magic: push DataFrame segments into Klaviyo lists from Python, IPython and JupyterLab.

    >>> from klaviyo_magic import export_segment
    >>> result = export_segment(vip, email="email", list_id="Y6nRLr", connection="prod")

In a notebook: ``%load_ext klaviyo_magic``, then ``%klaviyo_export vip --email email --list Y6nRLr``. On a
pandas or Polars frame: ``vip.klaviyo.export(email="email", list_id="Y6nRLr")``.

Importing this package stays light: pandas and requests load when an export runs, IPython and ipywidgets
only when the extension or the form is used. The names below load on first use; ``dir(klaviyo_magic)``
lists them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import accessors as _accessors
from ._version import __version__
from .errors import (
    AuthenticationError,
    ConfigError,
    ConsentRequiredError,
    ExportInterrupted,
    InputError,
    KlaviyoError,
    KlaviyoMagicError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConsentRequiredError",
    "ExportInterrupted",
    "ExportResult",
    "InputError",
    "KlaviyoError",
    "KlaviyoMagicError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RemovalLimitError",
    "Sandbox",
    "ServerError",
    "ValidationError",
    "__version__",
    "connections",
    "export_segment",
    "form",
    "load_ipython_extension",
]

if TYPE_CHECKING:
    from . import connections
    from .export import ExportResult, export_segment
    from .export.mirror import RemovalLimitError
    from .sandbox import Sandbox
    from .widgets import form

# df.klaviyo.export(...) on pandas and Polars frames, registered without importing either (see accessors.py).
_accessors.install()

_LAZY = {
    "export_segment": ("klaviyo_magic.export.api", "export_segment"),
    "ExportResult": ("klaviyo_magic.result", "ExportResult"),
    "RemovalLimitError": ("klaviyo_magic.export.mirror", "RemovalLimitError"),
    "Sandbox": ("klaviyo_magic.sandbox", "Sandbox"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "connections":
        return importlib.import_module("klaviyo_magic.connections")
    if name == "form":
        return _form()
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'klaviyo_magic' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so dir() and notebook completion offer them before their first use; not the typing
    # helpers this module imports for its own annotations, which are no part of the package.
    return sorted((set(globals()) | set(__all__)) - {"annotations", "TYPE_CHECKING", "Any"})


def _form() -> Any:
    try:
        from .widgets import form
    except ModuleNotFoundError as exc:
        if exc.name not in ("ipywidgets", "IPython"):
            raise
        raise ModuleNotFoundError(
            f"The export form needs {exc.name}, which is not installed: pip install 'klaviyo-magic[notebook]'",
            name=exc.name,
        ) from None
    return form


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext klaviyo_magic``: registers ``%klaviyo_export`` and ``%klaviyo_connection``."""
    from .magic import load_ipython_extension as load

    load(ipython)
