"""Verdict, the authorization decision service, from Python.

    from verdict import Verdict

    with Verdict("127.0.0.1:50051") as verdict:
        result = verdict.check([({"kind": "Patient", "id": "123", "attr": {...}}, ["read"])],
                               principal={"id": "dr-house", "roles": ["physician"], ...})
        if result.allowed("Patient", "123", "read"): ...

`verdict.client` holds the clients (sync and asyncio) and answers; `verdict.sqlalchemy` turns a
PlanFilter answer into a SQLAlchemy WHERE clause (`pip install verdict-client[sqlalchemy]`);
`verdict.schema` reads `verdict schema export`; `verdict.v1` is the generated gRPC stubs.
"""

from verdict.client import (
    ALWAYS_ALLOWED,
    ALWAYS_DENIED,
    CONDITIONAL,
    AmbiguousResource,
    AsyncVerdict,
    CheckResult,
    Decision,
    PlanResult,
    Principal,
    Resource,
    ResourceResult,
    Verdict,
    VerdictError,
    describe,
)

__all__ = [
    "ALWAYS_ALLOWED", "ALWAYS_DENIED", "CONDITIONAL", "AmbiguousResource", "AsyncVerdict",
    "CheckResult", "Decision", "PlanResult", "Principal", "Resource", "ResourceResult", "Verdict",
    "VerdictError", "describe",
]
