"""The downstream SDK: verify the gateway's access tokens in your own Python app.

    verifier = GatewayVerifier("https://login.example.com", "https://login.example.com")
    claims = verifier.verify(token)            # or: await verifier.averify(token)

The keys come from the gateway's published JWKS (found through its OpenID configuration, or
`jwks_url=`), are cached for `cache_seconds`, and fetched again at most once per
`refresh_cooldown` when a token names an unknown `kid` (the gateway rotated its key). A token is
accepted only when signed with the algorithm its key lists in the JWKS (never `none`, never
HMAC), with the header `typ: at+jwt` (never an ID token), and valid `iss`, `aud`, `exp`, `nbf`
and `iat` (RFC 8725, RFC 9068). Every refusal raises `TokenRejected`.

For Tornado apps, `GatewayAuthMixin` makes `@tornado.web.authenticated` send strangers to the
gateway's login page and gives handlers the verified claims as `self.current_user`. API clients
(a request with an `Authorization` header, or whose `Accept` ranks JSON above HTML) get a 401
with a `WWW-Authenticate: Bearer` challenge and a JSON body instead of the redirect (RFC 6750 3).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
import tornado.escape
import tornado.web

from gateway import jose
from gateway.jose import KID_PATTERN, JoseError

log = logging.getLogger("gateway.client")

ACCESS_TOKEN_TYPE = "at+jwt"
# Asymmetric algorithms only: an HMAC "key" taken from a JWKS would be a public value (RFC 8725
# 2.1 and 3.1: algorithm confusion); `none` is no algorithm.
ACCEPTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                 "ES256", "ES384", "ES512", "EdDSA"})
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})  # no jku, x5u, jwk, crit (RFC 8725 3.10)
MAX_TOKEN_LENGTH = 8192
MAX_DOCUMENT_BYTES = 1_048_576
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat")
ACCESS_COOKIES = ("__Host-gw_access", "gw_access")  # the gateway's access cookie, either form
DEFAULT_TIMEOUT = httpx.Timeout(5.0)
INVALID_TOKEN_DESCRIPTION = "The access token is invalid or has expired."
MISSING_TOKEN_DESCRIPTION = "Sign-in required: send Authorization: Bearer <access token>."
# What may appear inside a quoted challenge parameter (RFC 9110 11.2, quoted-string) unescaped.
_QUOTABLE = re.compile(r"[ !#-\[\]-~]*")


class TokenRejected(Exception):
    """The token is not a valid access token of this gateway for this audience. `reason` is for
    your logs; show your users only that they need to sign in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayUnavailable(TokenRejected):
    """The gateway's keys could not be fetched: nothing can be verified (fail closed)."""


