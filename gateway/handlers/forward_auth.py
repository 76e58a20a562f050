"""`GET /auth`: forward authentication for reverse proxies (nginx `auth_request`, Traefik
ForwardAuth, Caddy `forward_auth`).

The proxy asks before every request it forwards, with the browser's headers (its cookies, its
`Authorization`). Signed in (a valid access JWT of an accepted audience, or a live gateway
session): 200 with the user in `X-Auth-Request-*` headers. Not signed in, one of two answers:

- status mode: 401, with `X-Auth-Request-Redirect: <gateway>/login?return_to=<original URL>`
  (nginx's `auth_request` takes only 2xx/401/403; its `error_page 401` sends the browser on);
- redirect mode: 302 straight to that login URL (Traefik and Caddy hand a non-2xx answer of the
  auth server to the browser as it is).

`?mode=status` or `?mode=redirect` chooses; without it, a request carrying the
`X-Forwarded-Method` and `X-Forwarded-Uri` headers that Traefik and Caddy send gets the redirect,
any other (nginx) the 401. Redirects only for GET and HEAD: a form post cannot be replayed after
a login.

The original URL (`X-Original-URL`, else `X-Forwarded-Proto` + `-Host` + `-Uri`) is request
input: it only ever becomes a `return_to` of the gateway's own login URL, built from the
configured issuer (SECURITY R5), and only when it passes the `return_to` allowlist (R2); else the
login URL has no `return_to`, and in redirect mode the answer is a 401. No open redirect can be
built from forwarded headers.

Cheap on purpose: a valid access JWT is checked in memory (no store access), and its 200 is
answered below the RequestHandler (`ForwardAuthRoute`); a browser with only its session cookie
costs a session lookup in the store, at most once a second per replica (`Sessions.recent`,
SECURITY T3).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlencode

import tornado.httputil

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidRequest, InvalidToken, MissingToken, NotPermitted
from gateway.fast_route import FastAnswer, FastRoute
from gateway.handlers.base import NO_STORE_HEADERS, BaseHandler
from gateway.redirects import is_allowed_return_to
from gateway.sessions import Session
from gateway.tokens import bearer_token_from_header

log = logging.getLogger("gateway.forward_auth")

MODES = ("status", "redirect")
USER_HEADER = "X-Auth-Request-User"
EMAIL_HEADER = "X-Auth-Request-Email"
NAME_HEADER = "X-Auth-Request-Preferred-Username"
REDIRECT_HEADER = "X-Auth-Request-Redirect"
# Header values we copy from claims: printable ASCII only; anything else is percent-encoded
# (names in any script stay readable with one unquote, and no CR/LF can split a header).
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]|%")


def header_value(text: str) -> str:
    """`text` as a safe header value: percent-encoded UTF-8 where it is not printable ASCII."""
    if not _HEADER_UNSAFE.search(text):
        return text
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def accepted_audiences(ctx: GatewayContext) -> tuple[str, ...]:
    """The audiences of the access tokens that sign a browser in here."""
    return ctx.settings.forward_auth.audiences or (ctx.settings.audience,)


def session_claims(session: Session) -> dict[str, Any]:
    """What a live session says of its user, as an access token's claims would."""
    return {**session.claims, "sub": session.sub, "idp": session.idp,
            "auth_time": int(session.created), "sid": session.sid}


def user_headers(claims: dict[str, Any], token: str | None) -> tuple[tuple[str, str], ...]:
    """The 200's headers naming the user (values made safe by `header_value`), and the access
    token when it is passed on (`pass_token`)."""
    headers = [(USER_HEADER, header_value(str(claims["sub"])))]
    email = claims.get("email")
    if isinstance(email, str) and claims.get("email_verified") is True:
        headers.append((EMAIL_HEADER, header_value(email)))
    name = claims.get("name")
    if isinstance(name, str) and name:
        headers.append((NAME_HEADER, header_value(name)))
    if token is not None:  # a JWS compact serialization: base64url and dots
        headers.append(("Authorization", f"Bearer {token}"))
    return tuple(headers)


