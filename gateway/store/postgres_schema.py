"""The PostgreSQL store's schema and statements, as plain SQL text (no driver imported here).

Everything lives in one schema, `oauth_gateway`, so that the gateway may share a database with
other software without a name clash, and `DROP SCHEMA oauth_gateway CASCADE` removes it whole.
Expiry is absolute (`expires_at`, timestamptz) and always computed and compared with the
database's `now()`: replicas whose clocks disagree still agree on what has expired.

The schema is versioned: `MIGRATIONS` are applied in order, each once, each in its own
transaction that first takes `MIGRATION_LOCK` (a transaction-level advisory lock), so that
several replicas starting at once apply each migration exactly once and never see a half-made
schema. A migration already applied is never edited: a change is a new migration.
"""

# ruff: noqa: S608 - every statement is built from this module's constants; values are always
# $n parameters, never text in the SQL.

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMA = "oauth_gateway"
# pg_advisory_xact_lock's key: a constant of ours (the ASCII bytes of "oauth-gw").
MIGRATION_LOCK = int.from_bytes(b"oauth-gw", "big")
# A bounded namespace's size is kept in this many rows (chosen by the key's hash), so that
# logins written at once on several connections seldom wait on each other's counter row.
SIZE_SHARDS = 16


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "entries, counters, set members and namespace sizes", f"""
CREATE TABLE {SCHEMA}.entries (
    namespace text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,  -- JSON, as the gateway wrote it
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX entries_by_expiry ON {SCHEMA}.entries (expires_at);

CREATE TABLE {SCHEMA}.counters (
    namespace text NOT NULL,
    key text NOT NULL,
    count bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX counters_by_expiry ON {SCHEMA}.counters (expires_at);

CREATE TABLE {SCHEMA}.members (
    namespace text NOT NULL,
    key text NOT NULL,
    member text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, key, member)
);
CREATE INDEX members_by_expiry ON {SCHEMA}.members (expires_at);

-- Rows of `entries` per namespace (expired but unswept ones included), kept by a trigger, so
-- that a bounded namespace is checked in constant time by every replica.
CREATE TABLE {SCHEMA}.namespace_sizes (
    namespace text NOT NULL,
    shard smallint NOT NULL,
    entries bigint NOT NULL,
    PRIMARY KEY (namespace, shard)
);
-- One statement adds one row (a put), so a row trigger counts it.
CREATE FUNCTION {SCHEMA}.count_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {SCHEMA}.namespace_sizes AS sizes (namespace, shard, entries)
    VALUES (NEW.namespace, hashtext(NEW.key) & {SIZE_SHARDS - 1}, 1)
    ON CONFLICT (namespace, shard) DO UPDATE SET entries = sizes.entries + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER entry_added AFTER INSERT ON {SCHEMA}.entries
    FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.count_entry();
-- A sweep deletes many rows at once: counted once per statement, its size rows locked in one
-- order first, so that two replicas sweeping at once never deadlock (a take or a put changes
-- one size row, and waits on nothing once it holds it).
CREATE FUNCTION {SCHEMA}.uncount_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM {SCHEMA}.namespace_sizes AS sizes
    WHERE (sizes.namespace, sizes.shard) IN
        (SELECT namespace, hashtext(key) & {SIZE_SHARDS - 1} FROM gone)
    ORDER BY sizes.namespace, sizes.shard FOR UPDATE;
    UPDATE {SCHEMA}.namespace_sizes AS sizes SET entries = sizes.entries - removed.entries
    FROM (SELECT namespace, hashtext(key) & {SIZE_SHARDS - 1} AS shard, count(*) AS entries
          FROM gone GROUP BY 1, 2) AS removed
    WHERE sizes.namespace = removed.namespace AND sizes.shard = removed.shard;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_removed AFTER DELETE ON {SCHEMA}.entries
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.uncount_entries();
"""),
)
LATEST_VERSION = MIGRATIONS[-1].version

# -- migrations (run with the advisory lock held, in the migration's transaction) -------------

CREATE_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""
LOCK = "SELECT pg_advisory_xact_lock($1)"
APPLIED_VERSION = f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version"
RECORD_VERSION = f"INSERT INTO {SCHEMA}.schema_version (version, description) VALUES ($1, $2)"

