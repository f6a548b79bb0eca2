"""The storage ports in this process's memory: ``InMemoryStore`` over a ``MemoryDatabase``, keeping the SQL adapter's
contract (order, errors, transactions, writer leases among the stores of one database, snapshot compression) so
that logic can be tested without a database. It imports no SQL: nothing here may reach SQLAlchemy.
"""

from __future__ import annotations

from soulfra.store.memory.store import InMemoryStore
from soulfra.store.memory.tables import MemoryDatabase

__all__ = ["InMemoryStore", "MemoryDatabase"]
