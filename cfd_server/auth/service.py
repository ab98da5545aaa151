"""The sign-up, verify, sign-in and logout rules; the controller only translates HTTP."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets

from cfd_server.auth.passwords import DummyHash, check_password, hash_password
from cfd_server.auth.tokens import Session, Sessions
from cfd_server.context import ServerContext
from shared.contracts import (
    CreateUser,
    Credentials,
    CredentialsQuery,
    RequestType,
    SigninRequest,
    User,
    UserExists,
    UserExistsQuery,
    VerifyRequest,
)
from shared.credentials import CredentialsDirectory
from shared.errors import BadRequest, Forbidden, Throttled, TimedOut, Unauthorized, Unavailable
from shared.validation import check_name, check_otp, normalise_email
from shared.validation import check_password as check_password_rules

log = logging.getLogger(__name__)

OTP_TTL = 600
OTP_MAX_TRIES = 5
RESEND_COOLDOWN = 60
SIGNIN_WINDOW = 900
SIGNIN_MAX_FAILURES = 10


class AuthService:
    def __init__(self, ctx: ServerContext, dummy: DummyHash) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.cache = ctx.cache
        self.sessions = Sessions.for_server(ctx)
        self.directory = CredentialsDirectory(ctx.cache, ctx.settings.topic_prefix)
        self.dummy = dummy

    def _code_digest(self, email: str, code: str) -> bytes:
        digest = hmac.new(self.settings.jwt_secret.encode(), f"{email}:{code}".encode(), hashlib.sha256)
        return digest.hexdigest().encode()

    async def _request(self, type: str, body, response_type, *, key: str, command_id: str | None = None):
        return await self.ctx.rpc.request(self.ctx.topics.user_requests, type, body, response_type, key=key,
                                          command_id=command_id)

    async def signup(self, raw_email: str) -> None:
        """Mail a code to a new address, or a notice to a registered one; same outcome either way."""
        email = normalise_email(raw_email)
        if not await self.cache.set(f"otp-cooldown:{email}", b"1", ttl=RESEND_COOLDOWN, only_if_absent=True):
            wait = math.ceil(await self.cache.ttl(f"otp-cooldown:{email}") or RESEND_COOLDOWN)
            raise Throttled(f"A code was sent recently; you can ask for another in {wait} s.",
                            code="resend_too_soon", retry_after=wait, details={"retry_after": wait})
        try:
            exists = await self._request(RequestType.USER_EXISTS, UserExistsQuery(email=email), UserExists,
                                         key=email)
        except (TimedOut, Unavailable):
            await self.cache.delete(f"otp-cooldown:{email}")  # nothing was sent: the client may retry now
            raise
        if exists.exists:
            self.ctx.mail.submit(email, "Your CFD Broker account", _ALREADY_REGISTERED)
            return
        code = f"{secrets.randbelow(1_000_000):06d}"
        await self.cache.delete(f"otp-tries:{email}")
        await self.cache.set(f"otp:{email}", self._code_digest(email, code), ttl=OTP_TTL)
        self.ctx.mail.submit(email, f"Your CFD Broker code: {code}", _CODE_MAIL.format(code=code))

    async def verify(self, body: VerifyRequest) -> tuple[str, Session]:
        """Check the code (once, at most 5 tries), create the user with the demo deposit, sign them in."""
        email = normalise_email(body.email)
        code = check_otp(body.otp)
        name = check_name(body.name)
        check_password_rules(body.password, email)
        stored = await self.cache.get(f"otp:{email}")
        if stored is None:
            raise BadRequest("That code is wrong or has expired; ask for a new one.", code="invalid_code",
                             details={"field": "otp"})
        if not hmac.compare_digest(stored, self._code_digest(email, code)):
            tries = await self.cache.incr(f"otp-tries:{email}", ttl=OTP_TTL)
            if tries >= OTP_MAX_TRIES:
                await self.cache.delete(f"otp:{email}")
                raise BadRequest("Too many wrong codes; ask for a new one.", code="code_burned",
                                 details={"field": "otp"})
            raise BadRequest("That code is wrong or has expired; ask for a new one.", code="invalid_code",
                             details={"field": "otp", "attempts_left": OTP_MAX_TRIES - tries})
        if await self.cache.getdel(f"otp:{email}") is None:  # a concurrent request used it first
            raise BadRequest("That code is wrong or has expired; ask for a new one.", code="invalid_code",
                             details={"field": "otp"})
        try:
            password_hash = await hash_password(body.password, self.settings.bcrypt_rounds)
            user = await self._request(
                RequestType.USER_CREATE,
                CreateUser(email=email, name=name, password_hash=password_hash),
                User,
                key=email,
                command_id=f"user.create:{email}",
            )
        except (TimedOut, Unavailable):
            # The account may or may not exist yet: give the code back so the client can retry; the
            # command id makes a retry return the same account instead of creating a second one.
            await self.cache.set(f"otp:{email}", stored, ttl=OTP_TTL, only_if_absent=True)
            raise
        await self.cache.delete(f"otp-cooldown:{email}", f"otp-tries:{email}")
        return await self.sessions.issue(user)

    async def signin(self, body: SigninRequest) -> tuple[str, Session]:
        """One answer, in about one bcrypt check's time, for an unknown email and a wrong password."""
        try:
            email = normalise_email(body.email)
        except BadRequest:
            email = body.email.strip().lower()
        failures_key = f"signin-fail:{email}"
        # One cache read gives the throttle count and, while the directory is complete, the credentials;
        # the path taken depends on the directory, never on the email (see shared.credentials).
        found, (counted,) = await self.directory.lookup(email, failures_key)
        if found is None:
            found = await self._request(RequestType.USER_CREDENTIALS, CredentialsQuery(email=email), Credentials,
                                        key=email)
        failures = int(counted or 0)
        if failures >= SIGNIN_MAX_FAILURES:
            wait = math.ceil(await self.cache.ttl(failures_key) or SIGNIN_WINDOW)
            raise Throttled("Too many failed sign-ins for this email; try again later.", code="too_many_attempts",
                            retry_after=wait, details={"retry_after": wait})
        ok = await check_password(body.password, found.password_hash or self.dummy.value)
        if not ok or found.user is None:
            await self.cache.incr(failures_key, ttl=SIGNIN_WINDOW)
            raise Unauthorized("The email or password is wrong.", code="invalid_credentials")
        if found.user.status == "disabled":
            raise Forbidden("This account is disabled; contact support.", code="account_disabled")
        if failures:
            await self.cache.delete(failures_key)
        return await self.sessions.issue(found.user)

    async def logout(self, session: Session) -> None:
        await self.sessions.revoke(session.jti)


_CODE_MAIL = """Hello,

your one-time code for CFD Broker is

    {code}

It is valid for 10 minutes. If you did not ask for it, ignore this mail.
"""

_ALREADY_REGISTERED = """Hello,

someone (probably you) asked to create a CFD Broker account with this address, but it already has one.
Sign in with your password instead. If this was not you, you can ignore this mail.
"""
