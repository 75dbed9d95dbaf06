"""verdict.sqlalchemy against the filter language's own semantics, without a daemon: random filter
trees (every operator, literals of the column's type and of others, nested not/and/or) over random
rows (NULLs included) in SQLite and PostgreSQL; the rows each clause selects must be exactly the
rows a reference evaluator of the tree selects. The evaluator is the semantics proto/ documents
and src/filter/mod.rs (`Filter::matches`) implements: a comparison on an absent or null attribute
is false, values of different types are unequal and unordered, `not` is plain negation. Trees the
planner does not emit today (a `not` over a bare comparison) are among them: the mapping must be
exact for every tree the API can carry.

A `non_empty` list column holding [], a JSON scalar, an object or (SQLite) text that is no JSON:
the rows that do not fit the schema are left out, never an error that fails the query. Without a
schema, a plan comparing a list column leaves out the rows where it holds no list (Check's
condition fails on them), and no query fails on text that is no JSON, also under `not`.

Then the mapping's refusals: an attribute with no column, an attribute the schema does not
declare, a column whose type is not the declared one, a JSON column that stores None as a JSON
null, a plan for another kind, another dialect; and that literals are always bound parameters.

    python clients/python/tests/sqlalchemy_semantics.py [--postgres "host=... dbname=..."]

Prints a summary line; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

from google.protobuf import struct_pb2
from sqlalchemy import (JSON, Boolean, Column, Float, Integer, MetaData, String, Table,
                        create_engine, select)
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import CompileError

from verdict.client import ALWAYS_ALLOWED, ALWAYS_DENIED, CONDITIONAL, PlanResult
from verdict.schema import Schema
from verdict.sqlalchemy import Mapping, MappingError
from verdict.v1 import authorizer_pb2 as pb2

COLUMNS = {
    "name": ("text", ["a", "A", "b", "B", "m", "z", "Ärz", "", "ab"]),
    "n": ("number", [0.0, 1.0, 2.5, 10.0, -3.0]),
    "flag": ("bool", [True, False]),
    "tags": ("list", [[], ["x"], ["x", "y"], ["y"], [1.0], ["x", 2.5], [True]]),
}
LITERALS = ["a", "A", "b", "B", "m", "Ärz", "", "x", "y", 0.0, 1.0, 2.5, 10.0, True, False]
CMP = [pb2.FILTER_OP_EQ, pb2.FILTER_OP_NE, pb2.FILTER_OP_LT, pb2.FILTER_OP_LE, pb2.FILTER_OP_GT,
       pb2.FILTER_OP_GE]


def value(v) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, (int, float)):
        out.number_value = v
    else:
        out.string_value = v
    return out


def kind_of(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    return "list"


def cel_equal(a, b) -> bool:
    if kind_of(a) != kind_of(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(cel_equal(x, y) for x, y in zip(a, b))
    return a == b


def cel_compare(a, b):
    if kind_of(a) != kind_of(b) or isinstance(a, list):
        return None
    return (a > b) - (a < b)


def matches(f: pb2.Filter, row: dict) -> bool:
    """The reference: src/filter/mod.rs `Filter::matches`."""
    op, x = f.op, row.get(f.attribute)
    lit = lambda v: json.loads(json.dumps(_py(v)))  # noqa: E731
    if op in CMP:
        if x is None:
            return False
        v = lit(f.value)
        if op == pb2.FILTER_OP_EQ:
            return cel_equal(x, v)
        if op == pb2.FILTER_OP_NE:
            return not cel_equal(x, v)
        c = cel_compare(x, v)
        return c is not None and {pb2.FILTER_OP_LT: c < 0, pb2.FILTER_OP_LE: c <= 0,
                                  pb2.FILTER_OP_GT: c > 0, pb2.FILTER_OP_GE: c >= 0}[op]
    if op == pb2.FILTER_OP_IN:
        return x is not None and any(cel_equal(x, lit(v)) for v in f.values)
    if op == pb2.FILTER_OP_CONTAINS:
        return isinstance(x, list) and any(cel_equal(i, lit(f.value)) for i in x)
    if op == pb2.FILTER_OP_EXISTS:
        return x is not None
    if op == pb2.FILTER_OP_AND:
        return all(matches(o, row) for o in f.operands)
    if op == pb2.FILTER_OP_OR:
        return any(matches(o, row) for o in f.operands)
    if op == pb2.FILTER_OP_NOT:
        return not matches(f.operands[0], row)
    raise ValueError(op)


def _py(v: struct_pb2.Value):
    which = v.WhichOneof("kind")
    return {"bool_value": v.bool_value, "number_value": v.number_value,
            "string_value": v.string_value}[which]


def random_filter(rng: random.Random, depth: int) -> pb2.Filter:
    roll = rng.randrange(10)
    if depth > 0 and roll < 4:
        op = rng.choice([pb2.FILTER_OP_AND, pb2.FILTER_OP_OR, pb2.FILTER_OP_NOT, pb2.FILTER_OP_NOT])
        count = 1 if op == pb2.FILTER_OP_NOT else rng.randint(0, 3)
        return pb2.Filter(op=op, operands=[random_filter(rng, depth - 1) for _ in range(count)])
    attribute = rng.choice(list(COLUMNS))
    own = [v for v in LITERALS if kind_of(v) == COLUMNS[attribute][0]] or LITERALS
    literal = rng.choice(own if rng.random() < 0.8 else LITERALS)
    leaf = rng.randrange(10)
    if leaf < 6:
        return pb2.Filter(op=rng.choice(CMP), attribute=attribute, value=value(literal))
    if leaf < 8:
        values = [rng.choice(own if rng.random() < 0.8 else LITERALS) for _ in range(rng.randint(0, 3))]
        return pb2.Filter(op=pb2.FILTER_OP_IN, attribute=attribute, values=[value(v) for v in values])
    if leaf < 9:
        return pb2.Filter(op=pb2.FILTER_OP_CONTAINS, attribute=attribute,
                          value=value(rng.choice(["x", "y", 1.0, 2.5, True])))
    return pb2.Filter(op=pb2.FILTER_OP_EXISTS, attribute=attribute)


def table_for(metadata: MetaData, name: str) -> Table:
    # Text under a collation that is not code-point order (case-insensitive on SQLite, ICU's
    # English on PostgreSQL): the mapping must still compare by code point, as CEL does.
    collated = String(collation="NOCASE").with_variant(String(collation="en-x-icu"), "postgresql")
    types = {"text": collated, "number": Float(), "bool": Boolean(),
             "list": JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")}
    return Table(name, metadata, Column("id", Integer, primary_key=True),
                 *[Column(c, types[t]) for c, (t, _) in COLUMNS.items()])


def semantics(engines: dict, rng: random.Random, trees: int, failures: list[str]) -> int:
    rows = []
    for i in range(80):
        row = {"id": i}
        for c, (_, values) in COLUMNS.items():
            row[c] = None if rng.random() < 0.2 else rng.choice(values)
        rows.append(row)
    checked = 0
    for name, (engine, metadata) in engines.items():
        table = table_for(metadata, "semantics_rows")
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        mapping = Mapping(table, kind="Row", columns={c: c for c in COLUMNS}, schema=None)
        tree_rng = random.Random(rng.random())
        for _ in range(trees):
            f = random_filter(tree_rng, 3)
            plan = PlanResult(policy_version="", kind=CONDITIONAL, resource_kind="Row", filter=f)
            expected = {r["id"] for r in rows if matches(f, r)}
            query = select(table.c.id).where(mapping.where(plan))
            with engine.connect() as conn:
                got = set(conn.execute(query).scalars())
            checked += 1
            if got != expected:
                failures.append(f"{name}: {f}\n  sql {query.compile(engine)}\n  "
                                f"selected but false {sorted(got - expected)[:5]}, "
                                f"true but not selected {sorted(expected - got)[:5]}")
    return checked


def expect_error(failures: list[str], what: str, error, call) -> None:
    try:
        call()
        failures.append(f"{what}: no error")
    except error:
        pass


def refusals(failures: list[str]) -> None:
    metadata = MetaData()
    table = table_for(metadata, "refusals")
    schema = Schema.from_json({"$defs": {"kinds": {"Row": {"properties": {"attr": {
        "type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        }}}}}}})
    mapping = Mapping(table, kind="Row", columns={"name": table.c.name}, schema=None)
    plan = lambda f, kind=CONDITIONAL, rk="Row": PlanResult("", kind, rk, filter=f)  # noqa: E731
    secret = pb2.Filter(op=pb2.FILTER_OP_EQ, attribute="secret", value=value("x"))
    expect_error(failures, "an attribute with no column", MappingError,
                 lambda: mapping.where(plan(pb2.Filter(op=pb2.FILTER_OP_OR, operands=[
                     pb2.Filter(op=pb2.FILTER_OP_EXISTS, attribute="name"), secret]))))
    expect_error(failures, "an attribute the schema does not declare", MappingError,
                 lambda: Mapping(table, kind="Row", schema=schema, columns={"flag": table.c.flag}))
    expect_error(failures, "a kind the schema does not declare", Exception,
                 lambda: Mapping(table, kind="Nope", schema=schema, columns={}))
    expect_error(failures, "a text column for an int", MappingError,
                 lambda: Mapping(table, kind="Row", schema=schema, columns={"n": table.c.name}))
    expect_error(failures, "a column name the table lacks", MappingError,
                 lambda: Mapping(table, kind="Row", columns={"name": "nom"}, schema=None))
    bare_json = Table("bare", MetaData(), Column("tags", JSON()))
    expect_error(failures, "JSON that stores None as null", MappingError,
                 lambda: Mapping(bare_json, kind="Row", columns={"tags": "tags"}, schema=None))
    expect_error(failures, "a plan for another kind", MappingError,
                 lambda: mapping.where(plan(None, ALWAYS_ALLOWED, "Other")))
    if str(mapping.where(plan(None, ALWAYS_DENIED)).compile()) != "false":
        failures.append("ALWAYS_DENIED is not false()")
    if str(mapping.where(plan(None, ALWAYS_ALLOWED)).compile()) != "true":
        failures.append("ALWAYS_ALLOWED without a schema is not true()")
    typed = Mapping(table, kind="Row", schema=schema, columns={"name": "name", "n": "n"})
    injected = "x'; DROP TABLE refusals; --"
    clause = typed.where(plan(pb2.Filter(op=pb2.FILTER_OP_LT, attribute="name",
                                         value=value(injected))))
    for dialect in (create_engine("sqlite://").dialect,
                    create_engine("postgresql+psycopg://").dialect):
        compiled = clause.compile(dialect=dialect)
        if injected in str(compiled) or injected not in compiled.params.values():
            failures.append(f"{dialect.name}: the literal is not a bound parameter: {compiled}")
    expect_error(failures, "a dialect other than sqlite and postgresql", CompileError,
                 lambda: str(clause.compile(dialect=mysql.dialect())))


def non_empty_lists(engines: dict, failures: list[str]) -> int:
    """A `non_empty` (minItems) list column holding [], a list of strings, a JSON scalar, an
    object, a list of numbers, NULL (and, on SQLite, text that is no JSON): only the non-empty
    list of strings fits the schema, and NULL where the attribute is optional. The rows that do
    not fit are left out, never an error that fails the whole query."""
    schema = Schema.from_json({"$defs": {"kinds": {"Row": {"properties": {"attr": {
        "type": "object", "properties": {"tags": {"anyOf": [
            {"type": "array", "items": {"type": "string"}, "minItems": 1}, {"type": "null"}]}},
    }}}}}})
    values = {1: [], 2: ["x"], 3: "s", 4: {"k": 1}, 5: [1], 6: None}
    plan = lambda f, kind=CONDITIONAL: PlanResult("", kind, "Row", filter=f)  # noqa: E731
    checked = 0
    for name, (engine, metadata) in engines.items():
        list_type = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
        table = Table("non_empty_lists", metadata, Column("id", Integer, primary_key=True),
                      Column("tags", list_type))
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "tags": v} for i, v in values.items()])
            # A JSON null written by raw SQL: absent, as it reads (None), and tags is optional.
            conn.exec_driver_sql(f"INSERT INTO {table.fullname} VALUES (8, 'null')")
            if name == "sqlite":
                conn.exec_driver_sql(f"INSERT INTO {table.name} VALUES (7, 'nope')")
        mapping = Mapping(table, kind="Row", columns={"tags": "tags"}, schema=schema)
        for what, p, expected in [
            ("every row that fits", plan(None, ALWAYS_ALLOWED), {2, 6, 8}),
            ("has(tags)", plan(pb2.Filter(op=pb2.FILTER_OP_EXISTS, attribute="tags")), {2}),
        ]:
            checked += selects(engine, select(table.c.id).where(mapping.where(p)), expected,
                               f"{name}: non_empty list, {what}", failures)
    return checked


def selects(engine, query, expected: set, label: str, failures: list[str]) -> int:
    """Runs `query` (ids); a failure if it raises or selects other ids than `expected`. 1 when
    it ran, for the count of checks."""
    try:
        with engine.connect() as conn:
            got = set(conn.execute(query).scalars())
    except Exception as e:  # noqa: BLE001 (reported as a failure)
        failures.append(f"{label}: {e}")
        return 0
    if got != expected:
        failures.append(f"{label}: selected {sorted(got)}, expected {sorted(expected)}\n"
                        f"  sql {query.compile(engine)}")
    return 1


def lists_holding_no_list(engines: dict, failures: list[str]) -> int:
    """Without a schema, a list column holding a JSON scalar, an object or (SQLite) text that is
    no JSON or truncated JSON: `contains` and its negation (`exists && !contains`, as the daemon
    plans `!("a" in R.attr.tags)`) select only rows holding lists, `has()` any value, and no query
    fails: Check's condition fails on a scalar with an error (no rule allows), which the filter's
    NOT would turn into a match."""
    values = {1: ["a"], 2: ["b"], 3: "a", 4: {"k": "a"}, 5: [True], 6: None}
    # 9: a JSON null written by raw SQL (it reads as None: absent).
    plan = lambda f: PlanResult("", CONDITIONAL, "Row", filter=f)  # noqa: E731
    contains = lambda v: pb2.Filter(op=pb2.FILTER_OP_CONTAINS, attribute="tags", value=value(v))  # noqa: E731
    exists = pb2.Filter(op=pb2.FILTER_OP_EXISTS, attribute="tags")
    checked = 0
    for name, (engine, metadata) in engines.items():
        list_type = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
        table = Table("lists_holding_no_list", metadata, Column("id", Integer, primary_key=True),
                      Column("tags", list_type))
        table.create(engine)
        present = {i for i, v in values.items() if v is not None}
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "tags": v} for i, v in values.items()])
            conn.exec_driver_sql(f"INSERT INTO {table.fullname} VALUES (9, 'null')")
            if name == "sqlite":
                conn.exec_driver_sql(f"INSERT INTO {table.name} VALUES (7, 'nope'), (8, '[\"a\"')")
                present |= {7, 8}
        mapping = Mapping(table, kind="Row", columns={"tags": "tags"}, schema=None)
        for what, f, expected in [
            ('tags contains "a"', contains("a"), {1}),
            ('exists(tags) && !tags contains "a"', pb2.Filter(op=pb2.FILTER_OP_AND, operands=[
                exists, pb2.Filter(op=pb2.FILTER_OP_NOT, operands=[contains("a")])]), {2, 5}),
            ("tags contains true", contains(True), {5}),
            ("tags contains 1", contains(1.0), set()),
            ('tags != "x"', pb2.Filter(op=pb2.FILTER_OP_NE, attribute="tags", value=value("x")),
             {1, 2, 5}),
            ("exists(tags)", exists, present),
            ("!exists(tags)", pb2.Filter(op=pb2.FILTER_OP_NOT, operands=[exists]), {6, 9}),
        ]:
            checked += selects(engine, select(table.c.id).where(mapping.where(plan(f))), expected,
                               f"{name}: list holding no list, {what}", failures)
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a libpq connection string")
    parser.add_argument("--trees", type=int, default=400)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("VERDICT_TEST_SEED", 20261129)))
    args = parser.parse_args()
    engines = {"sqlite": (create_engine("sqlite://"), MetaData())}
    pg_schema = f"verdict_py_semantics_{os.getpid()}"
    if args.postgres:
        import psycopg

        engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(args.postgres))
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {pg_schema}")
        engines["postgresql"] = (engine, MetaData(schema=pg_schema))
    failures: list[str] = []
    try:
        checked = semantics(engines, random.Random(args.seed), args.trees, failures)
        checked += non_empty_lists(engines, failures)
        checked += lists_holding_no_list(engines, failures)
        refusals(failures)
    finally:
        if "postgresql" in engines:
            with engines["postgresql"][0].begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")
    for f in failures[:10]:
        print("FAIL", f)
    print(f"semantics: {checked} trees on {', '.join(engines)}; {len(failures)} failures; "
          f"seed {args.seed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
