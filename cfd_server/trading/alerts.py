"""`/api/v1/alerts`: price and margin-level alerts, each a request to the dbproc, the user's single writer.
See docs/api.md, "Alerts"."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cfd_server.auth.dependencies import provide_session
from cfd_server.auth.tokens import Session
from cfd_server.trading.controller import ask, command_id, path_id
from shared import operations as ops
from shared.contracts.bus import AlertsQuery, CreateAlertCommand, DeleteAlertCommand
from shared.contracts.rest import Alert, AlertCreate


class AlertsController(Controller):
    path = "/alerts"
    tags = ["alerts"]
    dependencies = {"session": Provide(provide_session)}

    @post("/", operation_id="create_alert", status_code=201,
          summary="Alert me when a price crosses a level, or my margin level falls below one")
    async def create(self, request: Request, state: State, session: NamedDependency[Session],
                     data: JSONBody[AlertCreate]) -> Alert:
        body = CreateAlertCommand(user_id=session.user.id, alert=data)
        return await ask(state, session, ops.ALERT_CREATE, body, command_id(request, session, "alert"))

    @get("/", operation_id="list_alerts", summary="Your alerts, newest first")
    async def alerts(self, state: State, session: NamedDependency[Session],
                     status: Annotated[Literal["active", "triggered"] | None, QueryParameter()] = None,
                     ) -> list[Alert]:
        return await ask(state, session, ops.ALERTS, AlertsQuery(user_id=session.user.id, status=status))

    @delete("/{alert:str}", operation_id="delete_alert", status_code=204, summary="Delete an alert")
    async def delete(self, request: Request, state: State, session: NamedDependency[Session],
                     alert: FromPath[str]) -> None:
        body = DeleteAlertCommand(user_id=session.user.id, alert_id=path_id(alert, "alert"))
        await ask(state, session, ops.ALERT_DELETE, body, command_id(request, session, f"delete-alert:{alert}"))
