"""The sign-up, verify, sign-in and logout rules; the controller only translates HTTP.

Every guess is counted before it is checked: one atomic `Cache.take` counts the attempt in each budget it
falls under (per email, per client address, per code) and admits it only if all have room, so a burst of
concurrent requests gets exactly the budgets' worth of checks, never more. An attempt that turns out right
gives its own count back (it was not a wrong guess); nothing resets a budget that a concurrent burst could
then use. The budgets are in docs/api.md ("Attempt limits").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from typing import NoReturn

from cfd_server.auth.client_address import ClientAddresses
from cfd_server.auth.passwords import DummyHash, check_password, hash_password, needs_rehash
from cfd_server.auth.tokens import Session, Sessions
from cfd_server.context import ServerContext
from shared import operations as ops
from shared.cache import Budget, Taken
from shared.contracts.bus import CreateUser, CredentialsQuery, RehashPassword, UserExistsQuery
from shared.contracts.rest import ChangePasswordRequest, ResetPasswordRequest, SigninRequest, User, VerifyRequest
from shared.credentials import CredentialsDirectory
from shared.errors import BadRequest, CfdError, Conflict, Forbidden, Throttled, TimedOut, Unauthorized, Unavailable
from shared.settings import RateLimit
from shared.validation import check_name, check_otp, normalise_email
from shared.validation import check_password as check_password_rules

log = logging.getLogger(__name__)

OTP_TTL = 600
OTP_MAX_TRIES = 5
FAMILIAR_FOR = 30 * 86400  # an address a user signed in from is familiar for 30 days


def wait_text(seconds: int) -> str:
    """`seconds` for people: "45 s", "15 min", "3 h"."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{-(-seconds // 60)} min"
    return f"{-(-seconds // 3600)} h"


