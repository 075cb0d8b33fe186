"""Who is calling: a Cognito access token, verified, mapped to a Cruddur user.

The same code checks tokens from a Cognito user pool and from the local development key
pair (`cruddur dev token`): RS256 only, the issuer's keys, `iss`, `exp`, `token_use`
(access tokens) and `client_id`. A valid token whose `sub` has no users row is 403.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request

from cruddur.api.db import PRIMARY_KEY
from cruddur.api.dev_sign_in import local_caller
from cruddur.api.errors import ApiError, request_id
from cruddur.api.keys import KeySet, KeysUnavailable, UnknownKey
from cruddur.api.token_cache import Verified, VerifiedTokens, token_digest
from cruddur.config import AuthSettings
from cruddur.db import Db
from cruddur.services.users import Author, Authors, UnknownAuthor
from cruddur.telemetry import metrics
from cruddur.telemetry.requests import USER_UUID_KEY

log = logging.getLogger("cruddur.api")

LEEWAY_SECONDS = 30  # clock skew between Cognito and this host
MAX_TOKEN_LENGTH = 8192


class InvalidToken(Exception):
    """A token refused; `reason` is a stable word for the metrics (`expired`, …)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class TokenVerifier:
    def __init__(
        self,
        settings: AuthSettings,
        keys: KeySet | None = None,
        verified: VerifiedTokens | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings.jwks_url)
        self.verified = verified if verified is not None else VerifiedTokens()

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or InvalidToken saying why not.

        A token verified before is taken from `self.verified` (token_cache.py says when
        that is safe); any other goes through the full check below.
        """
        if self.settings.disabled:
            raise InvalidToken(self.settings.disabled)
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("the token is too long", "too_long")
        digest = token_digest(token)
        known = self.verified.get(digest)
        if known is not None:
            if self._still_published(known):
                return known.claims
            self.verified.forget(digest)
        claims, kid, key = self._check(token)
        try:
            expires = float(claims["exp"])
        except (OverflowError, TypeError, ValueError):  # 10**400 ended in a 500
            raise InvalidToken("the token's exp is not a time", "malformed") from None
        self.verified.put(digest, Verified(claims, kid, key, expires))
        return claims

    def _still_published(self, known: Verified) -> bool:
        try:
            return self.keys.get(known.kid) is known.key
        except (UnknownKey, KeysUnavailable):
            return False  # the full check says which

    def _check(self, token: str) -> tuple[dict[str, Any], str, Any]:
        """The full check: the claims, and the key id and key that verified them."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is not a JWT", "not_a_jwt") from None
        if header.get("alg") != "RS256":
            raise InvalidToken("the token must be signed with RS256", "wrong_algorithm")
        kid = str(header.get("kid", ""))
        try:
            key = self.keys.get(kid)
        except UnknownKey:
            raise InvalidToken(
                "the token is signed with a key the issuer does not publish", "unknown_key"
            ) from None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                issuer=self.settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired", "expired") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(
                "the token is from another issuer (user pool)", "wrong_issuer"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from None
        if claims.get("token_use") != "access":
            raise InvalidToken("send the access token, not the id token", "not_an_access_token")
        if claims.get("client_id") != self.settings.client_id:
            raise InvalidToken("the token is for another app client", "wrong_client")
        if not _storable(claims["sub"]):  # PyJWT checked it is text; PostgreSQL takes less
            raise InvalidToken("the token's subject (sub) is not text PostgreSQL can store")
        return claims, kid, key


