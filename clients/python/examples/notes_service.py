"""A tiny notes service: `GET /notes` lists the notes the caller may read, scoped in SQL by Verdict
(PlanFilter through verdict.sqlalchemy), never filtered row by row in Python. WSGI (the standard
library's wsgiref), the SQLAlchemy ORM, and the column mapping declared once, beside the model.

    verdict schema export policies/clinic > clinic-schema.json
    python clients/python/examples/notes_service.py --verdict 127.0.0.1:50051 \
        --schema clinic-schema.json --port 8000
    curl -H 'X-Principal: {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
             "attr": {"practice_id": "7"}}' localhost:8000/notes

The caller is the `Authorization: Bearer <JWT>` the daemon verifies (started with --jwks-file), or,
for this demo, the claims in `X-Principal` (in production: the claims of a token your gateway
verified). An error while planning answers 503 and lists nothing: fail closed.
"""

from __future__ import annotations

import argparse
import json
from wsgiref.simple_server import make_server

import grpc
from sqlalchemy import Boolean, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from verdict import AsyncVerdict, Verdict
from verdict.schema import Schema
from verdict.sqlalchemy import Mapping


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    practice_id: Mapped[str] = mapped_column(String)
    patient_id: Mapped[str] = mapped_column(String)
    author_id: Mapped[str | None] = mapped_column(String, nullable=True)
    signed: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(String)


def note_scope(schema: Schema) -> Mapping:
    """Which column holds each attribute of a Note, once: the policies read these."""
    return Mapping(Note, kind="Note", schema=schema, columns={
        "practice_id": Note.practice_id,
        "patient_id": Note.patient_id,
        "author_id": Note.author_id,
        "signed": Note.signed,
    })


def readable_notes(session: Session, verdict: Verdict, notes: Mapping, **caller) -> list[Note]:
    """The notes the caller (principal= or token=) may read, in one query."""
    query = select(Note).where(notes.scope(verdict, "read", **caller)).order_by(Note.id)
    return list(session.scalars(query))


async def readable_notes_async(session: Session, verdict: AsyncVerdict, notes: Mapping,
                               **caller) -> list[Note]:
    """The same with the asyncio client."""
    clause = await notes.scope_async(verdict, "read", **caller)
    return list(session.scalars(select(Note).where(clause).order_by(Note.id)))


def seed(session: Session) -> None:
    """Sample notes of two practices."""
    session.add_all([
        Note(id="n1", practice_id="7", patient_id="123", author_id="dr-house", signed=True,
             body="BP 120/80"),
        Note(id="n2", practice_id="7", patient_id="124", author_id="dr-wilson", signed=False,
             body="follow-up in 2 weeks"),
        Note(id="n3", practice_id="9", patient_id="456", author_id="dr-cuddy", signed=True,
             body="allergic to penicillin"),
        Note(id="n4", practice_id="7", patient_id="123", author_id=None, signed=False,
             body="imported, no author"),
    ])
    session.commit()


def make_app(engine, verdict: Verdict, notes: Mapping):
    """The WSGI application."""

    def app(environ, start_response):
        def answer(status: str, body) -> list[bytes]:
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]

        if environ.get("PATH_INFO") != "/notes" or environ.get("REQUEST_METHOD") != "GET":
            return answer("404 Not Found", {"error": "GET /notes"})
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("Bearer "):
            caller = {"token": auth.removeprefix("Bearer ")}
        elif environ.get("HTTP_X_PRINCIPAL"):
            try:
                caller = {"principal": json.loads(environ["HTTP_X_PRINCIPAL"])}
            except ValueError:
                return answer("400 Bad Request", {"error": "X-Principal is not JSON"})
        else:
            return answer("401 Unauthorized", {"error": "no caller"})
        try:
            with Session(engine) as session:
                found = readable_notes(session, verdict, notes, **caller)
                return answer("200 OK", [
                    {"id": n.id, "patient_id": n.patient_id, "body": n.body} for n in found])
        except grpc.RpcError as e:
            return answer("503 Service Unavailable", {"error": f"authorization: {e.code().name}"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdict", default="127.0.0.1:50051")
    parser.add_argument("--schema", required=True, help="`verdict schema export` of the policies")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    with Verdict(args.verdict) as verdict:
        app = make_app(engine, verdict, note_scope(Schema.load(args.schema)))
        with make_server("127.0.0.1", args.port, app) as server:
            print(f"serving GET http://127.0.0.1:{args.port}/notes")
            server.serve_forever()


if __name__ == "__main__":
    main()
