"""Verdict's gRPC API from Python: Check and PlanFilter, synchronous (`Verdict`, on grpc) and
asyncio (`AsyncVerdict`, on grpc.aio), with typed answers (frozen dataclasses).

Every call takes either a `principal` (the caller's verified claims) or a `token` (a JWT the
daemon verifies, when started with --jwks-file), never both, and a timeout: the client's default
(`timeout=`, 5 seconds) or the call's own, one deadline for the call and its retries together.
Check and PlanFilter are idempotent, so a call answered UNAVAILABLE (the daemon restarting, a
connection refused) is tried again after an exponential backoff with jitter (`backoff=` seconds
doubling up to `max_backoff=`, each pause drawn between half and all of it), at most `retries=`
times (2) and never past the deadline; each retry is logged at INFO on the `verdict.client`
logger. A denial is an answer; errors (INVALID_ARGUMENT for a malformed request,
DEADLINE_EXCEEDED, UNAVAILABLE once the retries are spent...) raise `grpc.RpcError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import grpc
from google.protobuf import json_format, struct_pb2

from verdict.v1 import authorizer_pb2 as pb2
from verdict.v1 import authorizer_pb2_grpc as pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.05
DEFAULT_MAX_BACKOFF = 1.0

# The only status retried: the call did not reach a daemon that could answer it.
_RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE})

log = logging.getLogger("verdict.client")


class VerdictError(Exception):
    """A misuse of the client or an answer it cannot use (never a denial: that is an answer)."""


class AmbiguousResource(VerdictError, LookupError):
    """A lookup by (kind, id) that matches several resources of one Check: two resources with the
    same id may carry different attributes and get different answers, so the lookup refuses to
    pick one. Read the answers by position instead (`result[i]`)."""


@dataclass(frozen=True)
class Principal:
    """Who asks: the claims of the caller's already verified token."""

    id: str
    roles: Sequence[str] = ()
    capabilities: Sequence[str] = ()
    scopes: Sequence[str] = ()
    client_id: str = ""
    attr: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Resource:
    """What is asked about: a kind, an id, and the attributes the policies read."""

    kind: str
    id: str = ""
    attr: Mapping[str, Any] | None = None


PrincipalLike = Union[Principal, Mapping[str, Any]]
ResourceLike = Union[Resource, Mapping[str, Any]]


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
class ResourceResult:
    """The answers for one requested resource: `actions` maps each action to its Decision."""

    kind: str
    id: str
    actions: Mapping[str, Decision]

    def decision(self, action: str) -> Decision:
        try:
            return self.actions[action]
        except KeyError:
            raise KeyError(f"{self.kind}/{self.id}: action {action!r} was not in the request") from None

    def allowed(self, action: str) -> bool:
        return self.decision(action).allowed


@dataclass(frozen=True)
class CheckResult:
    """A Check's answers, one ResourceResult per requested resource, in request order: `result[i]`
    answers the i-th resource."""

    policy_version: str
    results: tuple[ResourceResult, ...]
    # Why the request's token was rejected ("expired"...); empty if it was not.
    token_error: str = ""
    request_id: str = ""

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> ResourceResult:
        return self.results[index]

    def __iter__(self) -> Iterator[ResourceResult]:
        return iter(self.results)

    def decision(self, kind: str, id: str, action: str) -> Decision:
        """The decision for the only resource (kind, id) of the request. Raises KeyError if there
        is none, and AmbiguousResource if several resources share that kind and id."""
        matches = [r for r in self.results if (r.kind, r.id) == (kind, id)]
        if not matches:
            raise KeyError(f"{kind}/{id} was not in the request")
        if len(matches) > 1:
            positions = [i for i, r in enumerate(self.results) if (r.kind, r.id) == (kind, id)]
            raise AmbiguousResource(
                f"{kind}/{id} is in the request {len(matches)} times (positions {positions}); "
                "read the answers by position: result[i]"
            )
        return matches[0].decision(action)

    def allowed(self, kind: str, id: str, action: str) -> bool:
        """Whether the only resource (kind, id) of the request may be `action`ed (see decision)."""
        return self.decision(kind, id, action).allowed


ALWAYS_ALLOWED = "always_allowed"
ALWAYS_DENIED = "always_denied"
CONDITIONAL = "conditional"


