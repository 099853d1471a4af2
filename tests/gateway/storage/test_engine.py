"""The engine's error contract: driver errors never quote parameters, and a failing database is
the retryable ``StorageUnavailable`` through one mapping."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from gateway.config import Settings
from gateway.errors import IdempotencyKeyReused, StorageUnavailable
from gateway.storage.engine import create_engine, storage_errors
from gateway.storage.schema import projects

SECRET = "payload-that-must-not-reach-a-log"


async def test_driver_errors_do_not_quote_parameters(database_url: str) -> None:
    engine = create_engine(Settings(database_url=database_url))
    row = {"id": "p-1", "name": SECRET, "allowed_origins": "[]", "active": True, "created_at": 1}
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(projects).values(**row))
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                await conn.execute(insert(projects).values(**row))
    finally:
        await engine.dispose()
    assert SECRET not in str(caught.value)


def test_storage_errors_maps_failures_and_passes_gateway_errors() -> None:
    with pytest.raises(StorageUnavailable) as caught, storage_errors("a lookup"):
        raise ConnectionRefusedError("database down")
    assert caught.value.retry_after == 1
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(IdempotencyKeyReused), storage_errors("a claim"):
        raise IdempotencyKeyReused("reused")
