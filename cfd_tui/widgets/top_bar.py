"""`TopBar`: the brand, the signed-in trader, the connection state and the clock, on every trading screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from cfd_tui import format as fmt
from cfd_tui.context import AppContext, app_context
from cfd_tui.widgets.connection_status import ConnectionStatus


class TopBar(Horizontal):
    """A one-line bar docked at the top. The app tells every bar on its screens the trader and the connection
    state as they change (`show_user`, `show_feed_state`); the clock ticks every second on whichever screen
    shows the bar."""

    def __init__(self, title: str = "CFD Broker", screen_name: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title_text = title
        self.screen_name = screen_name

    def compose(self) -> ComposeResult:
        yield Static(f"▲▼ {self.title_text}", id="brand")
        yield Static(self.screen_name, id="screen-name")
        yield Static("", id="user")
        yield Static("", id="user-email")
        yield ConnectionStatus(id="connection")
        yield Static("", id="clock")

    @property
    def ctx(self) -> AppContext:
        return app_context(self)

    def on_mount(self) -> None:
        # Told by the app rather than watching its reactives: Textual drops a removed widget's watcher only
        # when the value next changes, and the trader and the feed's state can stay the same for hours, so
        # every history screen opened would leave its bar behind.
        self.show_user(self.ctx.user)
        self.show_feed_state(self.ctx.feed_state)
        self.set_interval(1.0, self.tick)
        self.tick()

    def tick(self) -> None:
        """Show the app clock's time now."""
        self.query_one("#clock", Static).update(fmt.clock(self.ctx.clock(), self.ctx.tz))

    def show_user(self, user) -> None:
        """Show the signed-in trader (None: nobody)."""
        self.query_one("#user", Static).update(user.name if user else "")
        self.query_one("#user-email", Static).update(f"· {user.email}" if user else "")

    def show_feed_state(self, state) -> None:
        """Show the feed's state, with the app's detail of it as the tooltip."""
        status = self.query_one(ConnectionStatus)
        status.detail = self.ctx.feed_detail
        status.state = state
