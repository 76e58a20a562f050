"""The gateway's error table.

Handlers raise these; `gateway.handlers.base.BaseHandler.write_error` is the one place that turns
them into a JSON body or an HTML page. Each class carries all that its answer needs: the HTTP
status, an OAuth-style `error` code, a description that is safe to show to the user, the
headers beyond those (`WWW-Authenticate`, `Retry-After`) and how a failed login is counted in
the metrics. `public_error` is the one place where other exceptions (the store's) become one.
"""

from __future__ import annotations

Headers = tuple[tuple[str, str], ...]

# Header values written here, never from request input: RFC 6749 5.2, RFC 6750 3 and 3.1.
INVALID_CLIENT_HEADERS: Headers = (("WWW-Authenticate", 'Basic realm="oauth-gateway"'),)
INVALID_TOKEN_HEADERS: Headers = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
MISSING_TOKEN_HEADERS: Headers = (("WWW-Authenticate", 'Bearer realm="oauth-gateway"'),)


class GatewayError(Exception):
    """Base of every error the gateway shows to a client."""

    status: int = 400
    error: str = "invalid_request"
    title: str = "Something went wrong"
    retry_label: str = "Try again"  # the error page's link to `retry_url`
    headers: Headers = ()  # sent with the answer, beyond its status and body
    # The label of a login that ended with this error (gateway_logins_total's outcome); empty:
    # "invalid_request" for a client's mistake, "error" for ours.
    outcome: str = ""
    provider: str | None = None  # the identity provider at fault, for the log line

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_url: str | None = None,
        log_detail: str = "",
    ) -> None:
        super().__init__(description)
        self.description = description
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error
        # Where a browser user can try again (a login URL); None when retrying makes no sense.
        self.retry_url = retry_url
        # Extra detail for our own log only: never shown to the client (no oracle, no reflection).
        self.log_detail = log_detail

    def response_headers(self) -> Headers:
        """The headers of this error's answer beyond its status and body."""
        return self.headers

    def login_outcome(self) -> str:
        """How a login that failed with this error is counted."""
        return self.outcome or ("invalid_request" if self.status < 500 else "error")


class InvalidRequest(GatewayError):
    status = 400
    error = "invalid_request"
    title = "This request cannot be processed"


class NotFound(GatewayError):
    status = 404
    error = "not_found"
    title = "Not found"


class RequestTooLarge(GatewayError):
    """SECURITY H4: a body or header section over our limits (413 or 431)."""

    status = 413
    error = "request_too_large"
    title = "Request too large"


class InvalidToken(GatewayError):
    """A bearer token was refused. Every refusal looks the same on the wire (SECURITY J9)."""

    status = 401
    error = "invalid_token"
    title = "Invalid token"
    headers = INVALID_TOKEN_HEADERS

    PUBLIC_DESCRIPTION = "The access token is invalid or has expired."

    def __init__(self, reason: str) -> None:
        super().__init__(self.PUBLIC_DESCRIPTION, log_detail=reason)
        self.reason = reason


class MissingToken(GatewayError):
    status = 401
    error = "invalid_request"
    title = "Sign-in required"
    headers = MISSING_TOKEN_HEADERS


class SignInRequired(GatewayError):
    """A page of the signed-in user's own (their sessions), asked for without a session."""

    status = 401
    error = "login_required"
    title = "Sign-in required"
    retry_label = "Sign in"

    def __init__(self, description: str = "Sign in to manage your sessions.") -> None:
        super().__init__(description, retry_url="/login", log_detail="no live session")


class LoginFailed(GatewayError):
    """The login transaction cannot be completed (state missing, expired, replayed...)."""

    status = 400
    error = "login_failed"
    title = "Sign-in could not be completed"
    outcome = "invalid_state"


class AccessDenied(GatewayError):
    """The user declined at the provider."""

    status = 403
    error = "access_denied"
    title = "Sign-in was cancelled"
    outcome = "denied"


class NotPermitted(GatewayError):
    """The user signed in at the provider, but the `[access]` policy does not let them in."""

    status = 403
    error = "access_denied"
    title = "This account may not sign in here"
    retry_label = "Sign in with another account"
    outcome = "not_permitted"

    PUBLIC_DESCRIPTION = ("This account is not allowed to sign in to this site. Sign in with "
                          "another account, or ask the site's administrators for access.")

    def __init__(self, sub: str) -> None:
        super().__init__(self.PUBLIC_DESCRIPTION, log_detail=f"access policy refused sub={sub}")


class UpstreamError(GatewayError):
    """The identity provider failed or answered something we cannot use."""

    status = 502
    error = "upstream_error"
    title = "The sign-in provider did not answer correctly"
    outcome = "upstream_error"

    def __init__(
        self,
        description: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        status: int | None = None,
        log_detail: str = "",
    ) -> None:
        super().__init__(description, status=status, log_detail=log_detail)
        self.provider: str = provider
        self.upstream_status = upstream_status


