"""Market data in the server: the catalogue and prices over REST, live quotes and candles from the bus.

`start_market(ctx)` (from the app's lifespan) starts the quote book, the live candles and the WebSocket
feed; `MARKET_HANDLERS` are the REST routes to mount under `/api/v1`.
"""

from cfd_server.market.controller import MARKET_HANDLERS
from cfd_server.market.runtime import MarketRuntime, start_market

__all__ = ["MARKET_HANDLERS", "MarketRuntime", "start_market"]
