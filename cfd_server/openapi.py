"""The error answers and links of the OpenAPI document, declared in one place for every operation.

Litestar describes each handler's success answer; `document_api(app)` adds every error status the
operation can answer, each with the one error shape (`ErrorResponse`), and the links that let a client
(or a stateful test) follow an opened position to its reads and writes. Which statuses apply follows
from what the handler takes (a body, parameters, a session, the operator token) and from what it uses
(the cache, the dbproc); the statuses that only business rules give are listed per operation.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import (
    Link,
    OpenAPIMediaType,
    OpenAPIResponse,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.routes import HTTPRoute

from cfd_server.admin.controller import operator_guard
from cfd_server.auth.dependencies import COOKIE_NAME
from shared.numbers import GRAMMAR

ERROR_SCHEMA = "ErrorResponse"

DESCRIPTIONS = {
    400: "Bad input: the body, a parameter or a header is not valid (`validation_error`, `invalid_number`, "
         "`malformed_request`, `duplicate_key`, or a field's own code). Nothing changed.",
    401: "Not signed in, or the session, token or API key is not valid (`not_authenticated`, `invalid_token`, "
         "`session_expired`, `account_disabled`, `invalid_key`, `key_revoked`, `invalid_admin_token`, "
         "`invalid_credentials`).",
    403: "Forbidden (`admin_disabled`, `account_disabled`; `insufficient_scope`: a read-only API key writing; "
         "`key_not_allowed`: an API key managing keys, the password or sessions; or `cross_site_request`: a write "
         "from another site's page, or a cookie-signed write whose body is not JSON).",
    404: "No such resource (`position_not_found`, `order_not_found`, `alert_not_found`, `key_not_found`, "
         "`user_not_found`, `account_not_found`, `unknown_market`; `replay_not_running`: no replay to step).",
    409: "The resource is not in a state that allows this (`position_closed`, `order_not_working`, `email_taken`; "
         "`replay_not_lockstep`, `replay_ended`: a replay that cannot be stepped).",
    410: "No longer kept (`resume_gap`: account events older than their retention); `details` says where to "
         "start again.",
    413: "The body is larger than 64 KiB (`payload_too_large`).",
    422: "A valid request that the business rules refuse; `error.code` says which rule.",
    429: "Too many attempts; `Retry-After` says when to try again.",
    503: "A backend is down or the price is stale (`backend_unavailable`, `market_unavailable`); retry after "
         "`Retry-After` seconds.",
    504: "The dbproc did not answer in time (`request_timeout`); the request may still complete.",
}

# Operations that answer from the server's memory: no cache, no dbproc.
_IN_MEMORY = {"list_markets", "list_prices", "info", "health"}
# Operations that may find a backend down but never wait for the dbproc.
_NO_DBPROC = {"me", "logout", "logout_all", "get_price", "ready"}
# Statuses only business rules give.
_RULES: dict[str, set[int]] = {
    "signup": {429},
    "verify": {409, 429},
    "signin": {401, 403, 429},
    "forgot_password": {429},
    "reset_password": {409, 429},
    "change_password": {409, 429},
    "create_api_key": {422},
    "create_alert": {404, 422},
    "list_api_keys": {403},
    "open_position": {404, 422},
    "modify_position": {409, 422},
    "close_position": {409, 422},
    "close_all_positions": {404},
    "place_order": {404, 422},
    "modify_order": {409, 422},
    "cancel_order": {409},
    "list_account_events": {410},
    "admin_deposit": {422},
    "admin_set_market": {422},
    "admin_list_positions": {404},
    "admin_list_orders": {404},
    "admin_user_api_keys": {404},
    "replay_step": {404, 409},
}
# Where an operation's answer leads: response status → link name → (operation, parameters).
_LINKS: dict[str, dict[str, dict[str, tuple[str, dict[str, str]]]]] = {
    "open_position": {"201": {
        "GetPosition": ("get_position", {"position": "$response.body#/id"}),
        "ModifyPosition": ("modify_position", {"position": "$response.body#/id"}),
        "ClosePosition": ("close_position", {"position": "$response.body#/id"}),
    }},
    "close_position": {"200": {
        "GetClosedPart": ("get_position", {"position": "$response.body#/id"}),
    }},
    "place_order": {"201": {
        "GetOrder": ("get_order", {"order": "$response.body#/id"}),
        "ModifyOrder": ("modify_order", {"order": "$response.body#/id"}),
        "CancelOrder": ("cancel_order", {"order": "$response.body#/id"}),
    }},
}


def error_statuses(operation_id: str, *, body: bool, path_params: bool, query_params: bool, session: bool,
                   operator: bool, write: bool = False) -> set[int]:
    """Every error status an operation can answer."""
    statuses = set(_RULES.get(operation_id, ()))
    if write:
        statuses.add(403)  # cfd_server.security.CrossSiteGuard
    if body:
        statuses |= {400, 413}
    if query_params or path_params:
        statuses.add(400)
    if path_params:
        statuses.add(404)
    if session:
        statuses.add(401)
    if operator:
        statuses |= {401, 403}
    if operation_id not in _IN_MEMORY:
        statuses.add(503)
        if operation_id not in _NO_DBPROC:
            statuses.add(504)
    return statuses


SECURITY_SCHEMES = {
    "session": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                              description="The access_token of verify or sign-in."),
    "sessionCookie": SecurityScheme(type="apiKey", name=COOKIE_NAME, security_scheme_in="cookie",
                                    description="The cookie set by verify or sign-in."),
    "operator": SecurityScheme(type="http", scheme="bearer", description="The operator token."),
}


def document_api(app: Litestar) -> None:
    """Add the error answers, links and security to `app`'s OpenAPI document (built once, then served)."""
    openapi = app.openapi_schema
    components = openapi.components
    components.schemas = dict(components.schemas or {})
    components.schemas[ERROR_SCHEMA] = _error_schema()
    components.security_schemes = dict(SECURITY_SCHEMES)
    handlers = {h.operation_id: h for route in app.routes if isinstance(route, HTTPRoute)
                for h in route.route_handlers if isinstance(h.operation_id, str)}
    for schema in components.schemas.values():
        _decimal_may_be_null(schema)
    for name in _closed_bodies(handlers.values()):
        if isinstance(body := components.schemas.get(name), Schema):
            body.additional_properties = False  # the server refuses unknown fields (validation_error)
    operations = {op.operation_id: op for item in (openapi.paths or {}).values()
                  for op in (item.get, item.post, item.put, item.patch, item.delete) if op and op.operation_id}
    writes = {op.operation_id for item in (openapi.paths or {}).values()
              for op in (item.post, item.put, item.patch, item.delete) if op and op.operation_id}
    for operation_id, operation in operations.items():
        handler = handlers.get(operation_id)
        session = handler is not None and "session" in handler.resolve_dependencies()
        operator = handler is not None and operator_guard in handler.resolve_guards()
        if session:
            operation.security = [{"session": []}, {"sessionCookie": []}]
        elif operator:
            operation.security = [{"operator": []}]
        if (handler is not None and isinstance(operation.request_body, RequestBody)
                and handler.parsed_data_field is not None and handler.parsed_data_field.has_default):
            operation.request_body.required = False  # no body at all is fine (`close`, `close-all`)
        places = {p.param_in for p in operation.parameters or [] if isinstance(p, Parameter)}
        statuses = error_statuses(operation_id, body=operation.request_body is not None,
                                  path_params=ParamType.PATH in places, query_params=ParamType.QUERY in places,
                                  session=session, operator=operator, write=operation_id in writes)
        operation.responses = _responses(operation_id, dict(operation.responses or {}), statuses)
        for status, links in _LINKS.get(operation_id, {}).items():
            if isinstance(response := operation.responses.get(status), OpenAPIResponse):
                response.links = {name: Link(operation_id=target, parameters=dict(parameters))
                                  for name, (target, parameters) in links.items() if target in operations}


