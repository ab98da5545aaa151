"""`ConnectionStatus`: the feed's state, always on screen — live, connecting, reconnecting or stale."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cfd_client.models import FeedState

_LOOK = {
    FeedState.LIVE: ("●", "live"),
    FeedState.CONNECTING: ("◌", "connecting…"),
    FeedState.RECONNECTING: ("◌", "reconnecting…"),
    FeedState.STALE: ("◐", "stale market"),
    FeedState.CLOSED: ("○", "offline"),
}


class ConnectionStatus(Widget):
    """Shows `state`; `stale` lists markets with no recent price (shown even while the feed is live)."""

    state: reactive[FeedState] = reactive(FeedState.CONNECTING)
    stale: reactive[tuple[str, ...]] = reactive(())
    detail: reactive[str] = reactive("")

    def render(self) -> Text:
        icon, label = _LOOK[self.state]
        if self.state is FeedState.LIVE and self.stale:
            icon, label = "◐", "stale: " + ", ".join(s.split("_")[0] for s in self.stale)
        elif self.state is FeedState.STALE and self.stale:
            label = "stale: " + ", ".join(s.split("_")[0] for s in self.stale)
        return Text(f"{icon} {label}")

    def _update_classes(self) -> None:
        shown = FeedState.STALE if self.state is FeedState.LIVE and self.stale else self.state
        for state in FeedState:
            self.set_class(state is shown, f"-{state.value}")

    def watch_state(self) -> None:
        self._update_classes()
        self.tooltip = self.detail or None

    def watch_stale(self) -> None:
        self._update_classes()

    def watch_detail(self, detail: str) -> None:
        self.tooltip = detail or None