class GatewayVerifier:
    """Verifies the gateway's access JWTs locally against its published keys.

    `http` is an `httpx.Client` (for `verify`) or `httpx.AsyncClient` (for `averify`); without
    one, a client with a 5 s timeout is created when first needed (`close`/`aclose` end it).
    """

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None,
                 http: httpx.Client | httpx.AsyncClient | None = None,
                 cache_seconds: float = 300, refresh_cooldown: float = 60, leeway: float = 30,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self._sync_http = http if isinstance(http, httpx.Client) else None
        self._async_http = http if isinstance(http, httpx.AsyncClient) else None
        self._owned: list[httpx.Client | httpx.AsyncClient] = []
        self._cache_seconds = cache_seconds
        self._cooldown = refresh_cooldown
        self._leeway = leeway
        self._clock = clock
        self._keys: dict[str, tuple[jwt.PyJWK, str]] = {}
        self._fetched_at: float | None = None  # when the keys were last fetched successfully
        self._attempted_at: float | None = None  # when a fetch was last started
        self._refetched_at: float | None = None  # when an unknown kid last caused a fetch
        self.fetch_count = 0  # JWKS fetches so far (for metrics and tests)
        self._lock = threading.Lock()
        self._inflight: asyncio.Future[None] | None = None

    # -- the two entry points --------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; raises `TokenRejected` otherwise."""
        kid, alg = _checked_header(token)
        with self._lock:  # threads arriving during a fetch wait for its keys
            if self._needs_fetch(kid):
                self._fetch_sync()
        return self._decode(token, kid, alg)

    async def averify(self, token: str) -> dict[str, Any]:
        """`verify` for asyncio apps: key fetches never block the event loop, and requests
        arriving while keys are being fetched wait for that one fetch."""
        kid, alg = _checked_header(token)
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        elif self._needs_fetch(kid):
            self._inflight = asyncio.ensure_future(self._fetch_async())
            try:
                await asyncio.shield(self._inflight)
            finally:
                self._inflight = None
        return self._decode(token, kid, alg)

    def close(self) -> None:
        for client in self._owned:
            if isinstance(client, httpx.Client):
                client.close()

    async def aclose(self) -> None:
        for client in self._owned:
            if isinstance(client, httpx.AsyncClient):
                await client.aclose()

    # -- keys ------------------------------------------------------------------------------

    def _needs_fetch(self, kid: str) -> bool:
        now = self._clock()
        # Tokens with made-up kids cannot make us hammer the gateway, and a failing gateway is
        # asked again only after the cooldown.
        cooled = self._attempted_at is None or now - self._attempted_at >= self._cooldown
        if self._fetched_at is None or now - self._fetched_at >= self._cache_seconds:
            return cooled  # never fetched, or the cached keys are stale
        if kid in self._keys:
            return False
        # Unknown kid: the gateway may have rotated its key. Once per cooldown at most.
        if self._refetched_at is not None and now - self._refetched_at < self._cooldown:
            return False
        self._refetched_at = now
        return True

    def _start_fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetch_count += 1

    def _fetch_sync(self) -> None:
        self._start_fetch()
        try:
            self._jwks_url = self._jwks_url or _jwks_uri(
                self._get_sync(f"{self.issuer}/.well-known/openid-configuration"), self.issuer)
            self._install(self._get_sync(self._jwks_url))
        except (httpx.HTTPError, ValueError) as e:
            self._fetch_failed(e)

    async def _fetch_async(self) -> None:
        self._start_fetch()
        try:
            self._jwks_url = self._jwks_url or _jwks_uri(
                await self._get_async(f"{self.issuer}/.well-known/openid-configuration"),
                self.issuer)
            self._install(await self._get_async(self._jwks_url))
        except (httpx.HTTPError, ValueError) as e:
            self._fetch_failed(e)

    def _fetch_failed(self, error: Exception) -> None:
        # Keys fetched before stay usable (a key is published long before and after it signs);
        # without any, nothing verifies.
        log.warning("gateway keys could not be fetched: %s", error)
        if not self._keys:
            raise GatewayUnavailable(f"keys unavailable: {type(error).__name__}") from None

    def _install(self, jwks: dict[str, Any]) -> None:
        keys: dict[str, tuple[jwt.PyJWK, str]] = {}
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise ValueError("JWKS without a keys list")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kid, alg = entry.get("kid"), entry.get("alg")
            if entry.get("use", "sig") != "sig" or alg not in ACCEPTED_ALGORITHMS \
                    or not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
                continue  # only signing keys with an accepted algorithm named by the JWKS
            try:
                keys[kid] = (jwt.PyJWK(entry, algorithm=alg), alg)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                log.warning("gateway JWKS: unusable key %s", kid)
        self._keys = keys
        self._fetched_at = self._clock()

    def _get_sync(self, url: str) -> dict[str, Any]:
        if self._sync_http is None:
            self._sync_http = httpx.Client(timeout=DEFAULT_TIMEOUT)
            self._owned.append(self._sync_http)
        return _document(self._sync_http.get(url, headers={"Accept": "application/json"}))

    async def _get_async(self, url: str) -> dict[str, Any]:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)
            self._owned.append(self._async_http)
        response = await self._async_http.get(url, headers={"Accept": "application/json"})
        return _document(response)

    # -- the token -------------------------------------------------------------------------

    def _decode(self, token: str, kid: str, alg: str) -> dict[str, Any]:
        found = self._keys.get(kid)
        if found is None and self._fetched_at is None:
            raise GatewayUnavailable("keys unavailable")
        if found is None:
            raise TokenRejected("unknown kid")
        key, key_alg = found
        if alg != key_alg:
            raise TokenRejected(f"algorithm {alg!r} is not the key's {key_alg!r}")
        try:
            jose.check_signature(token, key)
            claims = jose.unverified_payload(token)
            jose.check_required(claims, REQUIRED_CLAIMS)
            jose.check_iss(claims, (self.issuer,))
            jose.check_aud(claims, (self.audience,))
            jose.check_text(claims, "sub")
            now = self._clock()
            jose.check_exp(claims, now=now, leeway=self._leeway)
            jose.check_nbf(claims, now=now, leeway=self._leeway)
            jose.check_iat(claims, now=now, leeway=self._leeway)
        except JoseError as e:
            raise TokenRejected(str(e)) from None
        return claims


