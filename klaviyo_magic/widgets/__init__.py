"""The export form (ipywidgets): ``panel.py`` builds and wires the widgets, ``runner.py`` runs Klaviyo actions and
the export in the background with Cancel and progress, ``parts.py`` holds the DataFrame and column logic,
``views.py`` the text and HTML the form shows, ``checklist.py`` the tick boxes of Properties."""

from .panel import ExportForm, form

__all__ = ["ExportForm", "form"]
