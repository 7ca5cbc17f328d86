"""klaviyo-magic: push pandas DataFrame segments into Klaviyo lists from Python, IPython and JupyterLab.

    >>> from klaviyo_magic import export_segment
    >>> result = export_segment(vip, email="email", list_id="Y6nRLr", connection="prod")

In a notebook: ``%load_ext klaviyo_magic``, then ``%klaviyo_export vip --email email --list Y6nRLr``.

Importing this package stays light: pandas and requests load when an export runs, IPython and ipywidgets
only when the extension or the form is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ExportResult",
    "Sandbox",
    "connections",
    "export_segment",
    "form",
    "load_ipython_extension",
]

if TYPE_CHECKING:
    from . import connections
    from .export import ExportResult, export_segment
    from .sandbox import Sandbox

_LAZY = {
    "export_segment": ("klaviyo_magic.export", "export_segment"),
    "ExportResult": ("klaviyo_magic.export", "ExportResult"),
    "Sandbox": ("klaviyo_magic.sandbox", "Sandbox"),
    "form": ("klaviyo_magic.widgets", "form"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "connections":
        return importlib.import_module("klaviyo_magic.connections")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'klaviyo_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext klaviyo_magic``: registers ``%klaviyo_export`` and ``%klaviyo_connection``."""
    from .magic import load_ipython_extension as load

    load(ipython)
