"""`/api/v1/auth`: sign-up with an emailed code, verify, sign-in, logout (here or everywhere), password change
and reset, me."""

from __future__ import annotations

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cfd_server.auth.dependencies import COOKIE_NAME, provide_person, provide_session
from cfd_server.auth.service import AuthService
from cfd_server.auth.tokens import Session
from shared.contracts.rest import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    AuthSession,
    ChangePasswordRequest,
    Done,
    ForgotPasswordRequest,
    MeResponse,
    ResetPasswordRequest,
    SigninRequest,
    SignupAccepted,
    SignupRequest,
    VerifyRequest,
)

SIGNUP_ACCEPTED = SignupAccepted(
    message="If the address can receive mail, a 6-digit code is on its way. It is valid for 10 minutes."
)
RESET_ACCEPTED = SignupAccepted(
    message="If an account has this address, a 6-digit code to reset its password is on its way. It is valid "
            "for 10 minutes."
)
_CLEARED = Cookie(key=COOKIE_NAME, value="", max_age=0, httponly=True, samesite="strict", path="/")


def client_of(request: Request, auth: AuthService) -> str:
    """The client address the attempt limits count (see `cfd_server.auth.client_address`)."""
    peer = request.client.host if request.client else None
    return auth.addresses.limit_key(peer, request.headers.getall("x-forwarded-for", []))


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    def _signed_in(self, auth: AuthService, token: str, session: Session, status: int) -> Response[AuthSession]:
        settings = auth.settings
        body = AuthSession(user=session.user, access_token=token, expires_in=settings.jwt_ttl_seconds)
        cookie = Cookie(key=COOKIE_NAME, value=token, max_age=settings.jwt_ttl_seconds, httponly=True,
                        samesite="strict", secure=settings.cookie_secure, path="/")
        return Response(body, status_code=status, cookies=[cookie])

    @post("/signup", status_code=HTTP_202_ACCEPTED, operation_id="signup",
          summary="Mail a one-time code to a new address (same answer for a registered one)")
    async def signup(self, request: Request, data: JSONBody[SignupRequest],
                     auth: NamedDependency[AuthService]) -> SignupAccepted:
        await auth.signup(data.email, client_of(request, auth))
        return SIGNUP_ACCEPTED

    @post("/verify", operation_id="verify", summary="Create the account with the mailed code and sign in")
    async def verify(self, request: Request, data: JSONBody[VerifyRequest],
                     auth: NamedDependency[AuthService]) -> Response[AuthSession]:
        token, session = await auth.verify(data, client_of(request, auth))
        return self._signed_in(auth, token, session, HTTP_201_CREATED)

    @post("/signin", status_code=200, operation_id="signin", summary="Sign in with email and password")
    async def signin(self, request: Request, data: JSONBody[SigninRequest],
                     auth: NamedDependency[AuthService]) -> Response[AuthSession]:
        token, session = await auth.signin(data, client_of(request, auth))
        return self._signed_in(auth, token, session, 200)

    @post("/logout", status_code=HTTP_204_NO_CONTENT, operation_id="logout", summary="End this session",
          dependencies={"session": Provide(provide_person)})
    async def logout(self, auth: NamedDependency[AuthService], session: NamedDependency[Session]) -> Response[None]:
        await auth.logout(session)
        return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[_CLEARED])

    @post("/logout-all", status_code=HTTP_204_NO_CONTENT, operation_id="logout_all",
          summary="End every session of this account, this one included",
          dependencies={"session": Provide(provide_person)})
    async def logout_all(self, auth: NamedDependency[AuthService],
                         session: NamedDependency[Session]) -> Response[None]:
        await auth.logout_all(session)
        return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[_CLEARED])

    @post("/password/forgot", status_code=HTTP_202_ACCEPTED, operation_id="forgot_password",
          summary="Mail a password reset code to a registered address (the same answer for any address)")
    async def forgot(self, request: Request, data: JSONBody[ForgotPasswordRequest],
                     auth: NamedDependency[AuthService]) -> SignupAccepted:
        await auth.forgot(data.email, client_of(request, auth))
        return RESET_ACCEPTED

    @post("/password/reset", status_code=200, operation_id="reset_password",
          summary="Set a new password with the mailed code; every session of the account ends")
    async def reset(self, request: Request, data: JSONBody[ResetPasswordRequest],
                    auth: NamedDependency[AuthService]) -> Done:
        await auth.reset(data, client_of(request, auth))
        return Done(message="The password is changed and every session ended; sign in with the new password.")

    @post("/password/change", status_code=200, operation_id="change_password",
          summary="Change the password; every other session of the account ends",
          dependencies={"session": Provide(provide_person)})
    async def change(self, data: JSONBody[ChangePasswordRequest], auth: NamedDependency[AuthService],
                     session: NamedDependency[Session]) -> Done:
        await auth.change_password(session, data)
        return Done(message="The password is changed; every other session of this account ended.")

    @get("/me", operation_id="me", summary="The signed-in user",
         dependencies={"session": Provide(provide_session)})
    async def me(self, session: NamedDependency[Session]) -> MeResponse:
        return MeResponse(user=session.user)


class ApiKeysController(Controller):
    """`/api/v1/api-keys`: a signed-in trader's keys for bots (an API key cannot manage keys)."""

    path = "/api-keys"
    tags = ["api-keys"]
    dependencies = {"session": Provide(provide_person)}

    @post("/", status_code=HTTP_201_CREATED, operation_id="create_api_key",
          summary="Create an API key; its secret is in this answer only")
    async def create(self, data: JSONBody[ApiKeyCreate], auth: NamedDependency[AuthService],
                     session: NamedDependency[Session]) -> ApiKeyCreated:
        return await auth.keys.create(session.user.id, data)

    @get("/", operation_id="list_api_keys", summary="Your API keys (never their secrets)")
    async def list(self, auth: NamedDependency[AuthService], session: NamedDependency[Session]) -> list[ApiKey]:
        return await auth.keys.list(session.user.id)

    @delete("/{key:str}", status_code=HTTP_204_NO_CONTENT, operation_id="revoke_api_key",
            summary="Revoke an API key, on every server at once")
    async def revoke(self, key: FromPath[str], auth: NamedDependency[AuthService],
                     session: NamedDependency[Session]) -> None:
        await auth.keys.revoke(session.user.id, key)
