"""`TopBar`: the brand, the signed-in trader, the connection state and the clock, on every trading screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from cfd_tui.widgets.connection_status import ConnectionStatus


class TopBar(Horizontal):
    """A one-line bar docked at the top; the app keeps its parts up to date."""

    def __init__(self, title: str = "CFD Broker", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title_text = title

    def compose(self) -> ComposeResult:
        yield Static(f"▲▼ {self.title_text}", id="brand")
        yield Static("", id="screen-name")
        yield Static("", id="user")
        yield ConnectionStatus(id="connection")
        yield Static("", id="clock")