class ForwardAuthHandler(BaseHandler):
    """GET (or HEAD) /auth: 200 with the user's headers, or 401 / 302 to the login page."""

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.login_url: str | None = None

    async def get(self) -> None:
        ctx = self.ctx
        mode = self.single_argument("mode", required=False)
        if mode is not None and mode not in MODES:
            raise InvalidRequest("The parameter 'mode' must be 'status' or 'redirect'.")
        self.set_no_store()
        claims, token = await self._signed_in()
        if claims is not None:
            # Checked on every request: a policy narrowed since the user signed in applies at
            # once (after a restart), not when their session ends.
            if ctx.access.refuses_signed_in(str(claims["sub"]), claims):
                raise NotPermitted(str(claims["sub"]))
            self._allow(claims, token)
            return
        return_to = self._return_to()
        query = f"?{urlencode({'return_to': return_to})}" if return_to else ""
        self.login_url = f"{ctx.settings.issuer}/login{query}"
        if return_to and self._redirects(mode):
            self.redirect(self.login_url, status=302)
            return
        raise MissingToken("Sign-in required.", log_detail="forward auth: not signed in")

    def _return_to(self) -> str | None:
        """The original URL, when it passes the return_to allowlist (SECURITY R2)."""
        original = self._original_url()
        if original and is_allowed_return_to(original, self.ctx.allowed_returns):
            return original
        if original:
            log.info("forward auth: original URL not in the return_to allowlist")
        return None

    def _redirects(self, mode: str | None) -> bool:
        """Whether a stranger gets a 302 to the login page (Traefik, Caddy) rather than a 401
        (nginx): `mode`, or the headers those proxies send; GET and HEAD only (a form post
        cannot be replayed after a login)."""
        headers = self.request.headers
        if mode is None:
            forwarded = "X-Forwarded-Method" in headers and "X-Forwarded-Uri" in headers
            mode = "redirect" if forwarded else "status"
        method = headers.get("X-Forwarded-Method", self.request.method or "GET")
        return mode == "redirect" and method.upper() in ("GET", "HEAD")

    head = get

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # send_error has cleared our headers: the login URL is added back for nginx's
        # `auth_request_set` (it reads the 401's headers too).
        exception = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        if isinstance(exception, MissingToken) and self.login_url:
            self.set_header(REDIRECT_HEADER, self.login_url)
        super().write_error(status_code, **kwargs)

    async def _signed_in(self) -> tuple[dict[str, Any] | None, str | None]:
        """The claims (and the access JWT, if any) of whoever sent this request, else None."""
        ctx = self.ctx
        candidates = [bearer_token_from_header(self.request.headers.get("Authorization")),
                      ctx.cookies.read(self, cookies.ACCESS, shared=True)]
        for token in candidates:
            if not token:
                continue
            try:
                claims = ctx.verifier.verify(token)
            except InvalidToken as e:
                log.debug("forward auth: token refused (%s)", e.reason)
                continue
            if claims.get("aud") not in accepted_audiences(ctx):
                log.debug("forward auth: token of another audience")
                continue
            # SECURITY T6: as /verify, the store is asked only when configured to; otherwise
            # the common case stays in memory.
            if ctx.settings.tokens.verify_checks_revocation \
                    and await ctx.grants.access_token_revoked(claims):
                log.debug("forward auth: revoked token")
                continue
            return claims, token
        session_id = ctx.cookies.read_session_id(self)
        if not session_id:
            return None, None
        session = await ctx.sessions.lookup(session_id)
        if session is None:
            return None, None
        return session_claims(session), None

    def _allow(self, claims: dict[str, Any], token: str | None) -> None:
        ctx = self.ctx
        if ctx.settings.forward_auth.pass_token and token is None:
            # A live session without a (valid) access cookie: a fresh token for it.
            profile = {k: v for k, v in claims.items() if k != "sub"}
            token = ctx.issuer.issue(claims["sub"], ctx.settings.audience, profile,
                                     auth_time=claims.get("auth_time"))
        self.put_headers(user_headers(claims, token if ctx.settings.forward_auth.pass_token
                                      else None))
        self.set_status(200)
        self.finish()

    def _original_url(self) -> str | None:
        """The URL the browser asked the proxy for, as the proxy reports it."""
        headers = self.request.headers
        original = headers.get("X-Original-URL")
        if original:
            return original
        proto = headers.get("X-Forwarded-Proto")
        host = headers.get("X-Forwarded-Host")
        uri = headers.get("X-Forwarded-Uri")
        if proto and host and uri and uri.startswith("/"):
            return f"{proto}://{host}{uri}"
        return None