def _checked_header(token: str) -> tuple[str, str]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH \
            or token.count(".") != 2:
        raise TokenRejected("not a compact JWS of a sane size")
    try:
        header = jose.unverified_header(token, max_length=MAX_TOKEN_LENGTH)
        kid = jose.check_header(header, algorithms=ACCEPTED_ALGORITHMS, typ=ACCESS_TOKEN_TYPE,
                                allowed_members=ALLOWED_HEADER_MEMBERS)
    except JoseError as e:
        raise TokenRejected(str(e)) from None
    return kid, str(header["alg"])


def _document(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code} from {response.request.url.path}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ValueError("document too large")
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _jwks_uri(configuration: dict[str, Any], issuer: str) -> str:
    """The `jwks_uri` of the gateway's OpenID configuration, for this issuer only."""
    if configuration.get("issuer") != issuer:
        raise ValueError("the OpenID configuration is for another issuer")
    uri = configuration.get("jwks_uri")
    if not isinstance(uri, str) or urlsplit(uri).scheme not in ("https", "http"):
        raise ValueError("the OpenID configuration has no usable jwks_uri")
    if urlsplit(uri).scheme == "http" and urlsplit(issuer).scheme == "https":
        raise ValueError("jwks_uri downgrades to http")
    return uri


def is_api_request(authorization: str | None, accept: str | None) -> bool:
    """True for an API client rather than a browser: it sent an `Authorization` header (any
    scheme), or its `Accept` header ranks application/json above text/html. A browser's
    `text/html,...,*/*;q=0.8`, `*/*` alone and no `Accept` at all are browsers."""
    if authorization:
        return True
    accept = accept or ""
    # On equal q-values, a type named outright beats one matched by a wildcard: axios's
    # `application/json, text/plain, */*` asks for JSON.
    json_rank = _quality(accept, "application/json")
    return json_rank[0] > 0 and json_rank > _quality(accept, "text/html")


def _quality(accept: str, media_type: str) -> tuple[float, int]:
    """The q-value `accept` gives `media_type` (that of its most specific matching range, RFC
    9110 12.5.1; 0 when none matches), then how specific that range is."""
    family = media_type.split("/")[0]
    specificity, quality = -1, 0.0
    for item in accept.split(","):
        media_range, *parameters = (part.strip() for part in item.split(";"))
        rank = {media_type: 2, f"{family}/*": 1, "*/*": 0}.get(media_range.lower(), -1)
        if rank <= specificity:
            continue
        specificity, quality = rank, 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
    return quality, specificity


