"""Runs scenarios through the Python client against a running daemon and checks every answer.

    python clients/python/tests/client_test.py --server 127.0.0.1:50051 --scenarios scenarios.json

The scenarios file is JSON: {"checks": [...], "plans": [...]}. Each check has a `principal`, a
`resource`, an optional `context`, `expect` (action -> "allow" | "deny") and optionally `rules`
(action -> "policy/rule") and `reasons` (action -> a substring of the reason). Each plan has a
`principal`, `kind`, `action`, optional `context` and `known_attr`, `expect` ("always_allowed",
"always_denied", "conditional") and, when conditional, `filter` (describe()'s one-line form).
tests/python_client.rs writes this file from the bundled clinic suite
(policies/clinic/clinic_test.yaml) and runs this script. Prints one line per scenario and a
summary; exits 1 if any scenario failed.

Besides the scenarios: every check scenario again through the asyncio client (AsyncVerdict), which
must answer as the synchronous one; a batch holding two resources with one id but different
attributes, whose answers are read by position and whose lookup by id is refused; and the
client's own errors (principal and token together, a deadline that has passed).
"""

import argparse
import asyncio
import json
import socket
import sys
import time

import grpc

from verdict import AmbiguousResource, AsyncVerdict, Verdict, VerdictError, describe


def run_check(verdict: Verdict, case: dict) -> list[str]:
    actions = list(case["expect"])
    result = verdict.check(
        principal=case["principal"],
        resources=[(case["resource"], actions)],
        context=case.get("context"),
        request_id=case["name"],
    )
    problems = []
    if len(result.results) != 1:
        return [f"{len(result.results)} results for one resource"]
    kind, id, decisions = result[0].kind, result[0].id, result[0].actions
    if (kind, id) != (case["resource"]["kind"], case["resource"].get("id", "")):
        problems.append(f"answered for {kind}/{id}")
    for action in actions:
        d = decisions.get(action)
        if d is None:
            problems.append(f"{action}: no decision")
            continue
        if d.effect != case["expect"][action]:
            problems.append(f"{action}: {d.effect}, expected {case['expect'][action]} ({d.reason})")
        rule = case.get("rules", {}).get(action)
        if rule and f"{d.policy}/{d.rule}" != rule:
            problems.append(f"{action}: decided by {d.policy}/{d.rule}, expected {rule}")
        reason = case.get("reasons", {}).get(action)
        if reason and reason not in d.reason:
            problems.append(f"{action}: reason {d.reason!r} lacks {reason!r}")
        if not d.reason:
            problems.append(f"{action}: empty reason")
    return problems


def attributes(f) -> set[str]:
    """The resource attributes a filter tree compares."""
    found = {f.attribute} if f.attribute else set()
    for operand in f.operands:
        found |= attributes(operand)
    return found


def run_plan(verdict: Verdict, case: dict) -> list[str]:
    ask = dict(principal=case["principal"], context=case.get("context"),
               known_attr=case.get("known_attr"))
    result = verdict.plan_filter(case["kind"], case["action"], **ask)
    problems = []
    if result.kind != case["expect"]:
        problems.append(f"{result.kind}, expected {case['expect']}")
    columns = {}
    if result.kind == "conditional":
        got = describe(result.filter)
        if case.get("filter") is not None and got != case["filter"]:
            problems.append(f"filter {got}, expected {case['filter']}")
        columns = {a: f"r.{a}" for a in attributes(result.filter)}
    # The same plan as SQL (SQLite), over a column per attribute the filter uses.
    result = verdict.plan_filter(case["kind"], case["action"], sql="sqlite", columns=columns,
                                 **ask)
    expected_sql = {"always_allowed": "TRUE", "always_denied": "FALSE"}.get(result.kind)
    if expected_sql and result.sql != expected_sql:
        problems.append(f"sql {result.sql!r}, expected {expected_sql}")
    if result.kind == "conditional" and (
        not result.sql or result.sql.count("?") != len(result.params)
        or any(f"r.{a}" not in result.sql for a in columns)
    ):
        problems.append(f"sql {result.sql!r} does not match params {result.params!r}")
    return problems


