"""The gateway as an OpenID Connect provider for downstream apps (authorization code flow).

Protocol decisions are plain functions and small classes here; the handlers in
`gateway/handlers/authorize.py`, `token.py` and `end_session.py` only do the I/O.

- `clients`: registered clients, secret hashing (SECURITY C4), client authentication.
- `authorization`: the authorization request (`/authorize`), codes and PKCE (R1, R3, S2, C1).
- `claims`: which identity claims a scope releases; ID token claims (OIDC Core 2, 3.1.3.6).
- `grants`: the state in the store: pending requests, codes, refresh-token families, rotation
  and reuse detection, revocation (C1, T1-T5).
"""
