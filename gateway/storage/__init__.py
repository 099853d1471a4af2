"""Persistence: the schema (``schema``), engines for SQLite and PostgreSQL (``engine``), the
event outbox (``events``), idempotency keys (``idempotency``) and tenants and keys (``tenants``).
"""