# -- the Store operations ($n parameters, as PostgreSQL's extended protocol numbers them) -------

EXPIRES = "now() + make_interval(secs => $4::float8)"

GET = f"""SELECT value FROM {SCHEMA}.entries
WHERE namespace = $1 AND key = $2 AND expires_at > now()"""

PUT = f"""INSERT INTO {SCHEMA}.entries (namespace, key, value, expires_at)
VALUES ($1, $2, $3, {EXPIRES})
ON CONFLICT (namespace, key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at"""

# Written only while the namespace holds fewer than $5 rows, or when the key is there already
# (replacing adds nothing). One statement, but not serialised: puts racing on other connections
# may each see the last free place, so a namespace can pass its limit by the puts in flight at
# once (at most the connections of every replica), which bounds a flood just as well.
PUT_BOUNDED = f"""INSERT INTO {SCHEMA}.entries (namespace, key, value, expires_at)
SELECT $1::text, $2::text, $3::text, {EXPIRES}
WHERE (SELECT coalesce(sum(entries), 0) FROM {SCHEMA}.namespace_sizes WHERE namespace = $1) < $5
   OR EXISTS (SELECT 1 FROM {SCHEMA}.entries WHERE namespace = $1 AND key = $2)
ON CONFLICT (namespace, key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at
RETURNING true"""

# One statement reads and deletes: of two sessions deleting one row, the second waits for the
# first and then finds nothing, so one caller alone, on any replica, gets the value.
TAKE = f"""DELETE FROM {SCHEMA}.entries WHERE namespace = $1 AND key = $2
RETURNING value, expires_at > now() AS live"""

DELETE = f"DELETE FROM {SCHEMA}.entries WHERE namespace = $1 AND key = $2"

# A fixed window: an expired counter starts again at 1 with a new expiry; a live one keeps its
# expiry. The upsert locks the row, so concurrent increments are counted one by one.
INCR = f"""INSERT INTO {SCHEMA}.counters AS c (namespace, key, count, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3::float8))
ON CONFLICT (namespace, key) DO UPDATE SET
    count = CASE WHEN c.expires_at <= now() THEN 1 ELSE c.count + 1 END,
    expires_at = CASE WHEN c.expires_at <= now() THEN excluded.expires_at ELSE c.expires_at END
RETURNING count"""

ADD_MEMBER = f"""INSERT INTO {SCHEMA}.members (namespace, key, member, expires_at)
VALUES ($1, $2, $3, {EXPIRES})
ON CONFLICT (namespace, key, member) DO UPDATE SET expires_at = excluded.expires_at"""

MEMBERS = f"""SELECT member FROM {SCHEMA}.members
WHERE namespace = $1 AND key = $2 AND expires_at > now()"""

REMOVE_MEMBER = f"""DELETE FROM {SCHEMA}.members
WHERE namespace = $1 AND key = $2 AND member = $3"""

PING = f"SELECT 1 FROM {SCHEMA}.schema_version LIMIT 1"
HAS_SCHEMA = f"SELECT to_regclass('{SCHEMA}.schema_version') IS NOT NULL"

# Per table, delete at most $1 expired rows. Rows another replica's sweep holds are skipped
# (SKIP LOCKED), so replicas sweeping at once share the work instead of waiting on each other.
SWEEPS = {
    table: (f"DELETE FROM {SCHEMA}.{table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {SCHEMA}.{table} WHERE expires_at <= now() "
            f"ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))")
    for table in ("entries", "counters", "members")
}

# A full bounded namespace first drops its own expired rows (at most $2), then tries again.
SWEEP_NAMESPACE = (f"DELETE FROM {SCHEMA}.entries WHERE ctid = ANY(ARRAY("
                   f"SELECT ctid FROM {SCHEMA}.entries WHERE namespace = $1 "
                   f"AND expires_at <= now() LIMIT $2 FOR UPDATE SKIP LOCKED))")


def numbered_to_named(sql: str) -> str:
    """`$1` -> `%(p1)s`: the same statement for a driver with Python-style placeholders."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql.replace("%", "%%"))