class ForwardAuthRoute(FastRoute):
    """The target of the `/auth` rule (gateway/fast_route.py): a request with a valid access
    JWT of an accepted audience (Bearer header, else the access cookie), or else a session this
    replica found live less than a second ago (`Sessions.recent`), whom the policy admits, gets
    its 200 here, exactly as ForwardAuthHandler sends it. Everything else goes to the handler:
    a session to look up in the store, no one signed in (the login URL), a refusal, a
    revocation check the store must answer (`verify_checks_revocation`, unless this replica
    had the answer less than a second ago), a token to mint for a session (`pass_token`), a
    body, another method, an unknown `mode`."""

    route = "/auth"
    handler_class = ForwardAuthHandler

    def __init__(self, ctx: GatewayContext) -> None:
        super().__init__(ctx)
        self.access_cookie = ctx.cookies.name(cookies.ACCESS, shared=True)

    def find_handler(self, request: tornado.httputil.HTTPServerRequest,
                     **kwargs: Any) -> tornado.httputil.HTTPMessageDelegate:
        if not self.without_body(request, ("GET", "HEAD")) or not _known_mode(request):
            return self.to_handler(request)
        try:
            headers = self._signed_in_headers(request)
        except Exception:  # a bug: the handler answers it, as a logged 500
            log.debug("forward auth: fast path failed", exc_info=True)
            headers = None
        if headers is None:
            return self.to_handler(request)
        return FastAnswer(self, request, headers)

    def _signed_in_headers(self, request: tornado.httputil.HTTPServerRequest
                           ) -> tuple[tuple[str, str], ...] | None:
        """ForwardAuthHandler's 200 headers for the first valid token, else None."""
        ctx = self.ctx
        # As the handler reads them (`request.cookies`): parse_cookie unquotes once,
        # SimpleCookie a second time, which changes only a value that is still quoted, and
        # neither a JWS nor a signed value is.
        header = request.headers.get("Cookie")
        cookies = tornado.httputil.parse_cookie(header) if header else {}
        for token in (bearer_token_from_header(request.headers.get("Authorization")),
                      cookies.get(self.access_cookie)):
            if not token:
                continue
            try:
                claims = ctx.verifier.verify(token)
            except InvalidToken:
                continue
            if claims.get("aud") not in accepted_audiences(ctx):
                continue
            if ctx.settings.tokens.verify_checks_revocation \
                    and not ctx.grants.recently_not_revoked(claims):
                return None  # the store is the handler's to ask
            return self._allowed(claims, token)
        if ctx.settings.forward_auth.pass_token or not cookies:
            return None
        assert self.application is not None
        session_id = ctx.cookies.session_id_from(cookies,
                                                 self.application.settings["cookie_secret"])
        session = ctx.sessions.recent(session_id) if session_id else None
        return self._allowed(session_claims(session), None) if session is not None else None

    def _allowed(self, claims: dict[str, Any], token: str | None
                 ) -> tuple[tuple[str, str], ...] | None:
        """The 200's headers, unless the policy refuses (the handler's 403)."""
        ctx = self.ctx
        if ctx.access.refuses_signed_in(str(claims["sub"]), claims):
            return None
        passed = token if ctx.settings.forward_auth.pass_token else None
        return (*NO_STORE_HEADERS, *user_headers(claims, passed))


def _known_mode(request: tornado.httputil.HTTPServerRequest) -> bool:
    """No `mode`, or one valid `mode` (any other is the handler's 400)."""
    if not request.query:
        return True
    modes = request.query_arguments.get("mode")
    return modes is None or (len(modes) == 1 and modes[0].decode("latin-1") in MODES)
