"""``vip.klaviyo.export(email=..., list_id=...)``: the export as a method of pandas and Polars frames, the way
``vip.to_gbq(...)`` is one, calling the same :func:`~klaviyo_magic.export_segment`.

``import klaviyo_magic`` registers the ``klaviyo`` namespace on pandas' ``DataFrame`` and on Polars' ``DataFrame``
and ``LazyFrame``, without importing either library: importing this package stays light (the CLI, the sandbox
and ``%load_ext`` never pay for pandas or Polars at import, and a laptop without Polars loses nothing). So:

- a library imported already gets its namespace at once;
- for one not imported yet, a finder on ``sys.meta_path`` lets the import run as it would, registers the
  namespace right after the library's own code ran, and leaves once every library has it. The order of the
  imports does not matter, and a library nobody imports is never imported.

The alternatives were worse: registering in the modules that import pandas anyway (the engine) would add
``df.klaviyo`` only after a first export, and importing pandas here would make every ``import klaviyo_magic`` pay
a third of a second.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading

    from .result import ExportResult

NAME = "klaviyo"  # df.klaviyo


class KlaviyoAccessor:
    """``df.klaviyo`` on pandas and Polars DataFrames and Polars LazyFrames: ``df.klaviyo.export(...)``."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame

    def __repr__(self) -> str:
        return f"<{type(self._frame).__name__}.klaviyo: .export(email=..., list_id=...) sends it to a Klaviyo list>"

    def export(
        self,
        *,
        email: str,
        list_id: str,
        connection: Any = None,
        properties: Sequence[str] | dict[str, str] | None = None,
        dry_run: bool = False,
        progress: Any = None,
        max_profiles: int = 1_000_000,
        resume: bool = False,
        cancel: threading.Event | None = None,
        mode: str = "add",
        full: bool = False,
        max_removals: int | None = None,
        offline: bool = False,
        wait_for_jobs: bool = True,
        concurrency: int = 6,
    ) -> ExportResult:
        """Export this frame's rows into the Klaviyo list ``list_id``: ``export_segment(frame, ...)`` with the
        same keyword arguments (``help(klaviyo_magic.export_segment)`` explains each)."""
        from .export.api import export_segment

        return export_segment(
            self._frame,
            email=email,
            list_id=list_id,
            connection=connection,
            properties=properties,
            dry_run=dry_run,
            progress=progress,
            max_profiles=max_profiles,
            resume=resume,
            cancel=cancel,
            mode=mode,
            full=full,
            max_removals=max_removals,
            offline=offline,
            wait_for_jobs=wait_for_jobs,
            concurrency=concurrency,
        )


def _register_pandas(pandas: Any) -> None:
    pandas.api.extensions.register_dataframe_accessor(NAME)(KlaviyoAccessor)


def _register_polars(polars: Any) -> None:
    polars.api.register_dataframe_namespace(NAME)(KlaviyoAccessor)
    polars.api.register_lazyframe_namespace(NAME)(KlaviyoAccessor)


_REGISTER: dict[str, Callable[[Any], None]] = {"pandas": _register_pandas, "polars": _register_polars}


def install() -> None:
    """Give every supported library the ``klaviyo`` namespace now or, for those not imported yet, when they are."""
    waiting = []
    for name in _REGISTER:
        module = sys.modules.get(name)
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            waiting.append(name)
        else:
            _register(name, module)
    if waiting and not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport(waiting))


def _register(name: str, module: Any) -> None:
    """Register on ``module``, once; a failure costs the namespace, never the user's import."""
    frame = getattr(module, "DataFrame", None)
    if frame is None or hasattr(frame, NAME):  # registered already (klaviyo_magic imported twice, reloaded)
        return
    try:
        _REGISTER[name](module)
    except Exception as exc:  # noqa: BLE001 - whatever the library's registration raises
        warnings.warn(f"klaviyo-magic could not add .{NAME} to {name} DataFrames: {exc}", stacklevel=2)


class _RegisterAfterImport:
    """A ``sys.meta_path`` finder that finds nothing itself: for a waiting library it finds the real spec with the
    other finders and wraps its loader so the namespace is registered once the library's own code has run."""

    def __init__(self, names: Sequence[str]) -> None:
        self.waiting = set(names)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.waiting:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRegister(spec.loader, self)
                return spec
        return None

    def registered(self, name: str, module: Any) -> None:
        self.waiting.discard(name)
        if not self.waiting and self in sys.meta_path:
            sys.meta_path.remove(self)
        _register(name, module)


class _ThenRegister:
    """The library's own loader, then the registration. The module sees its real loader from the start."""

    def __init__(self, loader: Any, finder: _RegisterAfterImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.finder.registered(module.__name__, module)

    def __getattr__(self, name: str) -> Any:  # anything else a loader offers (resource readers...)
        return getattr(self.loader, name)
