"""What the screens tell the app: Textual messages, posted up; the app acts on each in its `on_...` handler.

State flows down (see `cfd_tui.context`); events flow up as these messages. A screen that closes as it
reports (a dialog that has sent its order, a sign-in screen the dashboard replaces) posts to the app
directly, since a message left in the queue of a screen being removed would go nowhere; a screen that stays
posts to itself and the message bubbles up to the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from cfd_client.models import Alert, Order, Position
from shared.contracts.rest import AuthSession


@dataclass
class SignedIn(Message):
    """The server accepted the trader (signed in, or verified a new account): keep the session, open the
    dashboard."""

    session: AuthSession


@dataclass
class SignedOut(Message):
    """The session ended from this terminal (signed out everywhere): forget it and show the sign-in screen with
    `message`."""

    message: str


@dataclass
class PasswordReset(Message):
    """A new password was set with the mailed code (every session ended): back to the sign-in screen, with
    `email` filled in and a notice."""

    email: str


@dataclass
class OrderFilled(Message):
    """The order ticket opened `position`: show it now (before the feed says so), reload the account's
    margin, and say so in a toast."""

    position: Position


@dataclass
class OrderPlaced(Message):
    """The order ticket placed a pending (limit or stop) order: list it among the working orders now (before
    the feed says so), and say so in a toast."""

    order: Order


@dataclass
class OrderChanged(Message):
    """The order dialogs modified or cancelled `order` (as the server now has it): show it so, and toast."""

    order: Order


@dataclass
class PositionClosed(Message):
    """The close dialog closed `position` (the part closed, for a part-close): show what is left, reload
    the account, and say so in a toast."""

    position: Position


@dataclass
class PositionsClosed(Message):
    """Close-all closed `positions` (none when nothing was open), of `symbol` only when given: show what is
    left, reload the account, and say how many closed and their PnL in a toast."""

    positions: list[Position]
    symbol: str | None = None


@dataclass
class StopsChanged(Message):
    """The stops dialog saved new stops: `position` is the position as the server now has it."""

    position: Position


@dataclass
class AlertCreated(Message):
    """The alert dialog set `alert`: list it now (before the feed says so), and say so in a toast."""

    alert: Alert


@dataclass
class AlertDeleted(Message):
    """The alerts screen deleted `alert`: take it off the list, and say so in a toast."""

    alert: Alert


@dataclass
class AlertsLoaded(Message):
    """The alerts screen read every alert from the server: they replace the app's list."""

    alerts: list[Alert]


@dataclass
class ChartChanged(Message):
    """The dashboard now charts `symbol` at `interval`: have the feed send those live candles instead."""

    symbol: str
    interval: str

    def can_replace(self, message: Message) -> bool:
        # Charts stepped through faster than the app reads its queue: only the latest needs its candles.
        return isinstance(message, ChartChanged)
