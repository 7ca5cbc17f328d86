"""The export form (ipywidgets): ``panel.py`` builds and wires the widgets, ``runner.py`` runs the export in
the background with Cancel and progress, ``parts.py`` holds the logic and text that need no widgets."""

from .panel import ExportForm, form

__all__ = ["ExportForm", "form"]
