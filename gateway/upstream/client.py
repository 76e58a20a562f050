"""Calls to identity providers: one HTTP client, timeouts everywhere, one error mapping.

Every failure of `tornado.httpclient` (status, timeout, connection, oversized body) and every
unusable body (not JSON, not an object) becomes an `UpstreamError` here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPInputError
from tornado.iostream import StreamBufferFullError, UnsatisfiableReadError
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.logs import REQUEST_ID_HEADER, request_id_var
from gateway.metrics import GatewayMetrics
from gateway.upstream.pool import KeepAliveHTTPClient
from gateway.upstream.resolver import CachingResolver

if TYPE_CHECKING:
    from gateway.tracing import Tracing

log = logging.getLogger("gateway.upstream")

USER_AGENT = "oauth-gateway/0.1"


def make_http_client(settings: UpstreamSettings) -> AsyncHTTPClient:
    """A dedicated client: Tornado's shared default allows only 10 concurrent requests and
    buffers 100 MB bodies; ours queues nothing at C10K scale and caps what a provider may send,
    resolves names without a thread per request (resolver.py), and trusts `upstream.ca_file`
    when it is set.

    Connections are kept alive between calls (upstream/pool.py)."""
    trusted = provider_tls_context(settings.ca_file)
    return KeepAliveHTTPClient(
        force_instance=True,
        max_clients=settings.max_clients,
        max_body_size=settings.max_response_bytes,
        max_buffer_size=settings.max_response_bytes,
        resolver=CachingResolver(),
        defaults={"ssl_options": trusted} if trusted is not None else None,
    )


def provider_tls_context(ca_file: str) -> ssl.SSLContext | None:
    """SECURITY C6: what a provider's TLS certificate must chain to. `ca_file` when set (a
    private CA, a TLS-inspecting egress proxy): one context, made once, instead of Tornado
    loading the file again for every call. None: Tornado's default context, the system's
    store as Python's `ssl` finds it (SSL_CERT_FILE and SSL_CERT_DIR honoured)."""
    if not ca_file:
        return None
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)


