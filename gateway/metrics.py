"""The gateway's Prometheus metrics, in a registry of its own per application.

No metric lives in `prometheus_client`'s module-global default registry: tests start many
gateways in one process, and each must count only its own requests. Every label value comes
from a bounded set (route patterns, provider names, outcome and reason words): never a raw
path, a parameter or a token, which would both leak input and grow the series without bound.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

# The classic text format, which every Prometheus version scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Seconds; the gateway answers /verify in well under a millisecond and a login in a few
# hundred, so the buckets span both.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_KINDS = ("access", "id", "refresh")
# InvalidToken reasons (gateway/tokens.py, handlers) as a bounded label set: the first match.
REFUSAL_REASONS: tuple[tuple[str, str], ...] = (
    ("expired", "expired"),
    ("not yet valid", "not_yet_valid"),
    ("issued in the future", "issued_in_future"),
    ("lifetime longer", "lifetime_too_long"),
    ("bad jti", "bad_jti"),
    ("bad signature", "bad_signature"),
    ("wrong audience", "wrong_audience"),
    ("wrong issuer", "wrong_issuer"),
    ("missing claim", "missing_claim"),
    ("unknown kid", "unknown_kid"),
    ("missing or malformed kid", "malformed_kid"),
    ("algorithm", "algorithm"),
    ("typ ", "wrong_typ"),
    ("forbidden header", "forbidden_header"),
    ("empty or oversized", "oversized"),
    ("not a JWS", "malformed"),
    ("malformed", "malformed"),
    ("revoked", "revoked"),
    ("NumericDate", "bad_time_claim"),
)
UPSTREAM_CALL = re.compile(r"[a-z][a-z0-9_/]{0,31}")


def refusal_reason(reason: str) -> str:
    """The bounded label of an `InvalidToken` reason (the reason itself stays in the log)."""
    for needle, label in REFUSAL_REASONS:
        if needle in reason:
            return label
    return "other"


class GatewayMetrics:
    """Every metric of one gateway, with the hot path's label children bound in advance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gateway_http_requests", "HTTP requests answered, by route "
                                "pattern, method and status.", ["route", "method", "status"],
                                registry=r)
        self.request_latency = Histogram("gateway_http_request_duration_seconds",
                                         "Time to answer an HTTP request, by route pattern.",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.logins = Counter("gateway_logins", "Upstream logins finished, by provider and "
                              "outcome (success, denied, not_permitted, upstream_error, "
                              "invalid_state...).",
                              ["provider", "outcome"], registry=r)
        self.upstream_latency = Histogram("gateway_upstream_request_duration_seconds",
                                          "Calls to identity providers, by provider and call.",
                                          ["provider", "call"], buckets=UPSTREAM_BUCKETS,
                                          registry=r)
        self.upstream_errors = Counter("gateway_upstream_errors", "Failed calls to identity "
                                       "providers, by provider and call.", ["provider", "call"],
                                       registry=r)
        self.tokens_issued = Counter("gateway_tokens_issued", "Tokens issued, by kind "
                                     "(access, id, refresh).", ["kind"], registry=r)
        self.tokens_verified = Counter("gateway_tokens_verified", "Access tokens accepted, by "
                                       "endpoint.", ["endpoint"], registry=r)
        self.tokens_refused = Counter("gateway_tokens_refused", "Tokens refused, by reason.",
                                      ["reason"], registry=r)
        self.store_errors = Counter("gateway_store_errors", "Requests failed by the store, by "
                                    "kind (unavailable, full).", ["kind"], registry=r)
        self.backchannel_logouts = Counter("gateway_backchannel_logouts", "Back-channel "
                                           "logout tokens sent, by outcome (delivered, failed).",
                                           ["outcome"], registry=r)
        # Bound once: `.labels()` costs a lock and a dict lookup per call.
        self.issued = {kind: self.tokens_issued.labels(kind) for kind in TOKEN_KINDS}
        self.verified_by_verify = self.tokens_verified.labels("verify")
        self.verified_by_introspect = self.tokens_verified.labels("introspect")
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}  # see _child

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (called by the access log, once per request)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            # Bounded: routes are patterns, methods are Tornado's SUPPORTED_METHODS (anything
            # else is a 405 before a handler runs), statuses are HTTP's.
            children = (self.requests.labels(route, method, str(status)),
                        self.request_latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, bound once and kept. Only for bounded label values:
        refusal reasons, configured providers, our own outcomes and call names."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def token_refused(self, reason: str) -> None:
        self._child(self.tokens_refused, refusal_reason(reason)).inc()

    def login(self, provider: str, outcome: str) -> None:
        self._child(self.logins, provider, outcome).inc()

    def upstream_call(self, provider: str, call: str, seconds: float) -> None:
        self._child(self.upstream_latency, provider, _call_label(call)).observe(seconds)

    def upstream_error(self, provider: str, call: str) -> None:
        self._child(self.upstream_errors, provider, _call_label(call)).inc()

    def backchannel_logout(self, outcome: str) -> None:
        self._child(self.backchannel_logouts, outcome).inc()

    def store_error(self, kind: str) -> None:
        self._child(self.store_errors, kind).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _call_label(call: str) -> str:
    # Calls are named by our code ("token", "userinfo", "jwks", "me"...), never by input.
    return call if UPSTREAM_CALL.fullmatch(call) else "other"
