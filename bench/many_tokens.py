"""Thousands of users' tokens for the benchmark, sent round robin by wrk.

Real traffic is many users' tokens, not one replayed. A gateway started in development mode
keeps its signing keys in its state directory; `mint` signs tokens with that key set, each
with the claims of a real login's token (`sample`) but its own user and `jti`: exactly what
the gateway issues at a login, without thousands of logins. `ROUND_ROBIN_LUA` has wrk send them
in turn and keeps its place in a file between runs, so that successive figures go on through
the list: with more tokens than the verified cache holds, every request is one the gateway has
not verified recently (a cycle through N > capacity items is least-recently-used's every-miss
case), whatever the order of the rounds.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from gateway.keys import load_keyset
from gateway.tokens import TokenIssuer, TokenPolicy

REGISTERED = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "auth_time")

# TOKENS_FILE: one token a line. HEADER and PREFIX: where the token goes (`Authorization` and
# "Bearer ", or `Cookie` and "gw_access="). REQUEST_PATH: the path. PLACE_FILE: where the
# position is kept between runs. wrk's -H headers are kept on every request.
ROUND_ROBIN_LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local header, prefix = os.getenv("HEADER"), os.getenv("PREFIX")
local path, place_file = os.getenv("REQUEST_PATH"), os.getenv("PLACE_FILE")
local threads = {}

local function read_place()
  local file = io.open(place_file, "r")
  if file == nil then return 0 end
  local place = tonumber(file:read("*l")) or 0
  file:close()
  return place
end

i = read_place()
local headers = {}
for name, value in pairs(wrk.headers) do headers[name] = value end

setup = function(thread) table.insert(threads, thread) end

request = function()
  i = i % #tokens + 1
  headers[header] = prefix .. tokens[i]
  return wrk.format("GET", path, headers)
end

done = function(summary, latency, requests)
  local file = io.open(place_file, "w")
  file:write(tostring(threads[1]:get("i")))
  file:close()
end
"""


def payload_of(token: str) -> dict[str, Any]:
    """A JWS's claims, unverified (the sample is our own login's token)."""
    segment = token.split(".")[1]
    padded = segment + "=" * (-len(segment) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def mint(state_dir: Path, algorithm: str, sample: str, count: int, lifetime: int
         ) -> list[str]:
    """`count` distinct access tokens of the gateway whose development state is `state_dir`,
    each with `sample`'s claims for a user of its own."""
    claims = payload_of(sample)
    keyset = load_keyset(state_dir / "keys", algorithm)
    issuer = TokenIssuer(keyset, TokenPolicy(claims["iss"], (claims["aud"],), lifetime, 30))
    profile = {name: value for name, value in claims.items() if name not in REGISTERED}
    subject = str(claims["sub"])
    now = int(time.time())
    tokens = []
    for n in range(count):
        user = {**profile}
        if "email" in user:
            user["email"] = f"user{n}@example.com"
        tokens.append(issuer.issue(f"{subject}{n:06d}", claims["aud"], user, auth_time=now))
    return tokens


def write(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path