async def run_async(server: str, cases: list[dict], sync_answers: list) -> list[str]:
    """Every check scenario through AsyncVerdict, concurrently: the same answers as Verdict's."""
    async with AsyncVerdict(server, timeout=10) as verdict:
        results = await asyncio.gather(*(
            verdict.check(principal=case["principal"], resources=[(case["resource"], list(case["expect"]))],
                          context=case.get("context"), request_id=case["name"])
            for case in cases
        ))
        problems = [f"async {case['name']}: {got} != sync {want}"
                    for case, got, want in zip(cases, results, sync_answers)
                    if got.results != want.results]
        plan = await verdict.plan_filter("Patient", "read", principal=DR_HOUSE)
        if plan.kind != "conditional" or not describe(plan.filter):
            problems.append(f"async plan_filter: {plan}")
    return problems


DR_HOUSE = {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
            "attr": {"practice_id": "7"}}


def run_fixed(verdict: Verdict) -> list[str]:
    """Two resources with one id in one batch, and the client's own errors."""
    problems = []
    own = {"kind": "Patient", "id": "1", "attr": {"practice_id": "7", "patient_id": "1", "celebrity": False}}
    other = {"kind": "Patient", "id": "1", "attr": {"practice_id": "9", "patient_id": "1", "celebrity": False}}
    for batch, expected in (([own, other], [True, False]), ([other, own], [False, True])):
        result = verdict.check(principal=DR_HOUSE, resources=[(r, ["update"]) for r in batch])
        got = [r.allowed("update") for r in result]
        if got != expected:
            problems.append(f"same-id batch: by position {got}, expected {expected}")
        try:
            answer = result.allowed("Patient", "1", "update")
            problems.append(f"same-id batch: allowed() answered {answer} instead of refusing")
        except AmbiguousResource:
            pass
    single = verdict.check(principal=DR_HOUSE, resources=[(own, ["update"])])
    if not single.allowed("Patient", "1", "update"):
        problems.append("single resource: update denied")
    try:
        verdict.check(principal=DR_HOUSE, token="a.b.c", resources=[(own, ["read"])])
        problems.append("principal and token together were sent")
    except VerdictError:
        pass
    # A server that accepts connections and never answers: the client's default deadline ends
    # the call.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with Verdict(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5) as stuck:
            started = time.monotonic()
            try:
                stuck.check(principal=DR_HOUSE, resources=[(own, ["read"])])
                problems.append("a silent server answered")
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    problems.append(f"a silent server failed the call with {e.code()}")
            if time.monotonic() - started > 5:
                problems.append("the deadline did not end the call")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--scenarios", required=True)
    args = parser.parse_args()
    with open(args.scenarios, encoding="utf-8") as f:
        scenarios = json.load(f)
    passed = failed = 0

    def report(what: str, problems: list[str]) -> None:
        nonlocal passed, failed
        if problems:
            failed += 1
            print(f"FAIL {what}: " + "; ".join(problems))
        else:
            passed += 1
            print(f"ok   {what}")

    with Verdict(args.server, timeout=10) as verdict:
        for kind, run in (("checks", run_check), ("plans", run_plan)):
            for case in scenarios.get(kind, []):
                report(f"{kind[:-1]} {case['name']}", run(verdict, case))
        report("fixed same-id batch and client errors", run_fixed(verdict))
        cases = scenarios.get("checks", [])
        sync_answers = [
            verdict.check(principal=c["principal"], resources=[(c["resource"], list(c["expect"]))],
                          context=c.get("context"), request_id=c["name"])
            for c in cases
        ]
    report(f"async client on {len(cases)} checks", asyncio.run(run_async(args.server, cases, sync_answers)))
    print(f"scenarios: {passed} ok, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
