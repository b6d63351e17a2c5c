"""Guarded writes defined once, run as one statement (PostgreSQL) or one transaction (SQLite).

Lease and Submit each write several tables, and only if a guard holds (an
entry is free; the lease is still active). :class:`AtomicWrite` states such a
write once, for both back ends:

* an **anchor** statement that does the guarded part and returns the columns
  the rest needs (``RETURNING``): no rows means the guard failed and nothing
  else is written;
* **steps** that act on the anchor's rows, written against a ``FROM`` source
  with the anchor's returned columns;
* optionally, which step's ``RETURNING`` rows are the write's result.

The one dialect-specific fragment is that source, chosen here and nowhere else:

* **PostgreSQL**: the anchor becomes a data-modifying CTE and every step a
  CTE reading from it: ONE statement, atomic by itself, run in autocommit on a
  raw psycopg connection (:mod:`..pgpool`), prepared by psycopg after a few
  calls. One round trip per write, and a third of the CPU of the same work
  through SQLAlchemy's asyncio layer (see pgpool). A step reads the anchor's
  rows (never the tables: in one statement, every part sees the snapshot from
  before the statement).
* **SQLite**: the same statements one after another in the store's write
  transaction (``BEGIN IMMEDIATE``, exclusive); the source is the anchor's
  table, found again by ``key``, and the steps run only if the anchor wrote.

Row locks are the other difference, and they live inside the statements:
``with_for_update(...)`` renders ``FOR UPDATE [OF ...] [SKIP LOCKED]`` on
PostgreSQL and nothing on SQLite, whose write transaction already excludes
other writers.

Parameters are ``bindparam`` values named ``p_...``: never a column name,
since an execution parameter named like a column would add that column to an
INSERT's VALUES or an UPDATE's SET on SQLAlchemy's side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, FromClause, Insert, Select, Update, select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.schema import Column

Statement: TypeAlias = Select[Any] | Insert | Update
Params: TypeAlias = Mapping[str, Any]
#: A result row by column name (a SQLAlchemy RowMapping or a psycopg dict row).
Row: TypeAlias = Mapping[Any, Any]

_PG_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]
_PG_SQL: dict[Statement, tuple[str, dict[str, Any]]] = {}


def pg_sql(stmt: Statement) -> tuple[str, dict[str, Any]]:
    """``stmt`` as psycopg SQL and the values of its literal binds (cached per statement)."""
    found = _PG_SQL.get(stmt)
    if found is None:
        compiled = stmt.compile(dialect=_PG_DIALECT)
        found = _PG_SQL[stmt] = (str(compiled), dict(compiled.params))
    return found


class AtomicWrite:
    """A guarded write over several tables, defined once for both back ends."""

    def __init__(
        self,
        anchor: Insert | Update,
        returning: Sequence[Column[Any]],
        key: ColumnElement[bool],
        steps: Callable[[FromClause], Sequence[Insert | Update]],
        result: int | None = None,
    ) -> None:
        """``anchor`` returns ``returning`` (columns of one table), where ``key``
        finds its rows again; ``steps(source)`` builds the statements reading them;
        ``result`` picks the step whose RETURNING rows :meth:`~.base.StoreCore.write`
        returns (default: the anchor's rows)."""
        self._anchor = anchor.returning(*returning)
        self._returning = returning
        self._key = key
        self._steps = steps
        self._result = result

    @functools.cached_property
    def postgresql(self) -> Select[Any]:
        """The whole write as one statement of data-modifying CTEs."""
        anchor = self._anchor.cte("anchor")
        steps = [stmt.cte(f"step{i}") for i, stmt in enumerate(self._steps(anchor))]
        shown = anchor if self._result is None else steps[self._result]
        return select(*shown.c).add_cte(anchor, *steps)

    @functools.cached_property
    def sqlite(self) -> tuple[Insert | Update, list[Insert | Update]]:
        """The anchor, then the steps reading its rows back from its table."""
        source = select(*self._returning).where(self._key).subquery("anchor")
        return self._anchor, list(self._steps(source))

    @property
    def result(self) -> int | None:
        """Index of the step whose rows are the result (None: the anchor's)."""
        return self._result
