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
from typing import Any, TypeGuard

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient, CurlError
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.logs import REQUEST_ID_HEADER, request_id_var
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.upstream")

USER_AGENT = "oauth-gateway/0.1"


# What a failed transfer's libcurl code means, for the log line (never curl's own message,
# which names hosts and paths). Anything else is logged by its number.
CURL_FAILURES = {
    pycurl.E_COULDNT_RESOLVE_HOST: "host name not resolved",
    pycurl.E_COULDNT_CONNECT: "connection refused",
    pycurl.E_OPERATION_TIMEDOUT: "timed out",
    pycurl.E_SSL_CONNECT_ERROR: "TLS handshake failed",
    pycurl.E_PEER_FAILED_VERIFICATION: "TLS certificate not trusted",
    pycurl.E_GOT_NOTHING: "connection closed without an answer",
    pycurl.E_RECV_ERROR: "connection closed",
    pycurl.E_SEND_ERROR: "connection closed",
    pycurl.E_PARTIAL_FILE: "connection closed mid-answer",
    pycurl.E_WRITE_ERROR: "answer over max_response_bytes",
    pycurl.E_FILESIZE_EXCEEDED: "answer over max_response_bytes",
    pycurl.E_BAD_CONTENT_ENCODING: "answer not decodable",
    8: "answer not HTTP",  # CURLE_WEIRD_SERVER_REPLY (pycurl names it for FTP only)
}


def make_http_client(settings: UpstreamSettings) -> AsyncHTTPClient:
    """libcurl through `tornado.curl_httpclient`: connections to a provider are kept alive
    and reused (Tornado's simple client opens a connection, and against a real provider does a
    TLS handshake, for every call: 15% of a login's CPU on loopback), and names are resolved
    off the event loop and cached by curl. Tornado's shared default client would allow only
    10 concurrent requests and buffer 100 MB; this one runs `max_clients` at once and caps what
    a provider may send, decompressed, at `max_response_bytes`."""
    trusted = trusted_certificates(settings.ca_file)
    return CurlAsyncHTTPClient(
        force_instance=True,
        max_clients=settings.max_clients,
        max_body_size=settings.max_response_bytes,
        defaults={"ca_certs": trusted.cafile,
                  "prepare_curl_callback": _tuned(trusted.capath, settings.max_response_bytes)},
    )


@dataclass(frozen=True)
class TrustedCertificates:
    cafile: str | None
    capath: str | None


def trusted_certificates(ca_file: str) -> TrustedCertificates:
    """SECURITY C6: what a provider's TLS certificate must chain to. `ca_file` when set (a
    private CA, a TLS-inspecting proxy), else the system's store as Python's `ssl` finds it
    (SSL_CERT_FILE / SSL_CERT_DIR honoured): the bundle libcurl's wheel was built to look for
    is another distribution's path, so it is never left to its default."""
    if ca_file:
        return TrustedCertificates(ca_file, None)
    system = ssl.get_default_verify_paths()
    return TrustedCertificates(system.cafile, None if system.cafile else system.capath)


def _tuned(capath: str | None, max_response_bytes: int) -> Any:
    def prepare(curl: pycurl.Curl) -> None:
        # SECURITY L1: Tornado turns on libcurl's trace whenever its logger is at DEBUG, and
        # the trace holds request bodies (client secrets, codes) and provider tokens.
        curl.setopt(pycurl.VERBOSE, 0)
        # An announced Content-Length over the cap is refused before its body is read.
        curl.setopt(pycurl.MAXFILESIZE, max_response_bytes)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        if capath is not None:
            curl.setopt(pycurl.CAPATH, capath)
    return prepare


@dataclass(frozen=True)
class Upstream:
    """The HTTP client plus the timeouts every upstream request gets, and its metrics."""

    client: AsyncHTTPClient
    settings: UpstreamSettings
    metrics: GatewayMetrics | None = None

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
        try:
            document = json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            raise self._logged(what, UpstreamError(
                "The sign-in provider sent an answer we could not read.",
                provider=provider, upstream_status=response.code,
                log_detail=f"{what}: body is not JSON")) from None
        if not isinstance(document, dict):
            raise self._logged(what, UpstreamError(
                "The sign-in provider sent an answer we could not read.",
                provider=provider, upstream_status=response.code,
                log_detail=f"{what}: JSON is not an object"))
        return document

    async def fetch_form(self, request: HTTPRequest, *, provider: str,
                         what: str) -> dict[str, str]:
        """Fetch and decode an `application/x-www-form-urlencoded` answer (OAuth 1.0a's token
        endpoints, RFC 5849 2.1 and 2.3), or raise `UpstreamError`. A name given twice is an
        answer we cannot read."""
        response = await self._fetch(request, provider=provider, what=what)
        try:
            pairs = urllib.parse.parse_qsl(response.body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=True)
        except (ValueError, UnicodeDecodeError):
            pairs = []
        answer = dict(pairs)
        if not pairs or len(answer) != len(pairs):
            raise self._logged(what, UpstreamError(
                "The sign-in provider sent an answer we could not read.",
                provider=provider, upstream_status=response.code,
                log_detail=f"{what}: body is not a form-encoded answer"))
        return answer

    async def _fetch(self, request: HTTPRequest, *, provider: str, what: str) -> HTTPResponse:
        request_id = request_id_var.get()
        if request_id is not None:  # the provider's support can find our request in its logs
            request.headers[REQUEST_ID_HEADER] = request_id
        started = time.monotonic()
        try:
            return await self.client.fetch(request, raise_error=True)
        except CurlError as e:  # before HTTPClientError: a transfer failure is one, code 599
            raise self._logged(what, _transfer_failure(e, provider, what)) from None
        except HTTPClientError as e:
            raise self._logged(what, UpstreamError(
                "The sign-in provider refused the request.",
                provider=provider, upstream_status=e.code,
                log_detail=f"{what}: HTTP {e.code}{_oauth_error_of(e.response)}")) from None
        except OSError as e:
            raise self._logged(what, UpstreamError(
                "The sign-in provider could not be reached.",
                provider=provider, log_detail=f"{what}: {type(e).__name__}")) from None
        finally:
            if self.metrics is not None:
                self.metrics.upstream_call(provider, what, time.monotonic() - started)

    def _logged(self, what: str, error: UpstreamError) -> UpstreamError:
        """Every upstream failure passes here once: its log line and its count."""
        if self.metrics is not None:
            self.metrics.upstream_error(error.provider, what)
        log.warning("upstream failure provider=%s status=%s %s", error.provider,
                    error.upstream_status, error.log_detail,
                    extra={"event": "upstream_failure", "provider": error.provider,
                           "call": what, "outcome": type(error).__name__})
        return error


def _transfer_failure(error: CurlError, provider: str, what: str) -> UpstreamError:
    """A transfer that ended without an HTTP answer: timeouts are 504, the rest 502."""
    reason = CURL_FAILURES.get(error.errno, f"curl error {error.errno}")
    if error.errno == pycurl.E_OPERATION_TIMEDOUT:
        return UpstreamTimeout("The sign-in provider did not answer in time.",
                               provider=provider, log_detail=f"{what}: {reason}")
    return UpstreamError("The sign-in provider could not be reached.",
                         provider=provider, log_detail=f"{what}: {reason}")


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