@dataclass(frozen=True)
class PlanResult:
    """A PlanFilter answer: which resources of `resource_kind` the principal may `action`."""

    policy_version: str
    # ALWAYS_ALLOWED, ALWAYS_DENIED or CONDITIONAL.
    kind: str
    resource_kind: str = ""
    action: str = ""
    # The filter tree (a verdict.v1.Filter message) when conditional; see describe() and
    # verdict.sqlalchemy.
    filter: Any = None
    # The daemon's SQL WHERE fragment and its parameters, when asked for (sql=...).
    sql: str | None = None
    params: list[Any] = field(default_factory=list)
    token_error: str = ""
    # Why the request violates the schema (the plan is then ALWAYS_DENIED); empty if it does not.
    schema_violation: str = ""
    request_id: str = ""


_PLAN_KINDS = {
    pb2.PLAN_KIND_ALWAYS_ALLOWED: ALWAYS_ALLOWED,
    pb2.PLAN_KIND_ALWAYS_DENIED: ALWAYS_DENIED,
    pb2.PLAN_KIND_CONDITIONAL: CONDITIONAL,
}
_DIALECTS = {"postgres": pb2.SQL_DIALECT_POSTGRES, "postgresql": pb2.SQL_DIALECT_POSTGRES,
             "sqlite": pb2.SQL_DIALECT_SQLITE}
_EFFECTS = {pb2.EFFECT_ALLOW: "allow", pb2.EFFECT_DENY: "deny"}


def _struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    s = struct_pb2.Struct()
    s.update(dict(value))
    return s


def _principal(p: PrincipalLike | None) -> pb2.Principal | None:
    if p is None:
        return None
    if isinstance(p, Principal):
        p = {"id": p.id, "roles": p.roles, "capabilities": p.capabilities, "scopes": p.scopes,
             "client_id": p.client_id, "attr": p.attr}
    unknown = set(p) - {"id", "roles", "capabilities", "scopes", "client_id", "attr"}
    if unknown:
        raise VerdictError(f"principal: unknown fields {sorted(unknown)}")
    return pb2.Principal(
        id=p.get("id", ""),
        roles=list(p.get("roles") or []),
        capabilities=list(p.get("capabilities") or []),
        scopes=list(p.get("scopes") or []),
        client_id=p.get("client_id", ""),
        attr=_struct(p.get("attr")),
    )


def _resource(r: ResourceLike) -> pb2.Resource:
    if isinstance(r, Resource):
        return pb2.Resource(kind=r.kind, id=r.id, attr=_struct(r.attr))
    unknown = set(r) - {"kind", "id", "attr"}
    if unknown:
        raise VerdictError(f"resource: unknown fields {sorted(unknown)}")
    return pb2.Resource(kind=r["kind"], id=r.get("id", ""), attr=_struct(r.get("attr")))


def _identity(principal: PrincipalLike | None, token: str) -> dict[str, Any]:
    if (principal is None) == (not token):
        raise VerdictError("pass either principal= or token=, exactly one")
    return {"principal": _principal(principal), "token": token}


