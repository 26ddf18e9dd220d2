"""Small dialect-aware statements shared by the modules that write.

The bulk helpers (``among``, ``insert_arrays``, ``update_by_id``) pass a whole set as
one parameter per column on PostgreSQL: one short statement whatever the set's size,
prepared once, instead of thousands of bound parameters that the driver would parse
afresh for every new size. A column goes as one text of its values joined by a control
character and split by the server (``string_to_array``): psycopg dumps a real array
element by element in Python (1-15 us each, bytes and timestamps the dearest), a join
costs next to nothing. Bytes travel as hex, timestamps as epoch seconds; a column whose
text could be mistaken for the separators goes as a real array. SQLite gets the plain
statements (``IN``, ``executemany``): its driver is in-process C. A string longer
than its ``VARCHAR(n)`` column is cut to n on PostgreSQL (an explicit cast): check
lengths before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, KeysView, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    LargeBinary,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

Executor = Session | Connection
_POSTGRESQL = postgresql.base.PGDialect()  # compiles column types for array casts


def dialect_name(executor: Executor) -> str:
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return bind.dialect.name


def plan_for_lookups(executor: Executor) -> None:
    """Plan the rest of this transaction as lookups of known rows by index.

    For statements that name their rows (``= ANY(<ids>)``, ``UPDATE ... FROM unnest``):
    planned for their actual parameters, since a long-lived connection reuses a
    prepared statement's generic plan, and one made while a table was nearly empty
    (a sequential scan) stays after it has grown; and without hash or merge joins or
    sequential scans, which the planner picks for a thousand ids in a table of a
    hundred thousand (measured: 76 ms for an UPDATE that takes 5 ms by index, and
    growing with the table).
    """
    if dialect_name(executor) == "postgresql":
        executor.execute(
            text(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                " set_config('enable_hashjoin', 'off', true),"
                " set_config('enable_mergejoin', 'off', true),"
                " set_config('enable_seqscan', 'off', true)"
            )
        )


def commit_without_waiting(executor: Executor) -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL to reach the disk
    (for work that a crash may lose because it is redone from what is stored)."""
    if dialect_name(executor) == "postgresql":
        executor.execute(text("SELECT set_config('synchronous_commit', 'off', true)"))


