"""`cfd_client`: the typed REST and WebSocket client of CFD Broker, for scripts, bots and the terminal.

REST is `ApiClient` (one typed method per endpoint, errors as `ApiError` subclasses), the WebSocket feed is
`FeedClient` (reconnects by itself and yields typed frames and `StateChanged` events), and `SessionStore`
keeps a signed-in session on disk. The terminal (`cfd_tui`) talks to the platform only through it. It
imports only `shared` (wire contracts, trading maths), never the terminal or a service package.
"""

from cfd_client.api import ApiClient, api_root
from cfd_client.errors import (
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
from cfd_client.feed import FeedClient, FeedEvent
from cfd_client.models import (
    Account,
    AccountFrame,
    AccountStateFrame,
    FeedState,
    LedgerEntry,
    Position,
    PositionFrame,
    StateChanged,
)
from cfd_client.session import SavedSession, SessionStore

__all__ = [
    "Account",
    "AccountFrame",
    "AccountStateFrame",
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
