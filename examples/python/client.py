"""A small Python client for Verdict: Check and PlanFilter over gRPC, plain Python values in and
out. The gRPC stubs are generated from the repository's proto/ on first use (see generate.py).

    from client import Verdict

    with Verdict("127.0.0.1:50051") as verdict:
        result = verdict.check(
            principal={"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
            resources=[({"kind": "Patient", "id": "123", "attr": {"practice_id": "7"}}, ["read"])],
        )
        if result.allowed("Patient", "123", "read"): ...

Instead of `principal`, pass `token="<JWT>"` to a daemon started with --jwks-file: Verdict
verifies it and takes the principal from its claims.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import grpc
from google.protobuf import json_format, struct_pb2

import generate

pb2, pb2_grpc = generate.load()

_PLAN_KINDS = {
    pb2.PLAN_KIND_ALWAYS_ALLOWED: "always_allowed",
    pb2.PLAN_KIND_ALWAYS_DENIED: "always_denied",
    pb2.PLAN_KIND_CONDITIONAL: "conditional",
}
_DIALECTS = {"postgres": pb2.SQL_DIALECT_POSTGRES, "sqlite": pb2.SQL_DIALECT_SQLITE}


@dataclass(frozen=True)
class Decision:
    """One action's answer: `effect` is "allow" or "deny"; `reason` always says why."""

    effect: str
    policy: str
    rule: str
    reason: str

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


@dataclass(frozen=True)
class CheckResult:
    policy_version: str
    # One entry per requested resource, in request order: (kind, id, {action: Decision}).
    results: list[tuple[str, str, dict[str, Decision]]]
    # Why the request's token was rejected ("expired"...); empty if it was not.
    token_error: str = ""

    def decision(self, kind: str, id: str, action: str) -> Decision:
        for k, i, actions in self.results:
            if (k, i) == (kind, id):
                return actions[action]
        raise KeyError(f"{kind}/{id} was not in the request")

    def allowed(self, kind: str, id: str, action: str) -> bool:
        return self.decision(kind, id, action).allowed


@dataclass(frozen=True)
class PlanResult:
    policy_version: str
    # "always_allowed", "always_denied" or "conditional".
    kind: str
    # The filter tree (a verdict.v1.Filter message) when conditional; see describe().
    filter: Any = None
    # The SQL WHERE fragment and its parameters, when asked for.
    sql: str | None = None
    params: list[Any] = field(default_factory=list)
    token_error: str = ""


def _struct(value: dict | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    s = struct_pb2.Struct()
    s.update(value)
    return s


def _principal(p: dict | None):
    if p is None:
        return None
    return pb2.Principal(
        id=p.get("id", ""),
        roles=p.get("roles", []),
        capabilities=p.get("capabilities", []),
        scopes=p.get("scopes", []),
        client_id=p.get("client_id", ""),
        attr=_struct(p.get("attr")),
    )


def _value(v) -> Any:
    return json_format.MessageToDict(v)


def describe(f) -> str:
    """A filter tree in one line, in the form `verdict plan` and the policy test suites use:
    `(practice_id == "7" && !(celebrity == true))`."""
    op = pb2.FilterOp.Name(f.op).removeprefix("FILTER_OP_").lower()
    literal = lambda v: json.dumps(_value(v), ensure_ascii=False, separators=(",", ":"))
    if op in ("and", "or"):
        if not f.operands:
            return "true" if op == "and" else "false"
        joiner = " && " if op == "and" else " || "
        return "(" + joiner.join(describe(o) for o in f.operands) + ")"
    if op == "not":
        return "!" + describe(f.operands[0])
    if op == "in":
        return f"{f.attribute} in [" + ", ".join(literal(v) for v in f.values) + "]"
    if op == "exists":
        return f"exists({f.attribute})"
    if op == "contains":
        return f"{f.attribute} contains {literal(f.value)}"
    symbol = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
    return f"{f.attribute} {symbol} {literal(f.value)}"


class Verdict:
    """A connection to a Verdict daemon. Calls raise grpc.RpcError on INVALID_ARGUMENT and other
    errors; a denial is an answer, not an error."""

    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float = 5.0,
                 channel: grpc.Channel | None = None):
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = pb2_grpc.AuthorizerStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Verdict":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self, resources: Iterable[tuple[dict, list[str]]], *, principal: dict | None = None,
              token: str = "", context: dict | None = None, request_id: str = "") -> CheckResult:
        """Decides each (resource, actions) pair; a resource is {"kind", "id", "attr"}."""
        request = pb2.CheckRequest(
            request_id=request_id,
            principal=_principal(principal),
            token=token,
            context=_struct(context),
            resources=[
                pb2.ResourceCheck(
                    resource=pb2.Resource(kind=r["kind"], id=r.get("id", ""),
                                          attr=_struct(r.get("attr"))),
                    actions=list(actions),
                )
                for r, actions in resources
            ],
        )
        response = self._stub.Check(request, timeout=self._timeout)
        effect = {pb2.EFFECT_ALLOW: "allow", pb2.EFFECT_DENY: "deny"}
        return CheckResult(
            policy_version=response.policy_version,
            token_error=response.token_error,
            results=[
                (r.resource.kind, r.resource.id, {
                    action: Decision(effect.get(d.effect, "unspecified"), d.policy, d.rule,
                                     d.reason)
                    for action, d in r.actions.items()
                })
                for r in response.results
            ],
        )

    def plan_filter(self, kind: str, action: str, *, principal: dict | None = None,
                    token: str = "", context: dict | None = None,
                    known_attr: dict | None = None, sql: str | None = None,
                    columns: dict[str, str] | None = None) -> PlanResult:
        """Which resources of `kind` may the principal `action`? With sql="postgres" or
        "sqlite", also as a WHERE fragment over `columns` (attribute -> column)."""
        request = pb2.PlanFilterRequest(
            principal=_principal(principal),
            token=token,
            resource_kind=kind,
            action=action,
            context=_struct(context),
            known_attr=_struct(known_attr),
            sql=pb2.SqlRequest(dialect=_DIALECTS[sql], columns=columns or {}) if sql else None,
        )
        response = self._stub.PlanFilter(request, timeout=self._timeout)
        return PlanResult(
            policy_version=response.policy_version,
            kind=_PLAN_KINDS.get(response.kind, "unspecified"),
            filter=response.filter if response.HasField("filter") else None,
            sql=response.sql.where if response.HasField("sql") else None,
            params=[_value(p) for p in response.sql.params],
            token_error=response.token_error,
        )


if __name__ == "__main__":
    # The README's example: may physician dr-house read and delete patient 123?
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    with Verdict(target) as verdict:
        result = verdict.check(
            principal={"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
            resources=[({"kind": "Patient", "id": "123",
                         "attr": {"practice_id": "7", "patient_id": "123", "celebrity": False}},
                        ["read", "delete"])],
        )
        for kind, id, actions in result.results:
            for action, d in sorted(actions.items()):
                print(f"{kind}/{id} {action}: {d.effect.upper()} - {d.reason}")