def insert_ignoring_duplicates(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike."""
    if not rows:
        return
    module: Any = postgresql if dialect_name(session) == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), list(rows))


def upsert_latest(
    session: Session,
    table: Table,
    key: str | Sequence[str],
    column: str,
    rows: Sequence[dict[str, Any]],
) -> None:
    """Insert rows, or move ``column`` forward where a row with the same ``key`` (one
    column or several) exists."""
    if not rows:
        return
    module: Any = postgresql if dialect_name(session) == "postgresql" else sqlite
    statement = module.insert(table)
    newer = getattr(statement.excluded, column)
    current = table.c[column]
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[key] if isinstance(key, str) else list(key),
            set_={column: case((newer > current, newer), else_=current)},
        ),
        list(rows),
    )


def among(executor: Executor, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(...)``, one parameter."""
    wanted = list(values)
    if dialect_name(executor) != "postgresql":
        return column.in_(wanted)  # type: ignore[no-any-return]
    array_type = postgresql.ARRAY(column.type)
    joined = packed(wanted)
    if joined is None:
        return column == any_(bindparam(None, wanted, type_=array_type))  # type: ignore[no-any-return]
    split = func.string_to_array(bindparam(None, joined, type_=Text), literal_column(_SPLIT))
    return column == any_(cast(split, array_type))  # type: ignore[no-any-return]


_READ_WHOLE_FROM = 100_000  # values; see ``matching``
_MATCH_CHUNK = 50_000  # values per lookup on PostgreSQL (one parameter each time)
_MATCH_CHUNK_SQLITE = 5_000  # SQLite takes at most 32766 parameters per statement


def matching(
    executor: Executor, column: Any, values: Collection[Any], *selected: Any
) -> Iterator[Any]:
    """Rows whose ``column`` is among ``values`` (any number of them), as ``selected``
    columns (default: ``column`` itself, one value per row).

    On PostgreSQL the values are joined as ``unnest(<array>)``: a hash join costs the
    same for a table of ten rows or ten million, where ``= ANY`` would scan the array
    for every row of the table.
    """
    wanted = selected or (column,)
    single = len(wanted) == 1
    if len(values) >= _READ_WHOLE_FROM:
        # A big set against a small table (the usual opt-out list or identity book
        # against a million recipients): one read of the table, filtered here.
        limit = len(values) // 8
        rows = executor.execute(select(column, *wanted).limit(limit + 1)).all()
        if len(rows) <= limit:
            asked = values if isinstance(values, (set, frozenset, dict, KeysView)) else set(values)
            for row in rows:
                if row[0] in asked:
                    yield row[1] if single else tuple(row[1:])
            return
    postgres = dialect_name(executor) == "postgresql"
    size = _MATCH_CHUNK if postgres else _MATCH_CHUNK_SQLITE
    ordered = values if isinstance(values, Sequence) else list(values)
    for start in range(0, len(ordered), size):
        chunk = list(ordered[start : start + size])
        if postgres:
            joined = packed(chunk)
            array_type = postgresql.ARRAY(column.type)
            argument: Any = bindparam(None, chunk, type_=array_type)
            if joined is not None:
                split = func.string_to_array(
                    bindparam(None, joined, type_=Text), literal_column(_SPLIT)
                )
                argument = cast(split, array_type)
            given = func.unnest(argument).table_valued("value").render_derived(name="given")
            query = select(*wanted).join(given, column == given.c.value)
        else:
            query = select(*wanted).where(column.in_(chunk))
        for row in executor.execute(query):
            yield row[0] if single else tuple(row)


def unnested(executor: Executor, column: Any, values: Sequence[Any]) -> Any | None:
    """``values`` as one PostgreSQL table ``given(value)`` of ``column``'s type, sent as a
    single text parameter; None on another database or when the values cannot be
    packed. For a lookup of a million values against a table of a million rows, where
    one hash join beats twenty index-probing chunks (``matching``)."""
    if dialect_name(executor) != "postgresql":
        return None
    joined = packed(values)
    if joined is None:
        return None
    split = func.string_to_array(bindparam(None, joined, type_=Text), literal_column(_SPLIT))
    array = cast(split, postgresql.ARRAY(column.type))
    return func.unnest(array).table_valued("value").render_derived(name="given")


def holds_fewer(executor: Executor, table: Any, count: int) -> bool:
    """Whether ``table`` has fewer than ``count`` rows (reads at most that many)."""
    limited = select(literal_column("1")).select_from(table).limit(count).subquery()
    return (executor.execute(select(func.count()).select_from(limited)).scalar() or 0) < count


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_in(
    executor: Executor, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` of ``rows`` (tuples in ``columns`` order) in
    this transaction: the cheapest way in for many thousands of rows (no statement to
    parse, no arrays to split). Values are str (JSON columns: their text), int,
    datetime or None.
    """
    lines = ["\t".join(_copy_value(v) for v in row) for row in rows]
    lines.append("")
    copy_text(executor, table, columns, "\n".join(lines))


def copy_text(executor: Executor, table: Table, columns: Sequence[str], data: str) -> None:
    """``COPY`` of rows already in COPY's text format (``copy_escape`` each value)."""
    connection = executor.connection() if isinstance(executor, Session) else executor
    raw: Any = connection.connection.dbapi_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        copy.write(data)


def copy_escape(text: str) -> str:
    """A string as a value of COPY's text format."""
    return text.translate(_COPY_ESCAPES)


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return copy_escape(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def insert_arrays(
    executor: Executor,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: str | None = None,
    ignore_duplicates: bool = False,
) -> list[Any]:
    """Insert ``rows`` (all naming the same columns, Python-side defaults included) in
    one statement; returns the ``returning`` column of each row, in row order."""
    if not rows:
        return []
    if dialect_name(executor) != "postgresql":
        module: Any = sqlite
        statement = module.insert(table)
        if ignore_duplicates:
            statement = statement.on_conflict_do_nothing()
        if returning is None:
            executor.execute(statement, list(rows))
            return []
        statement = statement.returning(table.c[returning], sort_by_parameter_order=True)
        return list(executor.execute(statement, list(rows)).scalars())
    sql, parameters = postgres_insert(
        table, rows, returning=returning, ignore_duplicates=ignore_duplicates, style="named"
    )
    result = executor.execute(text(sql), parameters)
    if returning is None:
        return []
    return sorted_ids(result.scalars())


def postgres_insert(
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: str | None = None,
    ignore_duplicates: bool = False,
    style: str = "pyformat",
) -> tuple[str, dict[str, Any]]:
    """The PostgreSQL statement and parameters of ``insert_arrays``; ``style`` is the
    placeholder form: "pyformat" for psycopg itself, "named" for SQLAlchemy's text()."""
    columns = list(rows[0])
    arrays, selects, parameters = _arrays(_POSTGRESQL, table, columns, rows, style)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM unnest({', '.join(arrays)}) AS v({_names(columns)})"
        f"{' ON CONFLICT DO NOTHING' if ignore_duplicates else ''}"
        f"{f' RETURNING {returning}' if returning else ''}"
    )
    return sql, parameters


def sorted_ids(ids: Iterable[int]) -> list[int]:
    """The ids an ``INSERT ... SELECT FROM unnest`` returned, in row order: a sequence
    hands out ids in insertion order, and rows are inserted in the order unnest yields."""
    return sorted(ids)


def update_by_id(
    executor: Executor,
    table: Table,
    rows: Sequence[dict[str, Any]],
    also: Mapping[str, str] | None = None,
    also_parameters: Mapping[str, Any] | None = None,
) -> None:
    """Update the rows whose ``id`` each dict names, setting exactly the other columns
    it names (None sets NULL); one statement per distinct set of columns.

    ``also`` (PostgreSQL only): more assignments in the same statement, column to SQL
    over the row as it was (``t.column``) and ``also_parameters`` (``:name``, not
    ``a_...``): one new version of each row instead of two statements' two. Rows that
    name no column but ``id`` are left alone, ``also`` too."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(set(row) - {"id"})), []).append(row)
    postgres = dialect_name(executor) == "postgresql"
    if also and not postgres:
        raise ValueError("update_by_id: 'also' is for PostgreSQL")
    if also and any(set(also) & set(columns) for columns in by_columns):
        raise ValueError("update_by_id: 'also' assigns a column the rows set")
    if any(name.startswith("a_") for name in also_parameters or ()):
        raise ValueError("update_by_id: 'also_parameters' names may not start with 'a_'")
    for columns, group in by_columns.items():
        if not columns:
            continue
        if not postgres:
            statement = (
                update(table)
                .where(table.c.id == bindparam("v_id"))
                .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
            )
            executor.execute(statement, [{f"v_{k}": v for k, v in r.items()} for r in group])
            continue
        names = ["id", *columns]
        arrays, selects, parameters = _arrays(_POSTGRESQL, table, names, group, "named")
        assigned = [f"{c} = {s}" for c, s in zip(columns, selects[1:], strict=True)]
        assigned += [f"{column} = {sql}" for column, sql in (also or {}).items()]
        sql = (
            f"UPDATE {table.name} AS t SET {', '.join(assigned)} "
            f"FROM unnest({', '.join(arrays)}) AS v({_names(names)}) WHERE t.id = v.v_id"
        )
        executor.execute(text(sql), {**parameters, **(also_parameters or {})})


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f"v_{c}" for c in columns)


_SEPARATOR, _NULL = "\x1f", "\x1e"  # ASCII unit and record separators
_SPLIT = "chr(31), chr(30)"


def any_packed(parameter: str, sql_type: str) -> str:
    """``ANY (...)`` over the text parameter ``:parameter`` (``packed``), as ``sql_type``
    values: ``among`` for a statement written in SQL."""
    return f"ANY (CAST(string_to_array(:{parameter}, {_SPLIT}) AS {sql_type}[]))"


def packed(values: Sequence[Any]) -> str | None:
    """The values as one separated text, or None when they cannot be: a string holding
    a separator or NUL, or an empty one (``string_to_array('')`` is an empty array)."""
    nulls = values.count(None)
    kinds = {type(v) for v in values} - {type(None)}
    if kinds == {str}:
        texts = list(values)
        if "" in texts:
            return None
    elif kinds == {int}:
        texts = [str(v) for v in values]
    elif kinds == {float}:
        texts = [repr(v) for v in values]
    elif not kinds:
        texts = list(values)
    else:
        return None
    if nulls:
        texts = [_NULL if v is None else t for v, t in zip(values, texts, strict=True)]
    joined = _SEPARATOR.join(texts)
    if (
        joined.count(_SEPARATOR) != len(texts) - 1
        or joined.count(_NULL) != nulls
        or "\x00" in joined
    ):
        return None
    return joined


_ELEMENT_TYPES: dict[tuple[Any, str], str] = {}


def _element_type(column: Any, dialect: Dialect) -> str:
    """A column's SQL type name: compiled once (compiling costs more than the rest of a
    small group's statement, and the webhook writer builds one per commit)."""
    key = (column, dialect.name)
    found = _ELEMENT_TYPES.get(key)
    if found is None:
        type_ = column.type.dialect_impl(dialect)
        if getattr(type_, "collation", None):  # no COLLATE in an array's type: the
            type_ = type_.copy()  # column's own applies where the value lands
            type_.collation = None
        found = _ELEMENT_TYPES[key] = str(type_.compile(dialect=dialect))
    return found


def _arrays(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    style: str,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """The ``unnest`` arguments, the expressions that turn them back into column values,
    and the parameters."""
    arrays: list[str] = []
    selects: list[str] = []
    parameters: dict[str, Any] = {}
    for name in columns:
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, LargeBinary):
            values = [None if v is None else v.hex() for v in values]
            element, select = "TEXT", f"decode(v.v_{name}, 'hex')"
        elif isinstance(column_type, DateTime):
            values = [None if v is None else v.timestamp() for v in values]
            element, select = "FLOAT8", f"to_timestamp(v.v_{name})"
        else:
            element, select = _element_type(table.c[name], dialect), f"v.v_{name}"
        joined = packed(values)
        placeholder = f":a_{name}" if style == "named" else f"%(a_{name})s"
        if joined is None:
            arrays.append(f"CAST({placeholder} AS {element}[])")
            parameters[f"a_{name}"] = values
        else:
            arrays.append(f"CAST(string_to_array({placeholder}, {_SPLIT}) AS {element}[])")
            parameters[f"a_{name}"] = joined
        selects.append(select)
    return arrays, selects, parameters
