"""The Litestar app factory; the lifespan opens the backends and closes them in `finally`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

import shared
from cfd_server.admin.controller import AdminController, operator_token
from cfd_server.admin.markets import AdminMarketsController
from cfd_server.auth.controller import ApiKeysController, AuthController
from cfd_server.auth.dependencies import provide_auth
from cfd_server.auth.passwords import DummyHash
from cfd_server.auth.service import AuthService
from cfd_server.body import JsonBodyRequest
from cfd_server.context import MailQueue, ServerContext
from cfd_server.errors import EXCEPTION_HANDLERS
from cfd_server.health import HealthController
from cfd_server.info import advertises_loopback_only, info, ws_url
from cfd_server.limits import RateLimitHeaders, RequestLimits
from cfd_server.market import MARKET_HANDLERS, start_market
from cfd_server.market.replay import ReplayController
from cfd_server.metrics import REQUEST_METRICS, MetricsController
from cfd_server.openapi import document_api
from cfd_server.request_ids import RequestIds
from cfd_server.security import CrossSiteGuard, security_headers
from cfd_server.trading.alerts import AlertsController
from cfd_server.trading.controller import TradingController
from cfd_server.trading.feed import AccountFeed
from cfd_server.trading.orders import OrdersController
from shared.bus import Bus, Topics, create_bus
from shared.bus.rpc import RequestClient
from shared.cache import Cache, create_cache
from shared.mail import create_mailer
from shared.settings import Settings
from shared.status import StatusBoard

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings, *, bus: Bus | None = None, cache: Cache | None = None) -> Litestar:
    """The server app. Pass `bus` and `cache` to share them (`cfd up`); else it opens its own."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own_bus = bus is None
        the_bus = bus or create_bus(settings.bus, settings.instance_id)
        the_cache = cache or create_cache(settings.cache)
        mailer = create_mailer(settings.mail)
        topics = Topics(settings.bus)
        rpc = RequestClient(the_bus, topics.routes(), topics.replies, settings.instance_id,
                            settings.bus.request_timeout)
        mail = MailQueue(mailer)
        started_bus = False
        market = None
        feed = None
        status_board: StatusBoard | None = None
        try:
            if own_bus:
                await the_bus.start()
                started_bus = True
            await the_bus.ensure_topics(topics.all())
            await rpc.start()
            mail.start()
            ctx = ServerContext(settings=settings, bus=the_bus, cache=the_cache, mailer=mailer, rpc=rpc, mail=mail,
                                topics=topics)
            app.state.ctx = ctx
            app.state.auth = AuthService(ctx, await asyncio.to_thread(DummyHash, settings.auth.bcrypt_rounds))
            app.state.limits = RequestLimits(ctx.cache, settings.auth, settings.bus.topic_prefix)
            app.state.operator_token = operator_token(settings)
            market = await start_market(ctx)  # quote book, live candles, the /ws feed on CFD_WS_PORT
            app.state.market = market
            app.state.status_board = status_board = StatusBoard(the_bus, topics.status)
            await status_board.start()
            if advertises_loopback_only(settings.http):
                log.warning("the WebSocket feed listens on %s but is advertised as %s, which only this machine "
                            "can reach; set CFD_WS_PUBLIC_URL to the URL clients use",
                            settings.http.host, ws_url(settings.http, market.ws_port))
            feed = AccountFeed(ctx, market.hub.publish_account, market.hub.account_users, market.hub.recheck)
            await feed.start()
            log.info("server %s ready; backends: %s", settings.instance_id, settings.describe_backends())
            yield
        finally:
            if feed is not None:
                await feed.stop()
            if status_board is not None:
                await status_board.stop()
            if market is not None:
                await market.stop()  # stops taking ticks, closes WebSocket clients with 1001
            await mail.stop()
            await rpc.stop()
            if cache is None:
                await the_cache.close()
            if started_bus:
                await the_bus.stop()

    api = Router(
        path="/api/v1",
        route_handlers=[AuthController, ApiKeysController, TradingController, OrdersController, AlertsController,
                        AdminController, AdminMarketsController, ReplayController, info,
                        *MARKET_HANDLERS],
        dependencies={"auth": Provide(provide_auth)},
    )
    app = Litestar(
        route_handlers=[api, HealthController, MetricsController],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[RequestIds, REQUEST_METRICS.middleware, RateLimitHeaders,
                    DefineMiddleware(CrossSiteGuard, allowed_origins=settings.http.allowed_origins)],
        before_send=[security_headers],
        request_max_body_size=MAX_BODY_BYTES,
        request_class=JsonBodyRequest,
        openapi_config=OpenAPIConfig(
            title="CFD Broker API",
            version=shared.__version__,
            description="REST API of CFD Broker. Money, prices and quantities are decimal strings; "
            "times are epoch milliseconds. Errors: {\"error\": {\"code\", \"message\", \"details\"}}.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        debug=False,
        logging_config=None,
    )
    document_api(app)
    return app