def _storable(text: str) -> bool:
    """No NUL and no lone surrogate (JSON's \\ud800 decodes to one; UTF-8 has none): the
    user's lookup refused either, a 422 for a valid body."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unauthorized(message: str, *, error: str | None = "invalid_token") -> ApiError:
    quoted = message.replace('"', "'")
    challenge = (
        "Bearer" if error is None else f'Bearer error="{error}", error_description="{quoted}"'
    )
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def bearer_token(environ: dict[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _bearer_token(environ: dict[str, Any]) -> str:
    """bearer_token(), or 401 saying what is missing."""
    token = bearer_token(environ)
    if token is not None:
        return token
    if not environ.get("HTTP_AUTHORIZATION"):
        metrics.count_refused_token("missing")
        raise _unauthorized("sign in: send Authorization: Bearer <access token>", error=None)
    metrics.count_refused_token("not_bearer")
    raise _unauthorized("the Authorization header must be: Bearer <access token>")


def verified_claims() -> dict[str, Any] | None:
    """The request's token's claims when it carries a valid one, else None (no error):
    for answers that only say more to a signed-in caller."""
    verifier: TokenVerifier = current_app.extensions["cruddur.verifier"]
    token = bearer_token(request.environ)
    if token is None:
        return None
    if verifier.settings.dev and not local_caller():
        return None
    try:
        return verifier.verify(token)
    except (InvalidToken, KeysUnavailable):
        return None


def no_user() -> ApiError:
    return ApiError(
        403,
        "no_user",
        "no Cruddur user belongs to this account: the sign-up did not create one "
        "(`cruddur users sync-cognito` adds the missing ones), or the user has been "
        "linked to another account since (sign in again)",
    )


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def as_caller(write: Callable[[Db, Author], T]) -> T:
    """write(the API's database, the signed-in caller as an Author), in a view under
    @signed_in.

    The uuid comes from the process's map (services/users.py), so a write is one round
    trip; the write checks the row is still the token's subject's, and a user deleted
    or given another subject since is looked up again, and is a 403 if gone for good.
    """
    context = g._get_current_object()  # set by @signed_in; read through the proxy once
    db: Db = context.cruddur_db
    authors: Authors = context.cruddur_authors
    try:
        return authors.write_as(db, context.cognito_user_id, lambda author: write(db, author))
    except UnknownAuthor:
        raise no_user() from None


def signed_in(view: F) -> F:
    """The view runs only for a verified token of a known user; `g.user_uuid` is theirs."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Each read through one of Flask's proxies is a lookup chain: each is read once.
        extensions = current_app.extensions
        environ = request._get_current_object().environ
        verifier: TokenVerifier = extensions["cruddur.verifier"]
        # Without a token it is "missing", wherever it came from (it was counted and
        # logged as a refused dev token).
        sent = "HTTP_AUTHORIZATION" in environ
        if sent and verifier.settings.dev and not local_caller(environ):
            # Its private key is on this machine: a dev token proves nothing from elsewhere
            # (nor through a proxy, which makes every caller look local).
            log.warning(
                "request %s: dev token from %s refused",
                request_id(),
                environ.get("REMOTE_ADDR"),
                extra={"request_id": request_id()},
            )
            metrics.count_refused_token("dev_not_local")
            raise _unauthorized("development tokens are accepted only from this machine")
        try:
            claims = verifier.verify(_bearer_token(environ))
        except InvalidToken as exc:
            log.info(
                "request %s: token refused: %s",
                request_id(),
                exc,
                extra={"request_id": request_id()},
            )
            metrics.count_refused_token(exc.reason)
            raise _unauthorized(str(exc)) from None
        except KeysUnavailable as exc:
            log.error("request %s: %s", request_id(), exc, extra={"request_id": request_id()})
            # Like the database's 503, say when to come back: the key set's next attempt
            # to fetch the keys; sooner would only get this 503 again.
            retry_after = str(math.ceil(verifier.keys.retry_after_failure))
            raise ApiError(
                503,
                "auth_unavailable",
                "cannot check sign-ins right now; try again shortly",
                headers={"Retry-After": retry_after},
            ) from None
        authors: Authors = extensions["cruddur.authors"]
        user_uuid = authors.known(claims["sub"])
        if user_uuid is not None:  # for the log line, before what may fail (as NewCrud does)
            environ[USER_UUID_KEY] = user_uuid
        db = extensions[PRIMARY_KEY].get()  # get_db(), without its proxy read
        if user_uuid is None:
            try:
                user_uuid = authors.uuid_for(db, claims["sub"])
            except UnknownAuthor:
                metrics.count_refused_token("unknown_user")
                raise no_user() from None
            environ[USER_UUID_KEY] = user_uuid
        context = g._get_current_object()
        context.user_uuid = user_uuid
        context.cognito_user_id = claims["sub"]
        context.cruddur_db, context.cruddur_authors = db, authors  # for as_caller
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