def _value(v: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(v)


def check_request(resources: Iterable[tuple[ResourceLike, Sequence[str]]], *,
                  principal: PrincipalLike | None = None, token: str = "",
                  context: Mapping[str, Any] | None = None,
                  request_id: str = "") -> pb2.CheckRequest:
    """The CheckRequest message for (resource, actions) pairs."""
    return pb2.CheckRequest(
        request_id=request_id,
        context=_struct(context),
        resources=[pb2.ResourceCheck(resource=_resource(r), actions=list(actions))
                   for r, actions in resources],
        **_identity(principal, token),
    )


def check_result(response: pb2.CheckResponse) -> CheckResult:
    return CheckResult(
        policy_version=response.policy_version,
        token_error=response.token_error,
        request_id=response.request_id,
        results=tuple(
            ResourceResult(r.resource.kind, r.resource.id, {
                action: Decision(_EFFECTS.get(d.effect, "unspecified"), d.policy, d.rule, d.reason)
                for action, d in r.actions.items()
            })
            for r in response.results
        ),
    )


def plan_request(kind: str, action: str, *, principal: PrincipalLike | None = None,
                 token: str = "", context: Mapping[str, Any] | None = None,
                 known_attr: Mapping[str, Any] | None = None, sql: str | None = None,
                 columns: Mapping[str, str] | None = None,
                 request_id: str = "") -> pb2.PlanFilterRequest:
    """The PlanFilterRequest message; `sql` ("postgres" or "sqlite") asks for the daemon's SQL."""
    if sql is not None and sql not in _DIALECTS:
        raise VerdictError(f"sql: unknown dialect {sql!r} (postgres or sqlite)")
    return pb2.PlanFilterRequest(
        request_id=request_id,
        resource_kind=kind,
        action=action,
        context=_struct(context),
        known_attr=_struct(known_attr),
        sql=pb2.SqlRequest(dialect=_DIALECTS[sql], columns=dict(columns or {})) if sql else None,
        **_identity(principal, token),
    )


def plan_result(request: pb2.PlanFilterRequest, response: pb2.PlanFilterResponse) -> PlanResult:
    kind = _PLAN_KINDS.get(response.kind)
    if kind is None:
        raise VerdictError(f"PlanFilter answered an unknown plan kind {response.kind}")
    if kind == CONDITIONAL and not response.HasField("filter"):
        raise VerdictError("PlanFilter answered CONDITIONAL without a filter")
    return PlanResult(
        policy_version=response.policy_version,
        kind=kind,
        resource_kind=request.resource_kind,
        action=request.action,
        filter=response.filter if kind == CONDITIONAL else None,
        sql=response.sql.where if response.HasField("sql") else None,
        params=[_value(p) for p in response.sql.params],
        token_error=response.token_error,
        schema_violation=response.schema_violation,
        request_id=response.request_id,
    )


def describe(f: pb2.Filter) -> str:
    """A filter tree in one line, in the form `verdict plan` and the policy test suites use:
    `(practice_id == "7" && !(celebrity == true))`."""
    op = pb2.FilterOp.Name(f.op).removeprefix("FILTER_OP_").lower()

    def literal(v: struct_pb2.Value) -> str:
        return json.dumps(_value(v), ensure_ascii=False, separators=(",", ":"))

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


def _positive(timeout: float) -> float:
    if not timeout > 0:
        raise VerdictError(f"timeout must be positive, not {timeout!r}")
    return timeout


class _Retries:
    """When to try a call again: UNAVAILABLE, at most `retries` times, after a pause of
    min(backoff * 2**n, max_backoff) times a random factor in [0.5, 1), never past the deadline."""

    def __init__(self, timeout: float, retries: int, backoff: float, max_backoff: float):
        _positive(timeout)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise VerdictError(f"retries must be a whole number >= 0, not {retries!r}")
        if not 0 < backoff <= max_backoff:
            raise VerdictError(f"need 0 < backoff <= max_backoff, not {backoff!r} and {max_backoff!r}")
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff

    def pause(self, method: str, error: grpc.RpcError, attempt: int, deadline: float) -> float | None:
        """The pause before retry `attempt + 1` after `error`, or None when the call must raise."""
        if error.code() not in _RETRIED or attempt >= self.retries:
            return None
        pause = min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)
        if time.monotonic() + pause >= deadline:
            return None
        log.info("Verdict %s: %s (%s); retry %d of %d in %.3f s", method, error.code().name,
                 error.details(), attempt + 1, self.retries, pause)
        return pause

    def channel_options(self) -> list[tuple[str, int]]:
        # After a failed connection grpc waits its own reconnect backoff (1 s, growing) before
        # trying again, failing calls at once meanwhile: held to the retries' own, a retry
        # reaches a daemon that has come back.
        return [("grpc.initial_reconnect_backoff_ms", max(1, int(self.backoff * 1000))),
                ("grpc.max_reconnect_backoff_ms", max(1, int(self.max_backoff * 1000)))]


def _open_channel(target: str, credentials: grpc.ChannelCredentials | None, aio: bool,
                  options: list[tuple[str, int]]):
    module = grpc.aio if aio else grpc
    if credentials is None:
        return module.insecure_channel(target, options=options)
    return module.secure_channel(target, credentials, options=options)


