"""Calls to identity providers: one HTTP client, timeouts everywhere, one error mapping.

Every failure of `tornado.httpclient` (status, timeout, connection, oversized body) and every
unusable body (not JSON, not an object) becomes an `UpstreamError` here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPInputError
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger("gateway.upstream")

USER_AGENT = "oauth-gateway/0.1"


def make_http_client(settings: UpstreamSettings) -> AsyncHTTPClient:
    """A dedicated client: Tornado's shared default allows only 10 concurrent requests and
    buffers 100 MB bodies; ours queues nothing at C10K scale and caps what a provider may send."""
    return AsyncHTTPClient(
        force_instance=True,
        max_clients=settings.max_clients,
        max_body_size=settings.max_response_bytes,
        max_buffer_size=settings.max_response_bytes,
    )


@dataclass(frozen=True)
class Upstream:
    """The HTTP client plus the timeouts every upstream request gets."""

    client: AsyncHTTPClient
    settings: UpstreamSettings

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
            raise self._logged(UpstreamError(
                "The sign-in provider sent an answer we could not read.",
                provider=provider, upstream_status=response.code,
                log_detail=f"{what}: body is not JSON")) from None
        if not isinstance(document, dict):
            raise self._logged(UpstreamError(
                "The sign-in provider sent an answer we could not read.",
                provider=provider, upstream_status=response.code,
                log_detail=f"{what}: JSON is not an object"))
        return document

    async def _fetch(self, request: HTTPRequest, *, provider: str, what: str) -> HTTPResponse:
        try:
            return await self.client.fetch(request, raise_error=True)
        except HTTPTimeoutError as e:
            raise self._logged(UpstreamTimeout(
                "The sign-in provider did not answer in time.",
                provider=provider, log_detail=f"{what}: {e.message}")) from None
        except HTTPStreamClosedError:
            # The provider hung up, or sent more than max_response_bytes and we hung up.
            raise self._logged(UpstreamError(
                "The sign-in provider could not be reached.",
                provider=provider, log_detail=f"{what}: connection closed")) from None
        except HTTPClientError as e:
            raise self._logged(UpstreamError(
                "The sign-in provider refused the request.",
                provider=provider, upstream_status=e.code,
                log_detail=f"{what}: HTTP {e.code}{_oauth_error_of(e.response)}")) from None
        except (OSError, HTTPInputError) as e:
            # Connection refused or reset, TLS failure, or a body over max_response_bytes.
            raise self._logged(UpstreamError(
                "The sign-in provider could not be reached.",
                provider=provider, log_detail=f"{what}: {type(e).__name__}")) from None

    @staticmethod
    def _logged(error: UpstreamError) -> UpstreamError:
        log.warning("upstream failure provider=%s status=%s %s", error.provider,
                    error.upstream_status, error.log_detail)
        return error


def _oauth_error_of(response: HTTPResponse | None) -> str:
    """The OAuth `error` code of a failed response, for the log (never the description)."""
    if response is None or not response.body:
        return ""
    try:
        error = json.loads(response.body).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    readable = isinstance(error, str) and error.isascii() and len(error) < 64
    return f" error={error}" if readable else ""
