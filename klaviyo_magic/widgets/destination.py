"""Where the export form sends: the connection (with its privacy terms, where the user agrees to them) and the
Klaviyo list (loaded or created in the background through :mod:`klaviyo_magic.lists`, never by HTTP here)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ipywidgets as w

from .. import connections, lists
from ..errors import ConfigError, InputError
from ..result import ExportResult
from . import parts, views
from .runner import ExportRunner

STYLE = {"description_width": "9em"}


def wide() -> w.Layout:
    return w.Layout(width="32em")  # one per widget, built with the form: no widget exists at import time


class Destination:
    """The form's connection and list widgets and what their buttons do.

    Widgets: ``connection`` (Dropdown), ``privacy_terms`` (HTML) and ``consent`` (Checkbox), both shown only for
    a profile whose terms were never accepted, ``lists`` (Dropdown, "Name (id)"), ``load_lists_button``,
    ``new_list_name`` (Text), ``create_list_button``. ``changed`` is called when the user picks another
    connection (the lists, a preview, a result belong to the previous one); ``say`` writes the form's status
    line, ``show_error`` its error line (``None`` clears it).
    """

    def __init__(
        self,
        *,
        say: Callable[[str], None],
        show_error: Callable[[BaseException | None], None],
        changed: Callable[[], None],
    ) -> None:
        self.connection = w.Dropdown(description="Connection", layout=wide(), style=STYLE)
        self.privacy_terms = w.HTML(layout=w.Layout(display="none"))
        self.consent = w.Checkbox(
            description=views.CONSENT_TEXT, indent=False, layout=w.Layout(display="none", width="auto")
        )
        self.lists = w.Dropdown(description="Klaviyo list", layout=wide(), style=STYLE)
        self.load_lists_button = w.Button(description="Load lists", icon="download")
        self.new_list_name = w.Text(
            description="New list", placeholder="Name of a new list", layout=wide(), style=STYLE
        )
        self.create_list_button = w.Button(description="Create list", icon="plus")
        self.buttons = [self.load_lists_button, self.create_list_button]
        self.runner: ExportRunner | None = None  # set by the form once its runner exists
        self._say = say
        self._show_error = show_error
        self._changed = changed
        self._quiet = False

    def widgets(self) -> list[w.Widget]:
        return [
            self.connection,
            self.privacy_terms,
            self.consent,
            w.HBox([self.lists, self.load_lists_button]),
            w.HBox([self.new_list_name, self.create_list_button]),
        ]

    def wire(self, act: Callable[[Callable[[], Any]], None]) -> None:
        """The observers and click handlers; ``act`` runs a click's action with errors shown in the form."""
        self.connection.observe(self._on_connection, names="value")
        self.consent.observe(self._on_consent, names="value")
        self.load_lists_button.on_click(lambda _: act(self.start_load_lists))
        self.create_list_button.on_click(lambda _: act(self.start_create_list))

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        previous, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = previous

    def _runner(self) -> ExportRunner:
        assert self.runner is not None, "the form sets the runner before any click"
        return self.runner

    # -- the connection and its privacy terms -------------------------------------------------------------

    def refresh_connections(self) -> None:
        current = self.connection.value
        options, default = parts.connection_choices(connections.list(), connections.API_KEY_ENV)
        with self.quietly():  # setting options selects the first one: not a change the user made
            self.connection.options = options
            self.connection.value = current if current in parts.option_values(options) else default
            if self.connection.value != current:
                self.lists.options = []
        self.show_consent()
        if not options:
            self._show_error(ConfigError(parts.NO_CONNECTION))

    def current(self) -> connections.Connection:
        if self.connection.value is None:
            raise ConfigError(parts.NO_CONNECTION)
        return connections.resolve(self.connection.value or None)  # "" is the $KLAVIYO_API_KEY choice

    def show_consent(self) -> None:
        """The terms and the tick box, for a connection whose terms were never accepted: where the user agrees,
        they read what they agree to."""
        conn = self.current() if self.connection.value is not None else None
        needed = conn is not None and not conn.privacy_accepted
        with self.quietly():
            self.consent.value = False
            self.consent.disabled = False
        self.privacy_terms.value = views.privacy_html(conn.name) if needed and conn is not None else ""
        self.consent.layout.display = self.privacy_terms.layout.display = "flex" if needed else "none"

    def _on_connection(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        try:
            with self.quietly():
                self.lists.options = []  # lists belong to the previous account
            self._changed()
            self.show_consent()
        except Exception as exc:
            self._show_error(exc)

    def _on_consent(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"]:
            return
        try:
            connections.accept_privacy_terms(self.current().name)
        except Exception as exc:
            self._show_error(exc)
            return
        self.consent.disabled = True  # acceptance is recorded; unticking would not undo it
        self._show_error(None)  # the "terms never accepted" error, if shown, is settled
        self._say(f"Data-privacy terms accepted for connection '{self.connection.value}'.")

    # -- lists --------------------------------------------------------------------------------------------

    def preset_list(self, list_id: str) -> None:
        """Offer ``list_id`` as is, so exporting to a known list needs no request first."""
        with self.quietly():
            self.lists.options, self.lists.value = [(list_id, list_id)], list_id

    def name_list(self, result: ExportResult) -> None:
        """A list preset by id alone gets its name in the dropdown once Klaviyo told it: "VIP (Y6nRLr)"."""
        if not result.list_name or self.lists.value != result.list_id:
            return
        label = lists.KlaviyoList(result.list_id, result.list_name).label
        options = [(label if value == result.list_id else text, value) for text, value in self.lists.options]
        with self.quietly():
            self.lists.options, self.lists.value = options, result.list_id

    def start_load_lists(self) -> None:
        self.current()  # a missing connection is said at once, not from a thread
        self._runner().start("Load lists", "Loading the lists from Klaviyo...", self.load_lists, self._ended)

    def load_lists(self, stop: threading.Event | None = None) -> str:
        """Every list of the account (all pages) into ``lists``, keeping the selection; ``stop`` ends the wait
        for a Klaviyo being retried."""
        found = lists.all_lists(self.current(), stop=stop, on_retry=self._runner().retrying)
        current = self.lists.value
        ids = [item.id for item in found]
        with self.quietly():
            self.lists.options = [(item.label, item.id) for item in found]
            self.lists.value = current if current in ids else (ids[0] if ids else None)
        if self.lists.value != current:
            self._changed()  # another list: what the form showed was about the previous one
        message = f"Loaded {len(found):,} list{'s' if len(found) != 1 else ''} from Klaviyo."
        self._say(message)
        return message

    def start_create_list(self) -> None:
        name = new_list_name(self.new_list_name.value)
        self.current()
        work = lambda stop: self.create_list(name, stop)  # noqa: E731 - one line, named by its use
        self._runner().start("Create list", f"Creating list '{name}' in Klaviyo...", work, self._ended)

    def create_list(self, name: str, stop: threading.Event | None = None) -> str:
        """Create a Klaviyo list named ``name``, select it, and return its id."""
        created = lists.create_list(new_list_name(name), self.current(), stop=stop, on_retry=self._runner().retrying)
        with self.quietly():
            self.lists.options = [*self.lists.options, (created.label, created.id)]
            self.lists.value = created.id
            self.new_list_name.value = ""
        self._changed()
        self._say(f"Created list {created.label}.")
        return created.id

    def _ended(self, value: Any, error: BaseException | None, cancelled: bool) -> None:
        """How a background list action ends: its status stays; an error shows in red; a cancel says so."""
        if cancelled:
            self._say("Cancelled: nothing was changed.")
        elif error is not None:
            self._say("")
            self._show_error(error)


def new_list_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InputError("Type a name for the new list, then press Create list.")
    return name
