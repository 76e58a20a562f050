"""What a verified token costs in memory, measured against the estimate the cache budgets with.

    .venv/bin/python bench/verified_cache.py [--tokens 5000]

For each algorithm and a short and a long profile: the bytes tracemalloc sees per token once
`TokenVerifier` has verified it and made its JSON (as /verify does), with the token string itself
(allocated per request, kept by the cache), next to `tokens.entry_size`, what the cache counts
against `tokens.verified_cache_mb`.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
from pathlib import Path

from gateway.identity import Identity
from gateway.keys import load_keyset
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier, entry_size

ISSUER = "https://login.example.com"
PROFILES = {
    "short": dict(name="Ada Lovelace"),
    "long": dict(name="Ada Augusta King, Countess of Lovelace " * 3,
                 picture="https://lh3.googleusercontent.com/a/ACg8ocK" + "x" * 60),
}


def measured_bytes_per_token(algorithm: str, profile: str, count: int) -> tuple[float, float]:
    """(bytes per token measured, bytes per token estimated)."""
    policy = TokenPolicy(ISSUER, (ISSUER,), lifetime=900, leeway=30)
    with tempfile.TemporaryDirectory() as keys_dir:
        keyset = load_keyset(Path(keys_dir), algorithm, generate_if_empty=True)
    issuer = TokenIssuer(keyset, policy)
    tokens = [issuer.issue_access_token(
        Identity("google", str(10**20 + n), email=f"user{n}@example.com", email_verified=True,
                 **PROFILES[profile]), ISSUER) for n in range(count)]
    verifier = TokenVerifier(keyset, policy, cache_bytes=2**40)
    verifier.verify_as_json(tokens[0])  # key and header caches warm: not per-token costs
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for token in tokens[1:]:
        verifier.verify_as_json("".join(token))  # a fresh string, as a request brings
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    estimate = sum(entry_size(token) for token in tokens[1:])
    return used / (count - 1), estimate / (count - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    args = parser.parse_args()
    print("| algorithm | claims | measured bytes/token | estimate | estimate / measured |")
    print("|---|---|---|---|---|")
    for algorithm in ("RS256", "ES256", "EdDSA"):
        for profile in PROFILES:
            used, estimate = measured_bytes_per_token(algorithm, profile, args.tokens)
            print(f"| {algorithm} | {profile} | {used:,.0f} | {estimate:,.0f} | "
                  f"{estimate / used:.2f} |")


if __name__ == "__main__":
    main()
