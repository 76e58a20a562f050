"""The memory store's sets: a set that keeps growing (one user signing in again and again) must
not cost every addition a pass over the whole set, and expired members still go."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import StoreFull
from gateway.store.memory import MemoryStore


def test_additions_prune_expired_members_only_as_the_set_doubles(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    passes: list[int] = []
    real = MemoryStore._live_members

    def counted(self: MemoryStore, namespace: str, key: str) -> dict[str, float]:
        passes.append(len(self._sets.get((namespace, key), {})))
        return real(self, namespace, key)
    monkeypatch.setattr(MemoryStore, "_live_members", counted)

    async def scenario() -> None:
        for n in range(1000):
            await store.add_member("sessions-of", "ada", f"short-{n}", 10)
        # 1,000 additions: a pass at 64, 128, 256 and 512 members, not one per addition.
        assert len(passes) == 4 and sum(passes) == 64 + 128 + 256 + 512
        now[0] += 11  # all of them expired
        for n in range(50):
            await store.add_member("sessions-of", "ada", f"live-{n}", 3600)
        assert sorted(await store.members("sessions-of", "ada")) == sorted(
            f"live-{n}" for n in range(50))
        # The expired 1,000 went when the set reached 1,024 members.
        assert len(store._sets[("sessions-of", "ada")]) == 50

    asyncio.run(scenario())


def test_a_new_set_past_the_bound_is_refused() -> None:
    store = MemoryStore(max_entries=2)

    async def scenario() -> None:
        await store.add_member("sessions-of", "a", "1", 60)
        await store.add_member("sessions-of", "b", "1", 60)
        await store.add_member("sessions-of", "a", "2", 60)  # an existing set grows
        with pytest.raises(StoreFull):
            await store.add_member("sessions-of", "c", "1", 60)

    asyncio.run(scenario())


@pytest.mark.parametrize("record", [
    {"provider": "google", "created": 1.5, "count": 3, "ok": True, "gone": None},  # plain
    {"sub": "ada", "profile": {"name": "Ada"}, "sids": ["a", "b"]},  # nested: kept as JSON
])
def test_a_value_is_never_shared_with_its_caller(record: dict[str, object]) -> None:
    """What was put is what comes back, however the caller changes its dicts afterwards."""
    store = MemoryStore()
    kept = {key: (dict(value) if isinstance(value, dict) else
                  list(value) if isinstance(value, list) else value)
            for key, value in record.items()}

    async def scenario() -> None:
        await store.put("ns", "k", record, 60)
        record["added"] = "later"
        for value in record.values():
            if isinstance(value, (dict, list)):
                value.clear()
        first = await store.get("ns", "k")
        assert first == kept
        assert first is not None
        first["added"] = "by a reader"
        assert await store.get("ns", "k") == kept
        assert await store.incr("ns", "counted", 60) == 1
        assert await store.take("ns", "k") == kept
        assert await store.get("ns", "k") is None

    asyncio.run(scenario())


@pytest.mark.parametrize("record", [{"when": object()}, {1: "an int key"}, {"s": {1, 2}}])
def test_a_value_no_other_store_could_keep_is_refused_or_kept_as_json(
        record: dict[object, object]) -> None:
    """As SQLite and Redis keep it: JSON, so what JSON cannot hold fails here too, and an int
    key comes back as a str."""
    store = MemoryStore()

    async def scenario() -> None:
        if 1 in record:
            await store.put("ns", "k", record, 60)  # type: ignore[arg-type]
            assert await store.get("ns", "k") == {"1": "an int key"}
        else:
            with pytest.raises(TypeError):
                await store.put("ns", "k", record, 60)  # type: ignore[arg-type]

    asyncio.run(scenario())
