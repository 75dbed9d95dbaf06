"""PlanFilter as a SQLAlchemy WHERE clause: the rows a query returns are exactly the rows Check
allows.

    from verdict.sqlalchemy import Mapping

    notes = Mapping(Note, kind="Note", schema=schema, columns={
        "practice_id": Note.practice_id, "patient_id": Note.patient_id,
        "author_id": Note.author_id, "signed": Note.signed,
    })
    query = select(Note).where(notes.scope(verdict, "read", principal=principal))

A `Mapping` is declared once per model (a declarative class or a `Table`): which column holds each
resource attribute (dotted paths for nested ones), and optionally the kind's schema (`verdict
schema export`, read by verdict.schema). Declaring checks every column against its attribute's
declared type and refuses attributes the kind does not declare. `where(plan)` turns a PlanFilter
answer into a clause built of SQLAlchemy expressions, every literal a bound parameter:
ALWAYS_DENIED is `false()`, ALWAYS_ALLOWED `true()` (and the schema's checks, below); a filter
naming an attribute with no column raises MappingError: a clause is never dropped.

The semantics are the daemon's own SQL rendering (src/filter/sql.rs), which the property test
proves against Check, in SQLAlchemy:
- A comparison on an absent attribute is false. NULL columns make SQL comparisons NULL, which a
  WHERE treats as false; under NOT, the operand is `COALESCE(x, FALSE)`, so that `NOT` of an
  absent attribute's comparison is true, as in Check. (SQLAlchemy's own negation turns `NOT (a =
  b)` into `a != b`, NULL on an absent `a`: never used here.) Absent and null are the same to
  Check's filter, and to SQL: there is no `IS NULL` for `== null`.
- `exists` (CEL `has()`) is `IS NOT NULL`, never folded to true. JSON columns must store None as
  SQL NULL (`JSON(none_as_null=True)`); a JSON `null` that raw SQL wrote anyway (it reads as None)
  is absent too.
- Values of another type than the column's never compare equal (`==` is false, `!=` true where
  the column is not NULL, ordering false), as in CEL; `in` ignores them.
- Strings order by code point (`COLLATE "C"` on PostgreSQL; SQLite's BINARY); a column declared
  with a collation is compared under the code-point one for equality too.
- `contains` on a list column (JSON: `jsonb` on PostgreSQL, JSON text on SQLite) is an element of
  the literal's type equal to it; on anything but a list it is false. SQLite's JSON functions
  raise on text that is not JSON (raw SQL may write it), and SQLite evaluates both operands of an
  AND outside a WHERE's own jumps (in COALESCE, say): they only run behind `CASE WHEN
  json_valid(...)`, and PostgreSQL's jsonb_array_elements (which raises on a scalar) behind a CASE
  on the value's type. Such text is no list: no query fails on it.
- Without a schema declaring it, a list attribute the filter compares (contains, ==, in) must
  hold a list or nothing: a row holding a JSON scalar, an object or text that is not JSON there is
  left out. Check's condition fails on it with an error (`!("a" in tags)` on a string allows
  nothing) that the filter's NOT cannot express; leaving it out fails closed (Check may allow some
  such rows, an `||` absorbing the error; never the reverse).
- With a schema, the clause also holds every mapped column to its declared type, as Check refuses
  a resource that violates the schema before any rule: a required attribute is not NULL (unless
  the column is NOT NULL), a value has its type (on SQLite, whose columns hold anything,
  `typeof()`: a bool is the integer 0 or 1), enums are among their values, ints whole, list
  elements of their type, and non-empty strings and lists not empty.

Only SQLite and PostgreSQL are supported: compiling the clause for another dialect raises.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable
from typing import Mapping as MappingType

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from verdict.client import (
    ALWAYS_ALLOWED,
    ALWAYS_DENIED,
    CONDITIONAL,
    PlanResult,
    VerdictError,
)
from verdict.schema import BOOL, DOUBLE, ENUM, INT, LIST, STRING, AttributeType, Schema
from verdict.v1 import authorizer_pb2 as pb2
from google.protobuf import json_format

__all__ = ["Mapping", "MappingError"]

MAX_EXACT_INTEGER = 2**53
_SQL_OPS = {
    pb2.FILTER_OP_EQ: "eq", pb2.FILTER_OP_NE: "ne", pb2.FILTER_OP_LT: "lt",
    pb2.FILTER_OP_LE: "le", pb2.FILTER_OP_GT: "gt", pb2.FILTER_OP_GE: "ge",
}


class MappingError(VerdictError):
    """A column mapping that cannot hold the kind's attributes, or a plan it cannot express."""


