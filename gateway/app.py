"""Builds the Tornado application: shared objects, routes and settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web

from gateway.config import Settings
from gateway.context import GatewayContext
from gateway.cookies import CookiePolicy
from gateway.handlers.authorize import AuthorizeHandler, AuthorizeResumeHandler
from gateway.handlers.base import NotFoundHandler
from gateway.handlers.demo import DEMO_CALLBACK_PATH, DemoCallbackHandler, DemoStartHandler
from gateway.handlers.end_session import EndSessionHandler
from gateway.handlers.login import CallbackHandler, LoginHandler
from gateway.handlers.ops import HealthHandler, ReadyHandler
from gateway.handlers.pages import (
    ChooserHandler,
    HomeHandler,
    LogoutHandler,
    UnknownProviderHandler,
)
from gateway.handlers.token import RevokeHandler, TokenHandler, UserinfoHandler
from gateway.handlers.verify import IntrospectHandler, VerifyHandler
from gateway.handlers.wellknown import JwksHandler, OpenIdConfigurationHandler
from gateway.keys import KeySet
from gateway.providers import enabled_providers
from gateway.redirects import parse_allowlist
from gateway.sessions import Sessions
from gateway.store import Store
from gateway.store.factory import open_store
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier, audiences
from gateway.upstream import Upstream, make_http_client

access_log = logging.getLogger("gateway.access")
PACKAGE_DIR = Path(__file__).parent
COOKIE_KEY_VERSION = 1


def build_context(settings: Settings, keyset: KeySet, *, store: Store | None = None,
                  clock: Callable[[], float] = time.time) -> GatewayContext:
    policy = TokenPolicy(
        issuer=settings.issuer,
        # The cookie login's audience and every registered client's (OIDC access tokens).
        audiences=audiences(settings.audience, (c.token_audience for c in settings.clients)),
        lifetime=settings.tokens.access_token_lifetime,
        leeway=settings.tokens.leeway,
    )
    if store is None:  # not `store or ...`: an empty MemoryStore is falsy (it has __len__)
        store = open_store(settings)
    upstream = Upstream(make_http_client(settings.upstream), settings.upstream)
    # The gateway's own origin is always a safe place to land (its pages, e.g. the demo page).
    allowed = parse_allowlist([f"{settings.issuer}/", *settings.login.allowed_return_urls])
    return GatewayContext(
        settings=settings,
        keyset=keyset,
        store=store,
        issuer=TokenIssuer(keyset, policy, clock=clock),
        verifier=TokenVerifier(keyset, policy, clock=clock),
        sessions=Sessions(store, lifetime=settings.cookies.session_lifetime,
                          idle_timeout=settings.cookies.session_idle_timeout, clock=clock),
        cookies=CookiePolicy(settings.cookies),
        allowed_returns=allowed,
        providers={p.name: p for p in enabled_providers(settings, upstream)},
        clock=clock,
    )


def make_app(ctx: GatewayContext) -> tornado.web.Application:
    settings = ctx.settings
    routes: list[Any] = [
        (r"/", HomeHandler, {"ctx": ctx}),
        (r"/login", ChooserHandler, {"ctx": ctx}),
        (r"/logout", LogoutHandler, {"ctx": ctx}),
        (r"/verify", VerifyHandler, {"ctx": ctx}),
        (r"/introspect", IntrospectHandler, {"ctx": ctx}),
        (r"/authorize", AuthorizeHandler, {"ctx": ctx}),
        (r"/authorize/resume", AuthorizeResumeHandler, {"ctx": ctx}),
        (r"/token", TokenHandler, {"ctx": ctx}),
        (r"/userinfo", UserinfoHandler, {"ctx": ctx}),
        (r"/revoke", RevokeHandler, {"ctx": ctx}),
        (r"/logout/oidc", EndSessionHandler, {"ctx": ctx}),
        (r"/\.well-known/jwks\.json", JwksHandler, {"ctx": ctx}),
        (r"/\.well-known/openid-configuration", OpenIdConfigurationHandler, {"ctx": ctx}),
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler, {"ctx": ctx}),
    ]
    if settings.dev_mode:
        routes.append((r"/demo/oidc", DemoStartHandler, {"ctx": ctx}))
        routes.append((DEMO_CALLBACK_PATH, DemoCallbackHandler, {"ctx": ctx}))
    for p in ctx.providers.values():
        # The provider's login mixin (with its tornado.auth mixin) first in the MRO.
        login = type(f"{p.name.title()}LoginHandler", (p.login_mixin, LoginHandler), {})
        callback = type(f"{p.name.title()}CallbackHandler", (p.login_mixin, CallbackHandler), {})
        kwargs = {"ctx": ctx, "provider": p.provider}
        routes.append((rf"/login/{p.name}", login, kwargs))
        routes.append((rf"/callback/{p.name}", callback, kwargs))
    # After the enabled providers: any other name is a clear 404, not the generic one.
    routes.append((r"/(?:login|callback)/[^/]*", UnknownProviderHandler))
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        template_path=str(PACKAGE_DIR / "templates"),
        static_path=str(PACKAGE_DIR / "static"),
        autoescape="xhtml_escape",
        # SECURITY K5: a dict of versions, so a new secret can be added without logging out.
        cookie_secret={COOKIE_KEY_VERSION: settings.cookies.secret.reveal()},
        key_version=COOKIE_KEY_VERSION,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "secure": settings.cookies.secure,
                            "samesite": "Strict", "path": "/"},
        log_function=log_request,
        compress_response=False,
        serve_traceback=False,
        debug=False,
    )


def log_request(handler: tornado.web.RequestHandler) -> None:
    """SECURITY L1: Tornado's default access log prints the full URI, `?code=&state=`
    included. We log the path only."""
    request = handler.request
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.ERROR
    access_log.log(level, "%s %s %d %.1fms", request.method, request.path, status,
                   1000.0 * request.request_time())
