"""The export form (ipywidgets): ``panel.py`` builds and wires the form; ``destination.py`` holds the connection
and list widgets, ``mirroring.py`` the Mirror choice and its removal guard, ``checklist.py`` the tick boxes of
Properties; ``runner.py`` runs every Klaviyo action and the export in the background, with Cancel and progress;
``parts.py`` holds the DataFrame and column logic, ``views.py`` the text and HTML the form shows."""

from .panel import ExportForm, form

__all__ = ["ExportForm", "form"]
