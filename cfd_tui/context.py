"""What screens and widgets may read of the running app, typed once.

Screens and widgets never import `cfd_tui.app`: the app imports them. They see the app through
`AppContext`, a Protocol that `CfdApp` satisfies: the client for their own network I/O, and the state that
flows down (the market board, the portfolio, the clock, the signed-in trader, the feed's state). Every
member is read-only here, so nothing below the app writes the app's state: screens tell the app what
happened by posting the messages of `cfd_tui.messages`, and the app changes its state in its handlers.

`app_context` is the one place that treats `node.app` (typed by Textual as a plain `App`) as this app.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Protocol, cast, runtime_checkable

from textual.message_pump import MessagePump

from cfd_client.models import FeedState
from cfd_client.protocol import BrokerApi
from cfd_tui.state import AlertBook, MarketBoard, Portfolio
from shared.contracts.rest import User


@runtime_checkable
class AppContext(Protocol):
    """The app as its screens and widgets see it (`CfdApp` implements it)."""

    @property
    def client(self) -> BrokerApi:
        """The broker's API: screens call it from their workers."""
        ...

    @property
    def board(self) -> MarketBoard:
        """Markets, latest quotes and live candles."""
        ...

    @property
    def portfolio(self) -> Portfolio:
        """The account and the open positions."""
        ...

    @property
    def alerts(self) -> AlertBook:
        """The trader's alerts, active and fired (`alerts_version` changes with them)."""
        ...

    @property
    def changed_symbols(self) -> set[str]:
        """The markets whose quote changed in the latest redraw (`market_version`)."""
        ...

    @property
    def changed_candles(self) -> set[tuple[str, str]]:
        """The (symbol, interval) live candles that changed in the latest redraw."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """The app's clock (epoch seconds): frozen in snapshots."""
        ...

    @property
    def tz(self) -> tzinfo | None:
        """The time zone times are shown in (None: the local one)."""
        ...

    @property
    def api_url(self) -> str:
        """The API root the app talks to."""
        ...

    @property
    def code_hint(self) -> str:
        """Where a local platform's sign-up code can be read ("" when none)."""
        ...

    @property
    def user(self) -> User | None:
        """The signed-in trader."""
        ...

    @property
    def feed_state(self) -> FeedState:
        """Where the feed stands."""
        ...

    @property
    def feed_detail(self) -> str:
        """What the feed last said about its state (e.g. why it reconnects)."""
        ...


def app_context(node: MessagePump) -> AppContext:
    """The running app of `node`, as an `AppContext`."""
    return cast(AppContext, node.app)