# The kinds of values a column holds, as CEL compares them.
_TEXT, _NUMBER, _BOOLEAN, _LIST = "text", "number", "bool", "list"


def _column_kind(column: ColumnElement) -> str:
    t = column.type
    if isinstance(t, Boolean):
        return _BOOLEAN
    if isinstance(t, (Integer, Float, Numeric)):
        return _NUMBER
    if isinstance(t, String):
        return _TEXT
    if isinstance(t, JSON):
        return _LIST
    raise MappingError(f"column {column}: type {t!r} holds no value Verdict compares "
                       "(String, Integer, Float, Numeric, Boolean, or JSON for lists)")


_SCHEMA_KINDS = {STRING: _TEXT, ENUM: _TEXT, INT: _NUMBER, DOUBLE: _NUMBER, BOOL: _BOOLEAN,
                 LIST: _LIST}


def _value_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, (int, float)):
        return _NUMBER
    if isinstance(value, str):
        return _TEXT
    return None


class _PerDialect(ColumnElement):
    """A boolean expression whose SQL depends on the dialect: `build(dialect_name)` makes it, of
    SQLAlchemy expressions, when the statement is compiled."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, build: Callable[[str], ColumnElement]):
        self.build = build


@compiles(_PerDialect)
def _compile_per_dialect(element: _PerDialect, compiler, **kw) -> str:
    name = compiler.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise CompileError(f"verdict.sqlalchemy supports sqlite and postgresql, not {name}")
    return compiler.process(element.build(name), **kw)


class _Column:
    """One mapped attribute: its column, what the column holds, and its declared type."""

    def __init__(self, attribute: str, column: ColumnElement, declared: AttributeType | None):
        self.attribute = attribute
        self.column = column
        self.kind = _column_kind(column)
        self.declared = declared
        self.collation = getattr(column.type, "collation", None)
        self.nullable = getattr(column, "nullable", True) is not False
        if declared is not None and _SCHEMA_KINDS.get(declared.type) != self.kind:
            raise MappingError(
                f"attribute {attribute!r} is declared {declared.type} but column {column} is "
                f"{column.type!r}")
        if self.kind == _LIST and not getattr(column.type, "none_as_null", False):
            raise MappingError(
                f"column {column} for list attribute {attribute!r} must be "
                "JSON(none_as_null=True): a JSON null would count as a present value")

    # --- the filter's leaves -------------------------------------------------------------

    def compare(self, op: str, value: Any) -> ColumnElement:
        c = self.column
        if _value_kind(value) != self.kind:
            # CEL: values of different types are unequal, and not ordered.
            return self.exists() if op == "ne" else false()
        if self.kind == _TEXT and (op not in ("eq", "ne") or self.collation):
            return _PerDialect(lambda d: _ordered(_code_points(c, d), op, value))
        return _ordered(c, op, value)

    def one_of(self, values: list[Any]) -> ColumnElement:
        values = [v for v in values if _value_kind(v) == self.kind]
        if not values:
            return false()
        c = self.column
        bound = [_bound(v) for v in values]
        if self.kind == _TEXT and self.collation:
            return _PerDialect(lambda d: _code_points(c, d).in_(bound))
        return c.in_(bound)

    def contains(self, value: Any) -> ColumnElement:
        kind = _value_kind(value)
        if self.kind != _LIST or kind is None:
            return false()
        return _PerDialect(lambda d: _list_contains(self.column, value, kind, d))

    def exists(self) -> ColumnElement:
        """Not NULL; for a list column, nor a JSON null (raw SQL may write one, which reads as
        None: absent). Never NULL itself."""
        c = self.column
        if self.kind != _LIST:
            return c.is_not(None)

        def build(dialect: str) -> ColumnElement:
            if dialect == "postgresql":
                return and_(c.is_not(None), func.jsonb_typeof(c) != "null").self_group()
            return case((func.json_valid(c) == 1, func.json_type(c) != "null"), else_=c.is_not(None))

        return _PerDialect(build)

    def list_or_absent(self) -> ColumnElement:
        """NULL, JSON null or a JSON array (never NULL itself)."""
        c = self.column

        def build(dialect: str) -> ColumnElement:
            if dialect == "postgresql":
                return or_(c.is_(None), func.jsonb_typeof(c).in_(["array", "null"])).self_group()
            return case((func.json_valid(c) == 1, func.json_type(c).in_(["array", "null"])),
                        else_=c.is_(None))

        return _PerDialect(build)

    # --- the schema's checks -------------------------------------------------------------

    def conformance(self, compared: bool) -> ColumnElement | None:
        """What makes this column hold a value of its declared type (None: no schema).
        `compared`: the filter holds only where the column is not NULL."""
        if self.declared is None:
            return None
        guard = self.type_guard(self.declared)
        if compared:
            return guard
        if self.declared.required and self.nullable:
            return and_(self.column.is_not(None), guard)
        absent = not_(self.exists()) if self.kind == _LIST else self.column.is_(None)
        return or_(absent, guard)

    def type_guard(self, d: AttributeType) -> ColumnElement:
        """What makes a non-NULL column hold a value of type `d`."""
        c = self.column
        typed = _PerDialect(lambda dialect: _typed(c, d, dialect))
        if d.non_empty and d.type in (STRING, ENUM):
            return and_(typed, c != literal("", String()))
        if d.non_empty and d.type == LIST:
            return and_(typed, _PerDialect(lambda dialect: _list_not_empty(c, dialect)))
        return typed


def _code_points(column: ColumnElement, dialect: str) -> ColumnElement:
    return column.collate("C" if dialect == "postgresql" else "BINARY")


def _bound(value: Any) -> ColumnElement:
    """A bound parameter of the value's own type (not the column's: no collation rides along),
    also for True and False, which SQLAlchemy would otherwise render as constants and refuse to
    order."""
    kind = _value_kind(value)
    return literal(value, {_TEXT: String(), _NUMBER: Float(), _BOOLEAN: Boolean()}[kind])


def _ordered(c: ColumnElement, op: str, value: Any) -> ColumnElement:
    value = _bound(value)
    return {
        "eq": lambda: c == value, "ne": lambda: c != value, "lt": lambda: c < value,
        "le": lambda: c <= value, "gt": lambda: c > value, "ge": lambda: c >= value,
    }[op]()


def _json_each(column: ColumnElement):
    return func.json_each(column).table_valued("value", "type")


_SQLITE_JSON_TYPES = {_TEXT: ("text",), _NUMBER: ("integer", "real"), _BOOLEAN: ("true", "false")}
_PG_JSON_TYPES = {_TEXT: "string", _NUMBER: "number", _BOOLEAN: "boolean"}
_PG_CASTS = {_TEXT: Text, _NUMBER: Float(53), _BOOLEAN: Boolean}


def _list_contains(column: ColumnElement, value: Any, kind: str, dialect: str) -> ColumnElement:
    if dialect == "postgresql":
        element = cast(literal(value), _PG_CASTS[kind])
        return column.op("@>", is_comparison=True)(func.jsonb_build_array(element))
    each = _json_each(column)
    return _if_json(column, and_(
        func.json_type(column) == "array",
        exists(select(literal(1)).select_from(each).where(
            each.c.type.in_(_SQLITE_JSON_TYPES[kind]), each.c.value == value)),
    ))


def _if_json(column: ColumnElement, then: ColumnElement) -> ColumnElement:
    """`then` where the SQLite column holds JSON, false elsewhere: CASE, because SQLite's JSON
    functions raise on text that is not JSON and an AND may evaluate both operands."""
    return case((func.json_valid(column) == 1, then), else_=false())


def _list_not_empty(column: ColumnElement, dialect: str) -> ColumnElement:
    """Not []. On PostgreSQL a comparison, not jsonb_array_length: that raises on a scalar, and
    PostgreSQL evaluates an AND's operands in any order (the type guard's array test may come
    second). On SQLite only where the column holds JSON (json_array_length raises elsewhere)."""
    if dialect == "postgresql":
        return column.op("<>", is_comparison=True)(cast(literal("[]", String()), JSONB))
    return _if_json(column, func.json_array_length(column) > 0)


def _typed(c: ColumnElement, d: AttributeType, dialect: str) -> ColumnElement:
    """What makes a non-NULL column hold a value of type `d`, beyond what its SQL type ensures
    (PostgreSQL's text, number and boolean columns hold nothing else: `true()`)."""
    sqlite = dialect == "sqlite"
    if d.type == STRING:
        return func.typeof(c) == "text" if sqlite else true()
    if d.type == DOUBLE:
        return func.typeof(c).in_(["integer", "real"]) if sqlite else true()
    if d.type == BOOL:
        return and_(func.typeof(c) == "integer", type_coerce(c, Integer).in_([0, 1])) if sqlite else true()
    if d.type == INT:
        if sqlite:
            return and_(func.typeof(c).in_(["integer", "real"]), c == cast(c, Integer),
                        func.abs(c) <= MAX_EXACT_INTEGER)
        return and_(c == func.trunc(c), func.abs(c) <= MAX_EXACT_INTEGER)
    if d.type == ENUM:
        members = c.in_(list(d.values))
        return and_(func.typeof(c) == "text", members) if sqlite else members
    if d.type == LIST:
        element = d.items.type if d.items is not None else None
        kind = _SCHEMA_KINDS.get(element) if element is not None else None
        if sqlite:
            each = _json_each(c)
            wrong = (not_(each.c.type.in_(_SQLITE_JSON_TYPES[kind])) if kind in _SQLITE_JSON_TYPES
                     else false())
            return _if_json(c, and_(func.json_type(c) == "array",
                                    not_(exists(select(literal(1)).select_from(each).where(wrong)))))
        elements = func.jsonb_array_elements(c).table_valued("value").alias("e")
        wrong = (func.jsonb_typeof(elements.c.value) != _PG_JSON_TYPES[kind]
                 if kind in _PG_JSON_TYPES else false())
        # jsonb_array_elements raises on a scalar: only where the value is an array.
        return case((func.jsonb_typeof(c) == "array",
                     not_(exists(select(literal(1)).select_from(elements).where(wrong)))),
                    else_=false())
    raise MappingError(f"no column holds a {d.type}")


def _resolve(model: Any) -> Table:
    table = getattr(model, "__table__", model)
    if not isinstance(table, Table):
        raise MappingError(f"{model!r} is neither a Table nor a declarative model")
    return table


class Mapping:
    """The columns of one model (a declarative class or a Table) for the resources of one kind.
    `columns` maps each attribute (dotted path) to a column: a model attribute (`Note.signed`), a
    Column, or a column name of the table. `schema` (verdict.schema.Schema, from `verdict schema
    export`) holds the columns to the kind's declared types, as Check holds requests to them; it
    is required, and `None` only for a policy set without a schema (the columns' own types then
    decide how values compare): a typed set mapped without its schema would select rows Check
    refuses for their types."""

    def __init__(self, model: Any, *, kind: str, columns: MappingType[str, Any],
                 schema: Schema | None):
        self.table = _resolve(model)
        self.kind = kind
        declared = schema.kind(kind) if schema is not None else None
        self.columns: dict[str, _Column] = {}
        for attribute, column in columns.items():
            if isinstance(column, str):
                if column not in self.table.c:
                    raise MappingError(f"attribute {attribute!r}: table {self.table.name} has no "
                                       f"column {column!r}")
                column = self.table.c[column]
            column = getattr(column, "expression", column)
            if not isinstance(column, ColumnElement):
                raise MappingError(f"attribute {attribute!r}: {column!r} is not a column")
            if declared is not None and attribute not in declared:
                raise MappingError(f"attribute {attribute!r} is not declared for kind {kind!r} "
                                   f"in the schema (declared: {sorted(declared)})")
            self.columns[attribute] = _Column(attribute, column,
                                              declared.get(attribute) if declared else None)

    def where(self, plan: PlanResult) -> ColumnElement:
        """The WHERE clause selecting exactly the rows `plan` allows."""
        if plan.resource_kind and plan.resource_kind != self.kind:
            raise MappingError(f"a plan for kind {plan.resource_kind!r} on the mapping of "
                               f"{self.kind!r}")
        if plan.kind == ALWAYS_DENIED:
            return false()
        if plan.kind == ALWAYS_ALLOWED:
            clause, present = true(), set()
        elif plan.kind == CONDITIONAL and plan.filter is not None:
            clause, present = self._filter(plan.filter), _implied_present(plan.filter)
        else:
            raise MappingError(f"cannot use a plan of kind {plan.kind!r}")
        guards = [g for g in (c.conformance(a in present) for a, c in self.columns.items())
                  if g is not None]
        if plan.kind == CONDITIONAL:
            # Undeclared list attributes the filter compares hold a list or nothing (see above).
            guards += [self.columns[a].list_or_absent() for a in sorted(_compared(plan.filter))
                       if self.columns[a].kind == _LIST and self.columns[a].declared is None]
        if not guards:
            return clause
        return and_(*guards, clause) if plan.kind == CONDITIONAL else and_(*guards)

    def scope(self, verdict, action: str, **ask) -> ColumnElement:
        """Plans `action` on this kind (Verdict.plan_filter's keywords: principal or token,
        context, known_attr...) and returns where(plan)."""
        return self.where(verdict.plan_filter(self.kind, action, **ask))

    async def scope_async(self, verdict, action: str, **ask) -> ColumnElement:
        """As scope, with an AsyncVerdict."""
        return self.where(await verdict.plan_filter(self.kind, action, **ask))

    def _column(self, attribute: str) -> _Column:
        try:
            return self.columns[attribute]
        except KeyError:
            raise MappingError(
                f"the plan for kind {self.kind!r} reads attribute {attribute!r}, which has no "
                f"column in the mapping of {self.table.name} (mapped: {sorted(self.columns)})"
            ) from None

    def _filter(self, f: pb2.Filter) -> ColumnElement:
        op = f.op
        if op in _SQL_OPS:
            return self._column(f.attribute).compare(_SQL_OPS[op], _literal(f.value))
        if op == pb2.FILTER_OP_IN:
            return self._column(f.attribute).one_of([_literal(v) for v in f.values])
        if op == pb2.FILTER_OP_CONTAINS:
            return self._column(f.attribute).contains(_literal(f.value))
        if op == pb2.FILTER_OP_EXISTS:
            return self._column(f.attribute).exists()
        if op == pb2.FILTER_OP_AND:
            return and_(*map(self._filter, f.operands)) if f.operands else true()
        if op == pb2.FILTER_OP_OR:
            return or_(*map(self._filter, f.operands)) if f.operands else false()
        if op == pb2.FILTER_OP_NOT:
            if len(f.operands) != 1:
                raise MappingError(f"a not with {len(f.operands)} operands")
            return not_(func.coalesce(self._filter(f.operands[0]), false()))
        raise MappingError(f"unknown filter operator {op}")


def _literal(v) -> Any:
    value = json_format.MessageToDict(v)
    if _value_kind(value) is None:
        raise MappingError(f"a filter literal must be a string, number or bool, not {value!r}")
    return value


def _compared(f: pb2.Filter) -> set[str]:
    """The attributes a filter compares to a value anywhere (all but `exists`)."""
    if f.op in _SQL_OPS or f.op in (pb2.FILTER_OP_IN, pb2.FILTER_OP_CONTAINS):
        return {f.attribute}
    return set().union(*(_compared(o) for o in f.operands))


def _implied_present(f: pb2.Filter) -> set[str]:
    """The attributes a filter compares at its top level (a leaf, or leaves of its top
    conjunction): where the filter holds, they are present."""
    if f.op in _SQL_OPS or f.op in (pb2.FILTER_OP_IN, pb2.FILTER_OP_CONTAINS, pb2.FILTER_OP_EXISTS):
        return {f.attribute}
    if f.op == pb2.FILTER_OP_AND:
        return set().union(*(_implied_present(o) for o in f.operands))
    return set()