def _responses(operation_id: str, responses: dict[str, Any], statuses: set[int]) -> dict[str, Any]:
    if isinstance(no_content := responses.get("204"), OpenAPIResponse):
        no_content.content = None  # an empty answer has no media type
    error = {"application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{ERROR_SCHEMA}"))}
    for status in sorted(statuses):
        if operation_id == "ready" and status == 503:  # /ready answers its report, not an error
            responses["503"] = OpenAPIResponse(description="A backend does not answer; the body says which.",
                                               content=responses["200"].content)
        else:
            responses[str(status)] = OpenAPIResponse(description=DESCRIPTIONS[status], content=dict(error))
    return responses


def _closed_bodies(handlers: Any) -> set[str]:
    """Names of the request body types (and the types inside them) that refuse unknown fields."""
    closed: set[str] = set()
    stack = [msgspec.inspect.type_info(h.parsed_data_field.annotation) for h in handlers
             if h.parsed_data_field is not None]
    while stack:
        info = stack.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.forbid_unknown_fields:
                closed.add(info.cls.__name__)
            stack.extend(f.type for f in info.fields)
        elif isinstance(info, msgspec.inspect.UnionType):
            stack.extend(info.types)
        elif isinstance(info, msgspec.inspect.Metadata):
            stack.append(info.type)
    return closed


def _decimal_may_be_null(schema: Schema | Reference) -> None:
    """An optional decimal field: a decimal string, a JSON number or null (Litestar writes the optional
    part as a `oneOf` that would leave numbers out)."""
    for field in (getattr(schema, "properties", None) or {}).values():
        if isinstance(field, Schema) and field.pattern == GRAMMAR and field.one_of:
            if any(isinstance(o, Schema) and o.type == OpenAPIType.NULL for o in field.one_of):
                field.type = [OpenAPIType.STRING, OpenAPIType.NUMBER, OpenAPIType.NULL]
            field.one_of = None


def _error_schema() -> Schema:
    error: dict[str, Any] = {
        "code": Schema(type=OpenAPIType.STRING, description="A stable snake_case word; program against it."),
        "message": Schema(type=OpenAPIType.STRING, description="A sentence for people: what is wrong, what to do."),
        "details": Schema(description="null, an object (often {\"field\": ...}), or for validation_error a list."),
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["error"],
        properties={"error": Schema(type=OpenAPIType.OBJECT, required=["code", "message", "details"],
                                    properties=error)},
        description='Every error: {"error": {"code", "message", "details"}}.',
    )
