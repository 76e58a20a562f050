"""Builds the Tornado application: shared objects, routes and settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.httputil
import tornado.web
from tornado.routing import PathMatches, Rule

from gateway.access import AccessPolicy
from gateway.config import Settings
from gateway.context import GatewayContext
from gateway.cookies import XSRF, CookiePolicy, versioned_secrets
from gateway.fast_route import FAST_ROUTES_SETTING
from gateway.handlers.account import EndOtherSessionsHandler, EndSessionOfUserHandler
from gateway.handlers.admin import AdminSessionsHandler
from gateway.handlers.authorize import AuthorizeHandler, AuthorizeResumeHandler
from gateway.handlers.base import (
    REFUSAL_LINES_PER_SECOND,
    Edge,
    NotFoundHandler,
    security_headers,
)
from gateway.handlers.demo import DEMO_CALLBACK_PATH, DemoCallbackHandler, DemoStartHandler
from gateway.handlers.end_session import EndSessionHandler
from gateway.handlers.forward_auth import ForwardAuthRoute
from gateway.handlers.login import CallbackHandler, FormPostCallbackHandler, LoginHandler
from gateway.handlers.ops import HealthHandler, MetricsHandler, ReadyHandler
from gateway.handlers.pages import (
    ChooserHandler,
    HomeHandler,
    LogoutHandler,
    UnknownProviderHandler,
)
from gateway.handlers.token import (
    IntrospectHandler,
    RevokeHandler,
    TokenHandler,
    UserinfoHandler,
)
from gateway.handlers.verify import VerifyRoute
from gateway.handlers.wellknown import JwksHandler, OpenIdConfigurationHandler
from gateway.inflight import InFlightRequests
from gateway.keys import KeySet
from gateway.logs import AccessLog, LogBudget
from gateway.metrics import GatewayMetrics
from gateway.pending import PendingCaps
from gateway.providers import enabled_providers
from gateway.providers.base import FormPostConnector
from gateway.proxies import parse_trusted
from gateway.ratelimits import Limit, RateLimiter
from gateway.redirects import parse_allowlist
from gateway.sessions import Sessions
from gateway.store import Store
from gateway.store.factory import open_store
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier, audiences
from gateway.upstream.client import Upstream, make_http_client

PACKAGE_DIR = Path(__file__).parent


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
    metrics = GatewayMetrics()  # this gateway's own registry: never the module-global one
    tracing = None
    if settings.tracing.otlp_endpoint:
        from gateway.tracing import open_tracing  # the `tracing` extra (config/validation.py)

        tracing = open_tracing(settings.tracing)
    upstream = Upstream(make_http_client(settings.upstream), settings.upstream, metrics,
                        tracing)
    # The gateway's own origin is always a safe place to land (its pages, e.g. the demo page);
    # development mode adds apps on loopback, any port (redirects.DEV_LOOPBACK_RETURNS).
    allowed = parse_allowlist([f"{settings.issuer}/", *settings.login.allowed_return_urls],
                              dev_loopback=settings.dev_mode)
    return GatewayContext(
        settings=settings,
        keyset=keyset,
        store=store,
        issuer=TokenIssuer(keyset, policy, clock=clock),
        verifier=TokenVerifier(keyset, policy, clock=clock,
                               cache_bytes=settings.tokens.verified_cache_mb * 2**20),
        sessions=Sessions(store, lifetime=settings.cookies.session_lifetime,
                          idle_timeout=settings.cookies.session_idle_timeout, clock=clock),
        cookies=CookiePolicy(settings.cookies),
        allowed_returns=allowed,
        access=AccessPolicy.from_settings(settings.access),
        providers={p.name: p for p in enabled_providers(settings, upstream, store)},
        clock=clock,
        metrics=metrics,
        pending_caps=PendingCaps(store, per_client=settings.login.max_pending_per_client,
                                 lifetime=settings.login.transaction_lifetime, clock=clock)
        if enforces_limits(settings) else None,
        tracing=tracing,
    )


def enforces_limits(settings: Settings) -> bool:
    """Rate limits (H5) and per-client caps (H10) hold, except in development mode unless
    asked for (the benchmarks run in development mode)."""
    return not settings.dev_mode or settings.rate_limits.enforce_in_dev_mode


def provider_routes(ctx: GatewayContext) -> list[Any]:
    """/login/<name> and /callback/<name> of each enabled provider."""
    routes: list[Any] = []
    for connector in ctx.providers.values():
        kwargs = {"ctx": ctx, "connector": connector}
        routes.append((rf"/login/{connector.name}", LoginHandler, kwargs))
        # SECURITY C8: a POST callback (and its XSRF exemption) only for a form_post provider.
        callback = (FormPostCallbackHandler if isinstance(connector, FormPostConnector)
                    else CallbackHandler)
        routes.append((rf"/callback/{connector.name}", callback, kwargs))
    return routes


def make_app(ctx: GatewayContext) -> tornado.web.Application:
    settings = ctx.settings
    verify_route, forward_auth_route = VerifyRoute(ctx), ForwardAuthRoute(ctx)
    routes: list[Any] = [
        # First (rules are tried in order), and Routers: a valid token is answered below the
        # RequestHandler (gateway/fast_route.py).
        Rule(PathMatches(r"/verify"), verify_route),
        Rule(PathMatches(r"/auth"), forward_auth_route),
        # Then the logins, each a pair of requests, before the pages and OpenID Connect: a
        # route is found by trying the patterns in order, a regex each.
        *provider_routes(ctx),
        (r"/", HomeHandler, {"ctx": ctx}),
        (r"/login", ChooserHandler, {"ctx": ctx}),
        (r"/logout", LogoutHandler, {"ctx": ctx}),
        (r"/account/sessions/end", EndSessionOfUserHandler, {"ctx": ctx}),
        (r"/account/sessions/end-others", EndOtherSessionsHandler, {"ctx": ctx}),
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
    if settings.admin.expose_on_public:
        # SECURITY D3: metrics belong on the admin listener; this is an explicit opt-in.
        routes.append((r"/metrics", MetricsHandler, {"ctx": ctx}))
    if settings.dev_mode:
        routes.append((r"/demo/oidc", DemoStartHandler, {"ctx": ctx}))
        routes.append((DEMO_CALLBACK_PATH, DemoCallbackHandler, {"ctx": ctx}))
    # After the enabled providers: any other name is a clear 404, not the generic one.
    routes.append((r"/(?:login|callback)/[^/]*", UnknownProviderHandler))
    cookie_secret, key_version = versioned_secrets(settings.cookies)
    route_names = routes_by_handler(routes)
    access = AccessLog(ctx.metrics, route_names,
                       log_check_requests=settings.logging.check_requests)
    application = tornado.web.Application(
        routes,
        gateway_edge=edge(ctx, route_names),  # handlers/base.py EDGE_SETTING
        default_handler_class=NotFoundHandler,
        template_path=str(PACKAGE_DIR / "templates"),
        static_path=str(PACKAGE_DIR / "static"),
        autoescape="xhtml_escape",
        # SECURITY K5/P3: a dict of versions; previous secrets verify, the current one signs.
        cookie_secret=cookie_secret,
        key_version=key_version,
        xsrf_cookies=True,
        xsrf_cookie_name=ctx.cookies.name(XSRF),
        xsrf_cookie_kwargs={"httponly": True, "secure": settings.cookies.secure,
                            "samesite": "Strict", "path": "/"},
        log_function=access,
        compress_response=False,
        serve_traceback=False,
        debug=False,
    )
    verify_route.attach(application, access)
    forward_auth_route.attach(application, access)
    application.settings[FAST_ROUTES_SETTING] = {route.route: route for route in (
        verify_route, forward_auth_route)}
    return application


def edge(ctx: GatewayContext, routes: dict[type[Any], str]) -> Edge:
    """What every handler needs about the edge: trusted proxies (H3), HSTS (H2), rate limits
    (H5), the security headers (with the pages' CSP), the routes' names, the requests in
    flight."""
    settings = ctx.settings
    limits = settings.rate_limits
    enforce = enforces_limits(settings)
    limiter = RateLimiter(ctx.store, {
        "login": Limit(limits.login_requests, limits.login_window),
        "token": Limit(limits.token_requests, limits.token_window),
        "verify": Limit(limits.verify_requests, limits.verify_window),
    }, verify_shared=limits.verify_shared, clock=ctx.clock) if enforce else None
    return Edge(
        routes=routes,
        trusted_proxies=parse_trusted(settings.proxy.trusted),
        # The issuer's scheme says whether clients reach us over TLS (usually via a proxy).
        hsts=settings.issuer.startswith("https://"),
        rate_limiter=limiter,
        refusal_log=LogBudget(REFUSAL_LINES_PER_SECOND),
        security_headers=security_headers(
            settings.dev.image_origins if settings.dev_mode else ()),
        inflight=InFlightRequests(),
        tracing=ctx.tracing,
    )


def make_admin_app(ctx: GatewayContext) -> tornado.web.Application:
    """The admin listener's application: `/metrics` and the sessions API (server.py serves it
    on its own address and port, loopback by default)."""
    routes: list[Any] = [(r"/metrics", MetricsHandler, {"ctx": ctx}),
                         (r"/admin/sessions", AdminSessionsHandler, {"ctx": ctx})]
    route_names = routes_by_handler(routes)
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        template_path=str(PACKAGE_DIR / "templates"),
        log_function=AccessLog(None, route_names),
        gateway_edge=Edge(routes=route_names),
        compress_response=False,
        serve_traceback=False,
        debug=False,
    )


def routes_by_handler(routes: list[Any]) -> dict[type[Any], str]:
    r"""Handler class -> the route pattern it serves, readable (r"/\.well-known" becomes
    "/.well-known"): what logs and metrics name a request by, never its path."""
    names: dict[type[Any], str] = {NotFoundHandler: "unmatched"}
    for router in (VerifyRoute, ForwardAuthRoute):  # the Routers' handlers
        names[router.handler_class] = router.route
    for route in routes:
        if isinstance(route, tuple):
            names.setdefault(route[1], route[0].replace("\\", ""))
    return names
