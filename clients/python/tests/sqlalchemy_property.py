"""The proof that verdict.sqlalchemy never disagrees with Check: random rows (absent, null and
type-confused attributes included) in real databases, random principals, every action; for each
(principal, kind, action) the rows the SQLAlchemy query selects must be exactly the rows Check
allows, each row Checked through the daemon as the database gives it back.

    python clients/python/tests/sqlalchemy_property.py --server 127.0.0.1:50051 --set clinic \
        --schema schema.json [--postgres "host=... dbname=..."] [--principals 40] [--rows 120]

`--set` picks the policy set the daemon runs and the tables that go with it: `clinic` (the bundled
clinic, typed: `--schema` is its `verdict schema export`), `docs` (tests/scenarios/plan: every
filter operator, untyped), `overgrant` (tests/policies: has(), `!= null`, `== null`, `all()`,
the conditions other adapters turned into over-grants) or `wards` (tests/scenarios/wards, typed:
non_empty strings and lists holding "" and []). A plan the daemon refuses
(FAILED_PRECONDITION) must raise, and give no clause. SQLite (in memory) always runs; PostgreSQL
when `--postgres` names a server (a schema of its own, dropped at the end). Clinic kinds are
declarative models, the others Tables. Prints a summary line; exits 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass, field

import grpc
from sqlalchemy import JSON, Boolean, Column, Float, MetaData, String, Table, create_engine, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from verdict import Verdict, describe
from verdict.schema import Schema
from verdict.sqlalchemy import Mapping

TEXT, NUMBER, BOOL, LIST = "text", "number", "bool", "list"


@dataclass
class Kind:
    name: str
    # attribute -> (type, values)
    attributes: dict[str, tuple[str, list]]
    # attribute -> values of the wrong type (or empty where the schema says non-empty)
    confused: dict[str, list] = field(default_factory=dict)


def clinic_kinds() -> list[Kind]:
    practice, patient = ["7", "9"], ["123", "124", "456"]
    return [
        Kind("Patient", {
            "practice_id": (TEXT, practice), "patient_id": (TEXT, patient),
            "state": (TEXT, ["CA", "NY", "TX"]), "celebrity": (BOOL, [True, False, False]),
            "primary_physician_id": (TEXT, ["dr-wilson", "dr-house"]),
        }, {"celebrity": ["yes", 2, "true"], "practice_id": [""], "primary_physician_id": [""]}),
        Kind("Note", {
            "practice_id": (TEXT, practice), "patient_id": (TEXT, patient),
            "author_id": (TEXT, ["dr-wilson", "dr-house"]), "signed": (BOOL, [True, False]),
        }, {"signed": ["no", -1], "author_id": [""]}),
        Kind("Observation", {
            "practice_id": (TEXT, practice), "patient_id": (TEXT, patient),
            "category": (TEXT, ["laboratory", "vital-signs"]),
        }, {"category": ["lab", "Laboratory", 3]}),
        Kind("MedicationRequest", {
            "practice_id": (TEXT, practice), "patient_id": (TEXT, patient),
            "patient_state": (TEXT, ["CA", "NY", "TX"]),
        }, {"patient_state": ["", 1.5]}),
        Kind("Invoice", {
            "practice_id": (TEXT, practice), "patient_id": (TEXT, patient),
            "amount": (NUMBER, [50.0, 100.0, 250.5]),
        }, {"amount": ["lots", True]}),
    ]


def docs_kinds() -> list[Kind]:
    return [Kind("Doc", {
        "owner": (TEXT, ["u1", "u2", "u3"]),
        "level": (NUMBER, [1.0, 2.0, 3.0, 4.5]),
        "tags": (LIST, [[], ["x"], ["secret"], ["x", "archived"], ["g1", "secret"], ["g2"]]),
        "public": (BOOL, [True, False]),
        "region": (TEXT, ["east", "north", "south", "west", "Ärz"]),
        "score": (NUMBER, [5.0, 10.0, 50.5, 60.0, 90.0, 99.9]),
    })]


def overgrant_kinds() -> list[Kind]:
    return [Kind("Item", {
        "owner": (TEXT, ["u1", "u2", "u3"]),
        "score": (NUMBER, [1.0, 2.5, 10.0, 60.0]),
        "tags": (LIST, [[], ["x"], ["secret"], ["vip", "x"], ["vip", "secret"]]),
        "flag": (BOOL, [True, False]),
    })]


def wards_kinds() -> list[Kind]:
    # "" and [] are values of the column's type that the schema refuses (non_empty).
    return [Kind("Ward", {
        "name": (TEXT, ["w", "v", ""]),
        "nurses": (LIST, [["u1"], ["u2", "dr-house"], []]),
        "note": (TEXT, ["a", "u1", ""]),
        "tags": (LIST, [["x"], ["x", "y"], []]),
        "open": (BOOL, [True, False]),
    }, {"tags": [["x", 1]], "note": [3]})]


SETS = {"clinic": clinic_kinds, "docs": docs_kinds, "overgrant": overgrant_kinds,
        "wards": wards_kinds}
ACTIONS = {
    "wards": ["read", "update", "delete", "share"],
    "clinic": ["read", "search", "create", "update", "delete", "sign"],
    "docs": ["read", "search", "create", "update", "delete", "sign"],
    "overgrant": ["read", "update", "claim", "search", "delete", "rate"],
}


def random_rows(rng: random.Random, kind: Kind, count: int) -> list[tuple[str, dict]]:
    rows = []
    for i in range(count):
        attr = {}
        for name, (_, values) in kind.attributes.items():
            roll = rng.randrange(20)
            wrong = kind.confused.get(name)
            if roll <= 2:
                continue  # absent
            if roll == 3:
                attr[name] = None
            elif roll == 4 and wrong:
                attr[name] = rng.choice(wrong)
            else:
                attr[name] = rng.choice(values)
        rows.append((f"{kind.name}-{i}", attr))
    return rows


def maybe(rng: random.Random, attr: dict, name: str, values: list) -> None:
    if rng.randrange(5) > 0:
        attr[name] = rng.choice(values)


def pick(rng: random.Random, items: list, most: int) -> list:
    return [rng.choice(items) for _ in range(rng.randint(0, most))]


def random_principal(rng: random.Random) -> dict:
    attr: dict = {}
    maybe(rng, attr, "practice_id", ["7", "9"])
    maybe(rng, attr, "patient_id", ["123", "124"])
    maybe(rng, attr, "patient", ["123", "456"])
    maybe(rng, attr, "licensed_states", [["CA"], ["CA", "TX"], []])
    maybe(rng, attr, "clearance", [1, 3.0, 5])
    maybe(rng, attr, "regions", [["east"], ["north", "south"], []])
    maybe(rng, attr, "groups", [["g1"], ["g2", "x"], []])
    scopes = pick(rng, ["user/*.cruds", "user/Observation.read", "patient/Observation.rs",
                        "patient/*.read", "system/*.read",
                        "patient/Observation.rs?category=laboratory", "user/*.write", "openid"], 2)
    if rng.random() < 0.5:
        scopes.append("user/*.cruds")
    return {
        "id": rng.choice(["dr-wilson", "dr-house", "u1", "u2"]),
        "roles": pick(rng, ["physician", "nurse", "admin_staff", "patient", "system", "janitor",
                            "admin"], 2),
        "capabilities": pick(rng, ["view-patient", "sign-a-note"], 1),
        "scopes": scopes,
        "attr": attr,
    }


class Base(DeclarativeBase):
    pass


def sql_type(t: str):
    return {
        TEXT: String(), NUMBER: Float(), BOOL: Boolean(),
        LIST: JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
    }[t]


class Database:
    """One database: the kinds' tables (declarative models for the clinic), filled with rows as
    they are (SQLite keeps a wrong type; a typed PostgreSQL column cannot hold one: NULL)."""

    def __init__(self, engine, pg_schema: str | None, declarative: bool):
        self.engine = engine
        self.name = self.engine.dialect.name
        self.pg_schema = pg_schema
        self.declarative = declarative
        self.metadata = MetaData(schema=pg_schema)
        self.tables: dict[str, Table] = {}
        self.models: dict[str, type] = {}
        if pg_schema:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {pg_schema}")

    def create(self, kind: Kind, rows: list[tuple[str, dict]]) -> None:
        columns = [Column(n, sql_type(t)) for n, (t, _) in kind.attributes.items()]
        if self.declarative:
            # A declarative model, as an application declares it.
            model = type(f"{kind.name}_{self.name}", (Base,), {
                "__table__": Table(f"{kind.name.lower()}_{self.name}", self.metadata,
                                   Column("id", String(), primary_key=True), *columns)})
            self.models[kind.name] = model
            table = model.__table__
        else:
            table = Table(f"{kind.name.lower()}_{self.name}", self.metadata,
                          Column("id", String(), primary_key=True), *columns)
        self.tables[kind.name] = table
        table.create(self.engine)
        names = list(kind.attributes)
        with self.engine.begin() as conn:
            if self.name == "sqlite":
                # The raw values, wrong types included: SQLite stores what it is given.
                def raw(v):
                    if isinstance(v, bool):
                        return int(v)
                    if isinstance(v, list):
                        return json.dumps(v)
                    return v
                sql = (f"INSERT INTO {table.name} (id, {', '.join(names)}) "
                       f"VALUES ({', '.join('?' * (len(names) + 1))})")
                conn.exec_driver_sql(sql, [
                    tuple([id] + [raw(attr.get(n)) for n in names]) for id, attr in rows])
            else:
                def typed(t, v):
                    ok = {TEXT: isinstance(v, str), LIST: isinstance(v, list),
                          BOOL: isinstance(v, bool),
                          NUMBER: isinstance(v, (int, float)) and not isinstance(v, bool)}[t]
                    return v if ok else None
                conn.execute(table.insert(), [
                    {"id": id, **{n: typed(t, attr.get(n))
                                  for n, (t, _) in kind.attributes.items()}}
                    for id, attr in rows])

    def rows(self, kind: Kind) -> list[tuple[str, dict]]:
        """Every row as the database gives it back, NULL as absent. On SQLite, read raw (an ORM's
        Boolean would make "yes" true) and as an ORM reads a column of its type: 0 and 1 of a bool
        column are bools, JSON text of a list column a list."""
        table = self.tables[kind.name]
        out = []
        with self.engine.connect() as conn:
            if self.name == "sqlite":
                names = list(kind.attributes)
                result = conn.exec_driver_sql(
                    f"SELECT id, {', '.join(names)} FROM {table.name} ORDER BY id")
                for id, *values in result:
                    attr = {}
                    for n, v in zip(names, values):
                        t = kind.attributes[n][0]
                        if v is None:
                            continue
                        if t == BOOL and isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
                            v = bool(v)
                        elif isinstance(v, int) and not isinstance(v, bool):
                            v = float(v)
                        elif t == LIST and isinstance(v, str):
                            try:
                                parsed = json.loads(v)
                                v = parsed if isinstance(parsed, list) else v
                            except ValueError:
                                pass
                        attr[n] = v
                    out.append((id, attr))
            else:
                for row in conn.execute(select(table).order_by(table.c.id)).mappings():
                    out.append((row["id"], {n: row[n] for n in kind.attributes if row[n] is not None}))
        return out

    def mapping(self, kind: Kind, schema: Schema | None) -> Mapping:
        if kind.name in self.models:
            model = self.models[kind.name]
            columns = {n: getattr(model, n) for n in kind.attributes}
            return Mapping(model, kind=kind.name, columns=columns, schema=schema)
        table = self.tables[kind.name]
        return Mapping(table, kind=kind.name, columns={n: n for n in kind.attributes},
                       schema=schema)

    def select(self, mapping: Mapping, plan) -> tuple[set[str], str]:
        table = mapping.table
        query = select(table.c.id).where(mapping.where(plan))
        with self.engine.connect() as conn:
            ids = set(conn.execute(query).scalars())
        return ids, str(query.compile(self.engine))

    def drop(self) -> None:
        if self.pg_schema:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.pg_schema} CASCADE")
        self.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--set", choices=sorted(SETS), required=True)
    parser.add_argument("--schema", help="`verdict schema export` of the set (typed sets)")
    parser.add_argument("--postgres", help="a libpq connection string")
    parser.add_argument("--principals", type=int, default=40)
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("VERDICT_TEST_SEED", 20261129)))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    schema = Schema.load(args.schema) if args.schema else None
    kinds = SETS[args.set]()
    declarative = args.set == "clinic"
    databases = [Database(create_engine("sqlite://"), None, declarative)]
    if args.postgres:
        import psycopg

        engine = create_engine("postgresql+psycopg://",
                               creator=lambda: psycopg.connect(args.postgres))
        databases.append(Database(engine, f"verdict_py_{args.set}_{os.getpid()}", declarative))
    try:
        return prove(args, rng, schema, kinds, databases)
    finally:
        for db in databases:
            db.drop()


def prove(args, rng: random.Random, schema: Schema | None, kinds: list[Kind],
          databases: list[Database]) -> int:
    tables = {}
    for kind in kinds:
        rows = random_rows(rng, kind, args.rows)
        for db in databases:
            db.create(kind, rows)
        tables[kind.name] = [db.rows(kind) for db in databases]
    principals = [random_principal(rng) for _ in range(args.principals)]
    plans = conditional = refused_plans = allowed = refused_rows = 0
    failures: list[str] = []
    with Verdict(args.server, timeout=30) as verdict:
        actions = ACTIONS[args.set]
        for principal in principals:
            for kind in kinds:
                mappings = [db.mapping(kind, schema) for db in databases]
                # One Check per database for every action of the rows, each row Checked as that
                # database gives it back; each action's plan is compared with its answers below.
                checked = [verdict.check(
                    principal=principal,
                    resources=[({"kind": kind.name, "id": id, "attr": attr}, actions)
                               for id, attr in rows]) for rows in tables[kind.name]]
                for action in actions:
                    plans += 1
                    try:
                        plan = verdict.plan_filter(kind.name, action, principal=principal)
                    except grpc.RpcError as e:
                        if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                            raise
                        # The daemon cannot express the rules as a filter: no clause at all.
                        refused_plans += 1
                        try:
                            mappings[0].scope(verdict, action, principal=principal)
                            failures.append(f"{kind.name}:{action}: a refused plan gave a clause")
                        except grpc.RpcError:
                            pass
                        continue
                    conditional += plan.kind == "conditional"
                    for db, mapping, rows, result in zip(databases, mappings, tables[kind.name],
                                                         checked):
                        by_check = {r.id for r in result if r.allowed(action)}
                        refused_rows += sum(1 for r in result
                                            if r.decision(action).reason.startswith("denied: R.attr"))
                        allowed += len(by_check)
                        by_query, sql = db.select(mapping, plan)
                        if by_query != by_check:
                            rows_by_id = dict(rows)
                            extra = {i: rows_by_id[i] for i in sorted(by_query - by_check)[:3]}
                            missing = {i: rows_by_id[i] for i in sorted(by_check - by_query)[:3]}
                            failures.append(
                                f"{db.name} {kind.name}:{action} principal {principal}\n"
                                f"  plan {plan.kind} {describe(plan.filter) if plan.filter else ''}\n"
                                f"  sql {sql}\n  selected but denied {extra}\n"
                                f"  allowed but not selected {missing}")
    for f in failures[:10]:
        print("FAIL", f)
    print(f"{args.set}: {plans} plans ({conditional} conditional, {refused_plans} refused) over "
          f"{args.rows} rows per kind on {', '.join(db.name for db in databases)}: "
          f"{allowed} allowed and {refused_rows} refused for their types (principal, row) pairs; "
          f"{len(failures)} disagreements; seed {args.seed}")
    if failures:
        return 1
    if conditional <= plans // 20 or allowed == 0:
        print("too few conditional plans or allowed rows to prove anything")
        return 1
    if schema is not None and refused_rows == 0:
        print("no row was refused for its types: the test proves nothing of them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
