"""Runs the example notes service (examples/notes_service.py) against a running daemon with the
clinic policies: for several callers, `GET /notes` lists exactly the notes Check allows them to
read (each note Checked through the daemon), the asyncio helper agrees, and the service answers
401 without a caller, 400 for a malformed one, and 503 (listing nothing) when Verdict is down.

    python clients/python/tests/example_test.py --server 127.0.0.1:50051 --schema clinic-schema.json

Prints one line per case and a summary; exits 1 if any failed.
"""

import argparse
import asyncio
import importlib.util
import io
import json
import socket
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from verdict import AsyncVerdict, Verdict
from verdict.schema import Schema

spec = importlib.util.spec_from_file_location(
    "notes_service", Path(__file__).resolve().parent.parent / "examples" / "notes_service.py")
service = importlib.util.module_from_spec(spec)
sys.modules["notes_service"] = service
spec.loader.exec_module(service)

CALLERS = {
    "physician of practice 7": {"id": "dr-house", "roles": ["physician"],
                                "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
    "physician of practice 9": {"id": "dr-cuddy", "roles": ["physician"],
                                "scopes": ["user/*.cruds"], "attr": {"practice_id": "9"}},
    "physician without a scope": {"id": "dr-house", "roles": ["physician"], "scopes": [],
                                  "attr": {"practice_id": "7"}},
    "front desk": {"id": "fd", "roles": ["admin_staff"], "scopes": ["user/*.cruds"],
                   "attr": {"practice_id": "7"}},
    "patient 123": {"id": "p123", "roles": ["patient"], "scopes": ["patient/*.read"],
                    "attr": {"patient_id": "123", "patient": "123"}},
}


def get(app, headers: dict) -> tuple[str, object]:
    environ = {"PATH_INFO": "/notes", "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], json.loads(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()
    engine = create_engine("sqlite://")
    service.Base.metadata.create_all(engine)
    with Session(engine) as session:
        service.seed(session)
        notes = list(session.scalars(select(service.Note).order_by(service.Note.id)))
    mapping = service.note_scope(Schema.load(args.schema))
    failed, listed = [], []
    with Verdict(args.server) as verdict:
        app = service.make_app(engine, verdict, mapping)
        for name, principal in CALLERS.items():
            status, body = get(app, {"X-Principal": json.dumps(principal)})
            got = [n["id"] for n in body] if status == "200 OK" else status
            check = verdict.check(principal=principal, resources=[
                ({"kind": "Note", "id": n.id, "attr": {
                    k: v for k, v in {"practice_id": n.practice_id, "patient_id": n.patient_id,
                                      "author_id": n.author_id, "signed": n.signed}.items()
                    if v is not None}}, ["read"]) for n in notes])
            allowed = [r.id for r in check if r.allowed("read")]

            async def via_async():
                async with AsyncVerdict(args.server) as v:
                    with Session(engine) as s:
                        found = await service.readable_notes_async(s, v, mapping,
                                                                   principal=principal)
                        return [n.id for n in found]

            by_async = asyncio.run(via_async())
            ok = got == allowed == by_async
            listed.append(len(allowed))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: listed {got}, Check allows {allowed}, "
                  f"async {by_async}")
            if not ok:
                failed.append(name)
        for name, headers, expected in (
            ("no caller", {}, "401 Unauthorized"),
            ("malformed caller", {"X-Principal": "{"}, "400 Bad Request"),
        ):
            status, _ = get(app, headers)
            print(f"{'ok  ' if status == expected else 'FAIL'} {name}: {status}")
            if status != expected:
                failed.append(name)
    # Verdict unreachable: a port nothing listens on.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Verdict(f"127.0.0.1:{port}", timeout=2) as down:
        status, body = get(service.make_app(engine, down, mapping),
                           {"X-Principal": json.dumps(CALLERS["physician of practice 7"])})
        ok = status == "503 Service Unavailable" and "error" in body
        print(f"{'ok  ' if ok else 'FAIL'} Verdict down: {status} {body}")
        if not ok:
            failed.append("Verdict down")
    if not any(listed) or all(listed):
        failed.append("the callers prove nothing: every listing empty, or none")
    print(f"example: {len(CALLERS) + 3 - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