def unverifiable_answer(provider: str, detail: str) -> UpstreamError:
    """A provider's answer that failed our checks: the same public message whatever failed
    (the detail is for our log only)."""
    return UpstreamError("The sign-in provider's answer could not be verified. Please try again.",
                         provider=provider, log_detail=detail)


class UpstreamTimeout(UpstreamError):
    status = 504
    error = "upstream_timeout"
    title = "The sign-in provider took too long to answer"
    outcome = "upstream_timeout"


class ProviderUnavailable(UpstreamError):
    """A provider's OpenID Connect discovery failed (unreachable, or a document we refuse): no
    login can start or finish through it until it is back; the user may retry later."""

    status = 503
    error = "temporarily_unavailable"
    title = "The sign-in provider is unavailable"
    outcome = "upstream_error"


class Unavailable(GatewayError):
    """The gateway cannot serve this now (its store is full or down); the client may retry."""

    status = 503
    error = "temporarily_unavailable"
    title = "Sign-in is temporarily unavailable"
    outcome = "unavailable"


class RateLimited(GatewayError):
    """SECURITY H5: this client sent too many requests to a route group; 429 with
    `Retry-After` (RFC 6585 section 4)."""

    status = 429
    error = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, *, log_detail: str = "",
                 description: str = "Too many requests. Please wait a moment and try again."
                 ) -> None:
        super().__init__(description, log_detail=log_detail)
        self.retry_after = retry_after

    def response_headers(self) -> Headers:
        return (("Retry-After", str(int(self.retry_after))),)  # RFC 6585 4


class InvalidClient(GatewayError):
    """Client authentication failed at the token, revocation or introspection endpoint
    (RFC 6749 5.2): 401 with `WWW-Authenticate: Basic`. Every refusal reads the same."""

    status = 401
    error = "invalid_client"
    title = "Client authentication failed"
    headers = INVALID_CLIENT_HEADERS

    PUBLIC_DESCRIPTION = "Client authentication failed."

    def __init__(self, reason: str) -> None:
        super().__init__(self.PUBLIC_DESCRIPTION, log_detail=reason)


class InvalidGrant(GatewayError):
    """RFC 6749 5.2: the code or refresh token is invalid, expired, revoked, used, or was
    issued to another client. One public description for all of these (no oracle)."""

    status = 400
    error = "invalid_grant"
    title = "Invalid grant"

    PUBLIC_DESCRIPTION = ("The authorization code or refresh token is invalid, expired, revoked, "
                          "or was issued to another client.")

    def __init__(self, reason: str, description: str = PUBLIC_DESCRIPTION) -> None:
        super().__init__(description, log_detail=reason)


class InvalidScope(GatewayError):
    status = 400
    error = "invalid_scope"
    title = "Invalid scope"


class UnsupportedGrantType(GatewayError):
    status = 400
    error = "unsupported_grant_type"
    title = "Unsupported grant type"


class AuthorizationRedirect(GatewayError):
    """An authorization request refused back to the client (RFC 6749 4.1.2.1): a 302 to its
    registered `redirect_uri` with `error`, `state` and `iss`. Raised only once the client and
    its redirect_uri are known to be registered (SECURITY R3); `location` is complete."""

    status = 302
    title = "Authorization refused"

    def __init__(self, error: str, description: str, *, location: str,
                 log_detail: str = "") -> None:
        super().__init__(description, error=error, log_detail=log_detail)
        self.location = location

    def login_outcome(self) -> str:
        # Sent back to the app: counted as the error that caused it.
        if isinstance(self.__cause__, GatewayError):
            return self.__cause__.login_outcome()
        return super().login_outcome()


class StoreError(Exception):
    """The store failed. Its message is for our logs only; clients get `public_error`'s 503."""


class StoreFull(StoreError):
    """The store refuses new entries to bound memory (a flood of unfinished logins)."""


class StoreUnavailable(StoreError):
    """The storage cannot serve the request now (Redis down, database file unusable)."""


STORE_UNAVAILABLE_TEXT = "The gateway's storage is unavailable. Please try again shortly."
STORE_FULL_TEXT = "Too many sign-ins are in progress. Please try again in a minute."


def public_error(exception: BaseException) -> GatewayError | None:
    """What a client is told of `exception`; None for an unexpected one (a bug: a 500)."""
    if isinstance(exception, GatewayError):
        return exception
    if isinstance(exception, StoreUnavailable):
        # SECURITY H9: fail closed with a clear 503; the cause stays in our log.
        return Unavailable(STORE_UNAVAILABLE_TEXT)
    if isinstance(exception, StoreFull):
        return Unavailable(STORE_FULL_TEXT)
    return None


def login_outcome(exception: BaseException) -> str:
    """How a failed login ended, as a metrics label: denied, invalid_state, upstream_error..."""
    error = public_error(exception)
    return error.login_outcome() if error is not None else "error"


# The exit status of a process that refuses its configuration (the CLI, a worker process).
EXIT_CONFIG_ERROR = 2


class ConfigError(Exception):
    """A configuration value is missing or wrong. Its message is one line naming the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
