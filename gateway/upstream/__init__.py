"""Calls from the gateway to the identity providers.

`client` is the one HTTP client and its error mapping, `pool` keeps connections alive between
calls, `resolver` turns provider host names into addresses without a thread per call, and
`provider_keys` fetches and caches a provider's published signing keys (JWKS).
"""