class AuthService:
    def __init__(self, ctx: ServerContext, dummy: DummyHash) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.auth
        self.prefix = ctx.settings.bus.topic_prefix
        self.cache = ctx.cache
        self.sessions = Sessions.for_server(ctx)
        assert self.sessions.keys is not None  # a server's sessions resolve API keys too
        self.keys = self.sessions.keys
        self.directory = CredentialsDirectory(ctx.cache, self.prefix)
        self.addresses = ClientAddresses(ctx.settings.http.trusted_proxies)
        self.dummy = dummy

    # --- keys and budgets ---------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _budget(self, limit: RateLimit, *parts: str) -> Budget:
        # the window is part of the key: tiers of one kind stay apart, and a changed setting starts afresh
        return Budget(self._key("limit", *parts, str(limit.seconds)), limit.count, limit.seconds)

    def _code_budgets(self, email: str, client: str) -> tuple[Budget, ...]:
        """A code guess counts against its code, its email's day and its client address."""
        return (
            Budget(self._key("otp-tries", email), OTP_MAX_TRIES, OTP_TTL),
            self._budget(self.settings.code_limit_per_email, "code-email", email),
            self._budget(self.settings.verify_limit_per_ip, "code-ip", client),
        )

    def _code_digest(self, email: str, code: str) -> bytes:
        digest = hmac.new(self.settings.jwt_secret.encode(), f"{email}:{code}".encode(), hashlib.sha256)
        return digest.hexdigest().encode()

    # --- sign-up and verify -------------------------------------------------------------------------------

    async def signup(self, raw_email: str, client: str) -> None:
        """Mail a code to a new address, or a notice to a registered one; same outcome either way.

        A registered address gets a decoy code state that no code matches, with the same tries, so verify
        answers alike for both."""
        email = normalise_email(raw_email)
        budgets = (
            self._budget(self.settings.signup_limit_per_email, "signup-email", email),
            self._budget(self.settings.signup_limit_per_ip, "signup-ip", client),
        )
        taken = await self.cache.take(*budgets)
        if not taken.admitted:
            wait = taken.retry_after(budgets)
            if 1 in taken.exhausted(budgets):
                raise Throttled(f"Too many sign-ups from your address; try again in {wait_text(wait)}.",
                                code="too_many_requests", retry_after=wait, details={"retry_after": wait})
            raise Throttled(f"A code was sent recently; you can ask for another in {wait_text(wait)}.",
                            code="resend_too_soon", retry_after=wait, details={"retry_after": wait})
        try:
            exists = await self.ctx.rpc.call(ops.USER_EXISTS, UserExistsQuery(email=email), key=email)
        except (TimedOut, Unavailable):
            await self.cache.give_back(*(b.key for b in budgets))  # nothing was sent: the client may retry now
            raise
        if exists.exists:
            state = secrets.token_hex(32).encode()  # shaped like a digest; no code's digest is this
            subject, text = "Your CFD Broker account", _ALREADY_REGISTERED
        else:
            code = f"{secrets.randbelow(1_000_000):06d}"
            state = self._code_digest(email, code)
            subject, text = f"Your CFD Broker code: {code}", _CODE_MAIL.format(code=code)
        await self.cache.delete(self._key("otp-tries", email))  # a new code has its own 5 tries; not the day's
        await self.cache.set(self._key("otp", email), state, ttl=OTP_TTL)
        self.ctx.mail.submit(email, subject, text)

    async def verify(self, body: VerifyRequest, client: str) -> tuple[str, Session]:
        """Check the code (5 tries a code, and the daily and per-address budgets), create the user with the
        demo deposit, and sign them in."""
        email = normalise_email(body.email)
        code = check_otp(body.otp)
        name = check_name(body.name)
        await asyncio.to_thread(check_password_rules, body.password, email, name)
        budgets = self._code_budgets(email, client)
        taken = await self.cache.take(*budgets)
        if not taken.admitted:
            self._refuse_code_guess(taken, budgets)
        left = OTP_MAX_TRIES - taken.counts[0]
        code_key = self._key("otp", email)
        stored = await self.cache.get(code_key)
        if stored is None:
            raise BadRequest("No code is waiting for this email: it expired, was used, or was never sent. "
                             "Ask for a new one.", code="invalid_code", details={"field": "otp", "attempts_left": left})
        if not hmac.compare_digest(stored, self._code_digest(email, code)):
            if left <= 0:
                await self.cache.delete(code_key)
                raise BadRequest("That code is wrong, and that was the last try; ask for a new code.",
                                 code="code_burned", details={"field": "otp", "attempts_left": 0})
            raise BadRequest(f"That code is wrong; {left} {'try' if left == 1 else 'tries'} left.",
                             code="invalid_code", details={"field": "otp", "attempts_left": left})
        if await self.cache.getdel(code_key) is None:  # a concurrent request used it first
            raise BadRequest("That code has just been used; sign in, or ask for a new code.", code="invalid_code",
                             details={"field": "otp", "attempts_left": left})
        await self.cache.give_back(budgets[1].key, budgets[2].key)  # the right code is not a wrong guess
        try:
            password_hash = await hash_password(body.password, self.settings.bcrypt_rounds)
            user = await self.ctx.rpc.call(ops.USER_CREATE,
                                           CreateUser(email=email, name=name, password_hash=password_hash),
                                           key=email, command_id=f"user.create:{email}")
        except (TimedOut, Unavailable):
            # The account may or may not exist yet: give the code and its try back so the client can retry;
            # the command id makes a retry return the same account instead of creating a second one.
            await self.cache.set(code_key, stored, ttl=OTP_TTL, only_if_absent=True)
            await self.cache.give_back(budgets[0].key)
            raise
        # The code's tries stay counted until they expire (guesses still in flight find no fresh ones); the
        # address may ask again at once, and gets the notice.
        await self.cache.delete(self._budget(self.settings.signup_limit_per_email, "signup-email", email).key)
        await self.cache.set(self._key("signin-familiar", email, client), b"1", ttl=FAMILIAR_FOR)
        return await self.sessions.issue(user)

    @staticmethod
    def _refuse_code_guess(taken: Taken, budgets: tuple[Budget, ...]) -> NoReturn:
        exhausted = taken.exhausted(budgets)
        if 0 in exhausted:
            raise BadRequest("Too many wrong codes; ask for a new one.", code="code_burned",
                             details={"field": "otp", "attempts_left": 0})
        wait = taken.retry_after(budgets)
        where = "for this email" if 1 in exhausted else "from your address"
        raise Throttled(f"Too many wrong codes {where}; try again in {wait_text(wait)}.", code="too_many_attempts",
                        retry_after=wait, details={"retry_after": wait})

    # --- sign-in ------------------------------------------------------------------------------------------

    def _signin_budgets(self, email: str, client: str, familiar: bool) -> list[Budget]:
        """Failed sign-ins counted per (email, address) and per address; from an address the user has not
        signed in from lately, also per email, in growing windows: an attacker elsewhere slows down every
        stranger's guesses at the account, never the owner at a familiar address."""
        settings = self.settings
        budgets = [self._budget(settings.signin_limit_per_email_ip, "signin-email-ip", email, client),
                   self._budget(settings.signin_limit_per_ip, "signin-ip", client)]
        if not familiar:
            budgets += [self._budget(limit, "signin-email", email) for limit in settings.signin_limit_per_email]
        return budgets

    async def signin(self, body: SigninRequest, client: str) -> tuple[str, Session]:
        """One answer, in about one bcrypt check's time, for an unknown email and a wrong password."""
        try:
            email = normalise_email(body.email)
        except BadRequest:
            email = body.email.strip().lower()
        familiar_key = self._key("signin-familiar", email, client)
        # One cache read gives the address's standing and, while the directory is complete, the credentials;
        # the path taken depends on the directory, never on the email (see shared.credentials).
        found, (familiar,) = await self.directory.lookup(email, familiar_key)
        if found is None:
            found = await self.ctx.rpc.call(ops.USER_CREDENTIALS, CredentialsQuery(email=email), key=email)
        budgets = self._signin_budgets(email, client, familiar is not None)
        taken = await self.cache.take(*budgets)
        if not taken.admitted:
            wait = taken.retry_after(budgets)
            exhausted = taken.exhausted(budgets)
            if 0 in exhausted:
                message = f"Too many failed sign-ins for this email from your address; try again in {wait_text(wait)}."
            elif 1 in exhausted:
                message = f"Too many failed sign-ins from your address; try again in {wait_text(wait)}."
            else:
                message = (f"Too many failed sign-ins for this email from new addresses; try again in "
                           f"{wait_text(wait)}, or from an address you signed in from before.")
            raise Throttled(message, code="too_many_attempts", retry_after=wait, details={"retry_after": wait})
        ok = await check_password(body.password, found.password_hash or self.dummy.value)
        if not ok or found.user is None or found.password_hash is None:
            raise Unauthorized("The email or password is wrong.", code="invalid_credentials")
        await self.cache.give_back(*(budget.key for budget in budgets))  # a right password is not a failure
        if found.user.status == "disabled":
            raise Forbidden("This account is disabled; contact support.", code="account_disabled")
        await self.cache.set(familiar_key, b"1", ttl=FAMILIAR_FOR)
        if needs_rehash(body.password, found.password_hash, self.settings.bcrypt_rounds):
            await self._rehash(found.user, body.password, found.password_hash)
        return await self.sessions.issue(found.user)

    async def _rehash(self, user: User, password: str, old_hash: str) -> None:
        """Store the password hashed the current way (once, at the first sign-in after an upgrade)."""
        try:
            new_hash = await hash_password(password, self.settings.bcrypt_rounds)
            done = await self.ctx.rpc.call(ops.USER_REHASH,
                                           RehashPassword(user_id=user.id, old_hash=old_hash, new_hash=new_hash),
                                           key=user.email)
            if done.replaced:
                log.info("password hash of user %s upgraded", user.id)
        except CfdError as exc:  # the sign-in stands; the next one tries again
            log.warning("password hash of user %s not upgraded (%s); the next sign-in retries", user.id,
                        exc.message)

    async def logout(self, session: Session) -> None:
        await self.sessions.revoke(session.jti)

    async def logout_all(self, session: Session) -> None:
        """End every session of the user, this one included, and their WebSocket sign-ins."""
        await self.sessions.end_all(session.user.id)

    # --- passwords ----------------------------------------------------------------------------------------

    async def forgot(self, raw_email: str, client: str) -> None:
        """Mail a reset code to a registered address; the same answer, work and throttles (sign-up's budgets,
        counted apart) for an address that has no account, which gets a decoy state and no mail."""
        email = normalise_email(raw_email)
        budgets = (
            self._budget(self.settings.signup_limit_per_email, "forgot-email", email),
            self._budget(self.settings.signup_limit_per_ip, "forgot-ip", client),
        )
        taken = await self.cache.take(*budgets)
        if not taken.admitted:
            wait = taken.retry_after(budgets)
            if 1 in taken.exhausted(budgets):
                raise Throttled(f"Too many requests from your address; try again in {wait_text(wait)}.",
                                code="too_many_requests", retry_after=wait, details={"retry_after": wait})
            raise Throttled(f"A code was sent recently; you can ask for another in {wait_text(wait)}.",
                            code="resend_too_soon", retry_after=wait, details={"retry_after": wait})
        try:
            exists = await self.ctx.rpc.call(ops.USER_EXISTS, UserExistsQuery(email=email), key=email)
        except (TimedOut, Unavailable):
            await self.cache.give_back(*(b.key for b in budgets))
            raise
        code = f"{secrets.randbelow(1_000_000):06d}"
        state = self._code_digest(email, "reset:" + code) if exists.exists else secrets.token_hex(32).encode()
        await self.cache.delete(self._key("reset-tries", email))
        await self.cache.set(self._key("reset", email), state, ttl=OTP_TTL)
        if exists.exists:
            self.ctx.mail.submit(email, f"Your CFD Broker password reset code: {code}", _RESET_MAIL.format(code=code))

    async def reset(self, body: ResetPasswordRequest, client: str) -> None:
        """Check the mailed code (5 tries a code; the daily and per-address code budgets), set the new password
        and end every session of the account."""
        email = normalise_email(body.email)
        code = check_otp(body.otp)
        budgets = (Budget(self._key("reset-tries", email), OTP_MAX_TRIES, OTP_TTL),
                   *self._code_budgets(email, client)[1:])
        taken = await self.cache.take(*budgets)
        if not taken.admitted:
            self._refuse_code_guess(taken, budgets)
        left = OTP_MAX_TRIES - taken.counts[0]
        code_key = self._key("reset", email)
        stored = await self.cache.get(code_key)
        if stored is None or not hmac.compare_digest(stored, self._code_digest(email, "reset:" + code)):
            if stored is not None and left <= 0:
                await self.cache.delete(code_key)
                raise BadRequest("That code is wrong, and that was the last try; ask for a new code.",
                                 code="code_burned", details={"field": "otp", "attempts_left": 0})
            raise BadRequest("That code is wrong, expired or was never sent; check it, or ask for a new one.",
                             code="invalid_code", details={"field": "otp", "attempts_left": max(left, 0)})
        found = await self.ctx.rpc.call(ops.USER_CREDENTIALS, CredentialsQuery(email=email), key=email)
        if found.user is None or found.password_hash is None:  # the account went away meanwhile
            raise BadRequest("That code is no longer valid; ask for a new one.", code="invalid_code",
                             details={"field": "otp", "attempts_left": left})
        await asyncio.to_thread(check_password_rules, body.password, email, found.user.name)
        if await self.cache.getdel(code_key) is None:
            raise BadRequest("That code has just been used; ask for a new one.", code="invalid_code",
                             details={"field": "otp", "attempts_left": left})
        await self.cache.give_back(budgets[1].key, budgets[2].key)
        await self._set_password(found.user, found.password_hash, body.password)
        await self.sessions.end_all(found.user.id, reason="password_reset")

    async def change_password(self, session: Session, body: ChangePasswordRequest) -> None:
        """Check the current password (10 wrong tries in 15 minutes at most), set the new one, and end every
        other session of the account; this one stays signed in."""
        user = session.user
        budget = Budget(self._key("password-change", user.id), 10, 900)
        taken = await self.cache.take(budget)
        if not taken.admitted:
            wait = taken.retry_after((budget,))
            raise Throttled(f"Too many wrong passwords; try again in {wait_text(wait)}.", code="too_many_attempts",
                            retry_after=wait, details={"retry_after": wait})
        found = await self.ctx.rpc.call(ops.USER_CREDENTIALS, CredentialsQuery(email=user.email), key=user.email)
        if found.password_hash is None or not await check_password(body.current_password, found.password_hash):
            raise BadRequest("The current password is wrong.", code="wrong_password",
                             details={"field": "current_password"})
        await self.cache.give_back(budget.key)
        if body.new_password == body.current_password:
            raise BadRequest("The new password is the current one; choose another.", code="weak_password",
                             details={"field": "new_password"})
        try:
            await asyncio.to_thread(check_password_rules, body.new_password, user.email, user.name)
        except BadRequest as exc:
            raise BadRequest(exc.message, code=exc.code, details={**(exc.details or {}), "field": "new_password"}
                             ) from None
        await self._set_password(user, found.password_hash, body.new_password)
        await self.sessions.end_all(user.id, keep_jti=session.jti, reason="password_changed")

    async def _set_password(self, user: User, old_hash: str, password: str) -> None:
        new_hash = await hash_password(password, self.settings.bcrypt_rounds)
        done = await self.ctx.rpc.call(ops.USER_REHASH,
                                       RehashPassword(user_id=user.id, old_hash=old_hash, new_hash=new_hash),
                                       key=user.email)
        if not done.replaced:
            raise Conflict("The password was changed meanwhile; sign in again and retry.", code="password_changed")


_CODE_MAIL = """Hello,

your one-time code for CFD Broker is

    {code}

It is valid for 10 minutes. If you did not ask for it, ignore this mail.
"""

_RESET_MAIL = """Hello,

your code to reset your CFD Broker password is

    {code}

It is valid for 10 minutes. Resetting the password signs out every session of the account. If you did not
ask for it, ignore this mail: your password stays as it is.
"""

_ALREADY_REGISTERED = """Hello,

someone (probably you) asked to create a CFD Broker account with this address, but it already has one.
Sign in with your password instead. If this was not you, you can ignore this mail.
"""
