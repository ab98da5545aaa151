"""The CFD Broker client library: REST (`ApiClient`), the WebSocket feed (`FeedClient`), the stored session.

Usable on its own by scripts and bots; the TUI talks to the server only through it.
"""

from cfd_tui.client.api import ApiClient, api_root
from cfd_tui.client.errors import (
    ApiError,
    BadInput,
    ClientError,
    ClientSideError,
    Conflict,
    ConnectionLost,
    Forbidden,
    GatewayTimeout,
    NotFound,
    NotSignedIn,
    Rejected,
    ServerSideError,
    ServiceUnavailable,
    Throttled,
    UnexpectedResponse,
)
from cfd_tui.client.feed import FeedClient, FeedEvent
from cfd_tui.client.models import (
    Account,
    AccountFrame,
    FeedState,
    LedgerEntry,
    Position,
    PositionFrame,
    StateChanged,
)
from cfd_tui.client.session import SavedSession, SessionStore

__all__ = [
    "Account",
    "AccountFrame",
    "ApiClient",
    "ApiError",
    "BadInput",
    "ClientError",
    "ClientSideError",
    "Conflict",
    "ConnectionLost",
    "FeedClient",
    "FeedEvent",
    "FeedState",
    "Forbidden",
    "GatewayTimeout",
    "LedgerEntry",
    "NotFound",
    "NotSignedIn",
    "Position",
    "PositionFrame",
    "Rejected",
    "SavedSession",
    "ServerSideError",
    "ServiceUnavailable",
    "SessionStore",
    "StateChanged",
    "Throttled",
    "UnexpectedResponse",
    "api_root",
]