def bearer_challenge(realm: str, *, token_refused: bool) -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750 3): `error="invalid_token"` when a token
    was sent and refused; none when the request carried no token (RFC 6750 3.1)."""
    realm = realm if _QUOTABLE.fullmatch(realm) else "gateway"
    challenge = f'Bearer realm="{realm}"'
    return challenge + ', error="invalid_token"' if token_refused else challenge


class GatewayUnauthorized(tornado.web.HTTPError):
    """An API client without a valid access token: a 401 with a Bearer challenge and a JSON
    body (`GatewayAuthMixin.write_error` renders it), where a browser would be redirected."""

    def __init__(self, realm: str, *, token_refused: bool, login_url: str) -> None:
        super().__init__(401, "gateway: %s",
                         "access token refused" if token_refused else "no access token")
        self.challenge = bearer_challenge(realm, token_refused=token_refused)
        self.body: dict[str, str] = {
            # The same members as the gateway's own 401s (its /verify and /auth).
            "error": "invalid_token" if token_refused else "invalid_request",
            "error_description": INVALID_TOKEN_DESCRIPTION if token_refused
            else MISSING_TOKEN_DESCRIPTION,
            "login_url": login_url,
        }


class GatewayAuthMixin(tornado.web.RequestHandler):
    """For Tornado handlers: `self.current_user` is the verified claims of the request's access
    token (`Authorization: Bearer` or the gateway's access cookie), or None; and
    `@tornado.web.authenticated` sends a stranger to the gateway's login page, which brings
    them back to this URL. An API client (`is_api_request`) is answered instead with a 401,
    `WWW-Authenticate: Bearer realm="<issuer>", error="invalid_token"` (no error when it sent
    no token) and a JSON body `{"error", "error_description", "login_url"}`. Tornado's
    `@authenticated` redirects only GET and HEAD: other methods get its 403, as before.

    The verifier comes from the class attribute `gateway_verifier` or the application setting
    of that name. The token is verified in `prepare()` with `averify` (Tornado awaits an async
    `prepare` before the method and its `@authenticated` check), so a key fetch never blocks the
    event loop; a subclass overriding `prepare` calls `await super().prepare()`.
    """

    gateway_verifier: GatewayVerifier | None = None
    gateway_provider: str | None = None  # e.g. "google": skip the gateway's chooser page

    _gateway_claims: dict[str, Any] | None = None
    _gateway_token_refused = False  # a token came and was refused (set in prepare())

    async def prepare(self) -> None:
        result = super().prepare()
        if result is not None:
            await result
        self._gateway_claims = None
        self._gateway_token_refused = False
        token = self.gateway_token()
        if token:
            try:
                self._gateway_claims = await self.verifier().averify(token)
            except GatewayUnavailable:
                raise tornado.web.HTTPError(503, "gateway keys unavailable") from None
            except TokenRejected as e:
                self._gateway_token_refused = True
                log.info("access token refused: %s", e.reason)
        self.current_user = self._gateway_claims

    def get_current_user(self) -> dict[str, Any] | None:
        return self._gateway_claims

    def verifier(self) -> GatewayVerifier:
        verifier = self.gateway_verifier or self.settings.get("gateway_verifier")
        if not isinstance(verifier, GatewayVerifier):
            raise RuntimeError("set gateway_verifier on the handler or the Application")
        return verifier

    def gateway_token(self) -> str | None:
        """The access token of this request: the Bearer header, else the access cookie."""
        scheme, _, value = self.request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        for name in ACCESS_COOKIES:
            cookie = self.get_cookie(name)
            if cookie:
                return cookie
        return None

    def is_api_request(self) -> bool:
        headers = self.request.headers
        return is_api_request(headers.get("Authorization"), headers.get("Accept"))

    def gateway_login_url(self) -> str:
        """The gateway's login page with this URL as `return_to` (it must be in the gateway's
        `login.allowed_return_urls`; `serve --dev` allows any loopback port). It carries a `?`,
        so `@authenticated` adds no `next=`."""
        path = f"/login/{self.gateway_provider}" if self.gateway_provider else "/login"
        query = urlencode({"return_to": self.request.full_url()})
        return f"{self.verifier().issuer}{path}?{query}"

    def get_login_url(self) -> str:
        """Tornado's hook for `@authenticated`: the login page for a browser; for an API client
        it raises `GatewayUnauthorized`, answered as a 401 rather than a redirect."""
        if self.is_api_request():
            raise GatewayUnauthorized(self.verifier().issuer,
                                      token_refused=self._gateway_token_refused,
                                      login_url=self.gateway_login_url())
        return self.gateway_login_url()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if not isinstance(error, GatewayUnauthorized):
            super().write_error(status_code, **kwargs)
            return
        # send_error has cleared the headers: the challenge goes on here.
        self.set_header("WWW-Authenticate", error.challenge)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(tornado.escape.json_encode(error.body))