@dataclass(frozen=True)
class Upstream:
    """The HTTP client plus the timeouts every upstream request gets, and its metrics."""

    client: AsyncHTTPClient
    settings: UpstreamSettings
    metrics: GatewayMetrics | None = None
    tracing: Tracing | None = None

    def request(self, url: str, *, method: str = "GET", body: str | None = None,
                headers: dict[str, str] | None = None) -> HTTPRequest:
        return HTTPRequest(
            url,
            method=method,
            body=body,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
            connect_timeout=self.settings.connect_timeout,
            request_timeout=self.settings.request_timeout,
            follow_redirects=False,  # SECURITY C6: only the configured hosts
            validate_cert=True,
            decompress_response=True,
        )

    async def fetch_json(self, request: HTTPRequest, *, provider: str,
                         what: str) -> dict[str, Any]:
        """Fetch and decode a JSON object, or raise `UpstreamError` describing what failed."""
        response = await self._fetch(request, provider=provider, what=what)
        return self._json_object(response, provider=provider, what=what)

    async def fetch_json_array(self, request: HTTPRequest, *, provider: str,
                               what: str) -> list[Any]:
        """Fetch and decode a JSON array (GitHub's `/user/emails`), or raise `UpstreamError`."""
        response = await self._fetch(request, provider=provider, what=what)
        document = self._json_of(response, provider=provider, what=what)
        if not isinstance(document, list):
            raise self._unreadable(response, provider, what, "JSON is not an array")
        return document

    async def fetch_form(self, request: HTTPRequest, *, provider: str,
                         what: str) -> dict[str, str]:
        """Fetch and decode an `application/x-www-form-urlencoded` answer (OAuth 1.0a's token
        endpoints, RFC 5849 2.1 and 2.3), or raise `UpstreamError`. A name given twice is an
        answer we cannot read."""
        response = await self._fetch(request, provider=provider, what=what)
        return self._form_of(response, provider=provider, what=what)

    async def fetch_json_or_form(self, request: HTTPRequest, *, provider: str,
                                 what: str) -> dict[str, Any]:
        """A JSON object, or a form-encoded answer when its Content-Type says so: GitHub's
        token endpoint answers form-encoded whenever the request's `Accept` is not heeded."""
        response = await self._fetch(request, provider=provider, what=what)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded":
            return self._form_of(response, provider=provider, what=what)
        return self._json_object(response, provider=provider, what=what)

    def _json_of(self, response: HTTPResponse, *, provider: str, what: str) -> Any:
        try:
            return json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            raise self._unreadable(response, provider, what, "body is not JSON") from None

    def _json_object(self, response: HTTPResponse, *, provider: str,
                     what: str) -> dict[str, Any]:
        document = self._json_of(response, provider=provider, what=what)
        if not isinstance(document, dict):
            raise self._unreadable(response, provider, what, "JSON is not an object")
        return document

    def _form_of(self, response: HTTPResponse, *, provider: str, what: str) -> dict[str, str]:
        try:
            pairs = urllib.parse.parse_qsl(response.body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=True)
        except (ValueError, UnicodeDecodeError):
            pairs = []
        answer = dict(pairs)
        if not pairs or len(answer) != len(pairs):
            raise self._unreadable(response, provider, what, "body is not a form-encoded answer")
        return answer

    def _unreadable(self, response: HTTPResponse, provider: str, what: str,
                    problem: str) -> UpstreamError:
        return self._logged(what, UpstreamError(
            "The sign-in provider sent an answer we could not read.",
            provider=provider, upstream_status=response.code, log_detail=f"{what}: {problem}"))

    async def _fetch(self, request: HTTPRequest, *, provider: str, what: str) -> HTTPResponse:
        request_id = request_id_var.get()
        if request_id is not None:  # the provider's support can find our request in its logs
            request.headers[REQUEST_ID_HEADER] = request_id
        started = time.monotonic()
        tracing = self.tracing
        span = tracing.start_provider_call(provider, what, request) if tracing else None
        status: int | None = None
        try:
            client = self.client
            response = await (client.call(request) if isinstance(client, KeepAliveHTTPClient)
                              else client.fetch(request, raise_error=True))
            status = response.code
            return response
        except HTTPTimeoutError as e:
            raise self._logged(what, UpstreamTimeout(
                "The sign-in provider did not answer in time.",
                provider=provider, log_detail=f"{what}: {e.message}")) from None
        except HTTPStreamClosedError:
            # The provider hung up, or sent more than max_response_bytes and we hung up.
            raise self._logged(what, UpstreamError(
                "The sign-in provider could not be reached.",
                provider=provider,
                log_detail=f"{what}: connection closed, or answer over max_response_bytes",
            )) from None
        except HTTPClientError as e:
            status = e.code
            raise self._logged(what, UpstreamError(
                "The sign-in provider refused the request.",
                provider=provider, upstream_status=e.code,
                log_detail=f"{what}: HTTP {e.code}{_oauth_error_of(e.response)}")) from None
        except (OSError, HTTPInputError, UnsatisfiableReadError, StreamBufferFullError) as e:
            raise self._logged(what, UpstreamError(
                "The sign-in provider could not be reached.",
                provider=provider, log_detail=f"{what}: {_transport_failure(e)}")) from None
        finally:
            if self.metrics is not None:
                self.metrics.upstream_call(provider, what, time.monotonic() - started)
            if tracing is not None and span is not None:
                tracing.end_provider_call(span, status)

    def _logged(self, what: str, error: UpstreamError) -> UpstreamError:
        """Every upstream failure passes here once: its log line and its count."""
        if self.metrics is not None:
            self.metrics.upstream_error(error.provider, what)
        log.warning("upstream failure provider=%s status=%s %s", error.provider,
                    error.upstream_status, error.log_detail,
                    extra={"event": "upstream_failure", "provider": error.provider,
                           "call": what, "outcome": type(error).__name__})
        return error


def _transport_failure(error: Exception) -> str:
    """Why a call got no HTTP answer, in a few words for the log line: never the exception's
    own message, which may name hosts, paths or certificate details."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(error, ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionError):
        return "connection closed"
    if isinstance(error, (HTTPInputError, UnsatisfiableReadError, StreamBufferFullError)):
        return "answer not readable (malformed, or over max_response_bytes)"
    return type(error).__name__


def _oauth_error_of(response: HTTPResponse | None) -> str:
    """The OAuth `error` code of a failed response, for the log (never the description).

    Facebook's Graph API nests its error: `{"error": {"message", "type", "code", ...}}`; of
    that only `type` and `code` are logged, never `message` (it may echo request input).
    """
    if response is None or not response.body:
        return ""
    try:
        error = json.loads(response.body).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    if isinstance(error, dict):
        kind, code = error.get("type"), error.get("code")
        logged = f" error={kind}" if _readable(kind) and kind.isidentifier() else ""
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 10**9:
            logged += f" code={code}"
        return logged
    return f" error={error}" if _readable(error) else ""


def _readable(value: object) -> TypeGuard[str]:
    # One printable ASCII word: a provider's answer must not forge or break our log lines.
    return (isinstance(value, str) and value.isascii() and value.isprintable()
            and " " not in value and len(value) < 64)