class Verdict:
    """A connection to a Verdict daemon (synchronous). `credentials` (grpc.ssl_channel_credentials)
    makes it TLS; `timeout` is every call's default deadline, in seconds, retries included;
    `retries`, `backoff` and `max_backoff` say how UNAVAILABLE is retried (module docstring).
    A `channel` given is used as it is (the client sets the reconnect backoff of the channels it
    opens to match its retries)."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF,
                 credentials: grpc.ChannelCredentials | None = None,
                 channel: grpc.Channel | None = None):
        self._retries = _Retries(timeout, retries, backoff, max_backoff)
        self._channel = channel or _open_channel(target, credentials, aio=False,
                                                 options=self._retries.channel_options())
        self._stub = pb2_grpc.AuthorizerStub(self._channel)
        self.timeout = timeout

    def _call(self, method: str, call: Callable[..., Any], request: Any,
              timeout: float | None) -> Any:
        retries = self._retries
        deadline = time.monotonic() + _positive(self.timeout if timeout is None else timeout)
        attempt = 0
        while True:
            try:
                return call(request, timeout=deadline - time.monotonic())
            except grpc.RpcError as error:
                pause = retries.pause(method, error, attempt, deadline)
                if pause is None:
                    raise
            attempt += 1
            time.sleep(pause)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Verdict":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self, resources: Iterable[tuple[ResourceLike, Sequence[str]]], *,
              principal: PrincipalLike | None = None, token: str = "",
              context: Mapping[str, Any] | None = None, request_id: str = "",
              timeout: float | None = None) -> CheckResult:
        """Decides each (resource, actions) pair; answers in request order."""
        request = check_request(resources, principal=principal, token=token, context=context,
                                request_id=request_id)
        return check_result(self._call("Check", self._stub.Check, request, timeout))

    def plan_filter(self, kind: str, action: str, *, principal: PrincipalLike | None = None,
                    token: str = "", context: Mapping[str, Any] | None = None,
                    known_attr: Mapping[str, Any] | None = None, sql: str | None = None,
                    columns: Mapping[str, str] | None = None, request_id: str = "",
                    timeout: float | None = None) -> PlanResult:
        """Which resources of `kind` may the principal `action`? verdict.sqlalchemy turns the
        answer into a WHERE clause; with sql="postgres" or "sqlite" the daemon also renders it
        as SQL text over `columns` (attribute -> column)."""
        request = plan_request(kind, action, principal=principal, token=token, context=context,
                               known_attr=known_attr, sql=sql, columns=columns,
                               request_id=request_id)
        return plan_result(request, self._call("PlanFilter", self._stub.PlanFilter, request, timeout))


class AsyncVerdict:
    """A connection to a Verdict daemon for asyncio (grpc.aio): the same calls as Verdict, awaited,
    with the same timeout and retries (a retry's pause is an asyncio.sleep). Create it inside the
    running event loop."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF,
                 credentials: grpc.ChannelCredentials | None = None,
                 channel: grpc.aio.Channel | None = None):
        self._retries = _Retries(timeout, retries, backoff, max_backoff)
        self._channel = channel or _open_channel(target, credentials, aio=True,
                                                 options=self._retries.channel_options())
        self._stub = pb2_grpc.AuthorizerStub(self._channel)
        self.timeout = timeout

    async def _call(self, method: str, call: Callable[..., Any], request: Any,
                    timeout: float | None) -> Any:
        retries = self._retries
        deadline = time.monotonic() + _positive(self.timeout if timeout is None else timeout)
        attempt = 0
        while True:
            try:
                return await call(request, timeout=deadline - time.monotonic())
            except grpc.RpcError as error:
                pause = retries.pause(method, error, attempt, deadline)
                if pause is None:
                    raise
            attempt += 1
            await asyncio.sleep(pause)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncVerdict":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def check(self, resources: Iterable[tuple[ResourceLike, Sequence[str]]], *,
                    principal: PrincipalLike | None = None, token: str = "",
                    context: Mapping[str, Any] | None = None, request_id: str = "",
                    timeout: float | None = None) -> CheckResult:
        """Decides each (resource, actions) pair; answers in request order."""
        request = check_request(resources, principal=principal, token=token, context=context,
                                request_id=request_id)
        return check_result(await self._call("Check", self._stub.Check, request, timeout))

    async def plan_filter(self, kind: str, action: str, *,
                          principal: PrincipalLike | None = None, token: str = "",
                          context: Mapping[str, Any] | None = None,
                          known_attr: Mapping[str, Any] | None = None, sql: str | None = None,
                          columns: Mapping[str, str] | None = None, request_id: str = "",
                          timeout: float | None = None) -> PlanResult:
        """As Verdict.plan_filter."""
        request = plan_request(kind, action, principal=principal, token=token, context=context,
                               known_attr=known_attr, sql=sql, columns=columns,
                               request_id=request_id)
        response = await self._call("PlanFilter", self._stub.PlanFilter, request, timeout)
        return plan_result(request, response)
