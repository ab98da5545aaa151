"""The "sessions ended" notice: how every server instance learns at once that sessions ended elsewhere.

Ending sessions (a logout, an operator disabling the user, signing out everywhere) first publishes one
`SessionsEnded` on the broadcast `sessions-ended` topic, keyed by the user, and only then removes the
sessions from the cache: if the bus cannot take the notice, nothing has changed and the caller can retry.
Every server follows the topic and its WebSocket hub takes the `account` channel and the sign-in from each
connection that authenticated with an ended session (see `Hub.end_sessions`). Token expiry needs no
notice: each connection has a timer at its token's expiry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from cfd_server.auth.session import Session
from shared.bus import Bus, Message, Subscription
from shared.contracts import encode

log = logging.getLogger(__name__)


class SignedInConnections(Protocol):
    """What a server ends sessions on: its WebSocket hub (`cfd_server.ws.hub.Hub`). Only this is asked of it,
    so this module, and `tokens` which announces through it, need nothing of the WebSocket feed."""

    def end_sessions(self, user_id: str, ends: Callable[[Session], bool], code: str, message: str) -> int:
        """Sign out the connections of `user_id` whose session `ends`, each told `code` and `message`;
        returns how many."""
        ...


class SessionsEnded(msgspec.Struct, frozen=True, kw_only=True):
    """Which sessions of `user_id` ended: the one `jti`, or every one issued before `before_ms` (epoch ms)
    except `keep_jti`. `reason` picks the error frame the WebSocket client gets (`ENDINGS`)."""

    user_id: str
    reason: str
    jti: str | None = None
    before_ms: int | None = None
    keep_jti: str | None = None

    def ends(self, session: Session) -> bool:
        if session.user.id != self.user_id:
            return False
        if self.jti is not None:
            return session.jti == self.jti
        if session.key_id is not None:  # a key outlives the user's sessions; only disabling stops it
            return self.reason == "disabled"
        if self.before_ms is None or session.jti == self.keep_jti:
            return False
        return session.issued_ms < self.before_ms


ENDINGS: dict[str, tuple[str, str]] = {
    "logout": ("session_ended", "This session was signed out, so the account channel stopped; "
                                "send auth with a new token to follow the account again."),
    "signed_out_everywhere": ("session_ended", "Every session of this account was signed out, so the account "
                                               "channel stopped; sign in again and send auth with the new token."),
    "disabled": ("account_disabled", "This account was disabled, so the account channel stopped; "
                                     "contact support."),
    "key_revoked": ("key_revoked", "The API key this connection signed in with was revoked, so the account "
                                   "channel stopped; send auth with another key."),
    "password_changed": ("session_ended", "The password of this account was changed, so this session ended; "
                                          "sign in again with the new password and send auth with the new token."),
    "password_reset": ("session_ended", "The password of this account was reset, so every session ended; sign in "
                                        "with the new password and send auth with the new token."),
}
"""Reason → (error code, message) of the frame a connection gets when its session ends."""

_OTHER_ENDING = ("session_ended", "This session has ended, so the account channel stopped; sign in again and "
                                  "send auth with the new token.")


def ending(reason: str) -> tuple[str, str]:
    """The error code and message for `reason` (a reason this server does not know reads as a plain end)."""
    return ENDINGS.get(reason, _OTHER_ENDING)


_decoder = msgspec.json.Decoder(SessionsEnded)


class SessionNotices:
    """Publishes `SessionsEnded` notices and follows them, on the broadcast `sessions-ended` topic."""

    def __init__(self, bus: Bus, topic: str) -> None:
        self.bus = bus
        self.topic = topic

    async def announce(self, notice: SessionsEnded) -> None:
        """Tell every server; returns once the bus has the notice (raises `BackendDown` if it cannot)."""
        await self.bus.publish(self.topic, encode(notice), key=notice.user_id.encode())

    async def follow(self, hub: SignedInConnections) -> Subscription:
        """End the hub's connections that each notice names, from now until the subscription stops."""

        async def on_notice(message: Message) -> None:
            try:
                notice = _decoder.decode(message.value)
            except msgspec.DecodeError as exc:
                log.warning("ignoring a malformed sessions-ended notice: %s", exc)
                return
            code, text = ending(notice.reason)
            ended = hub.end_sessions(notice.user_id, notice.ends, code, text)
            if ended:
                log.info("%s: ended the feed sign-in of %d connection(s) of user %s", notice.reason, ended,
                         notice.user_id)

        return await self.bus.subscribe([self.topic], on_notice, group=None)
