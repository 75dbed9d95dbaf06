"""Runs scenarios through the Python client against a running daemon and checks every answer.

    python examples/python/client_test.py --server 127.0.0.1:50051 --scenarios scenarios.json

The scenarios file is JSON: {"checks": [...], "plans": [...]}. Each check has a `principal`, a
`resource`, an optional `context`, `expect` (action -> "allow" | "deny") and optionally `rules`
(action -> "policy/rule") and `reasons` (action -> a substring of the reason). Each plan has a
`principal`, `kind`, `action`, optional `context` and `known_attr`, `expect` ("always_allowed",
"always_denied", "conditional") and, when conditional, `filter` (describe()'s one-line form).
tests/python_client.rs writes this file from the bundled clinic suite
(policies/clinic/clinic_test.yaml) and runs this script. Prints one line per scenario and a
summary; exits 1 if any scenario failed.
"""

import argparse
import json
import sys

from client import Verdict, describe


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
    kind, id, decisions = result.results[0]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--scenarios", required=True)
    args = parser.parse_args()
    with open(args.scenarios, encoding="utf-8") as f:
        scenarios = json.load(f)
    passed = failed = 0
    with Verdict(args.server, timeout=10) as verdict:
        for kind, run in (("checks", run_check), ("plans", run_plan)):
            for case in scenarios.get(kind, []):
                problems = run(verdict, case)
                if problems:
                    failed += 1
                    print(f"FAIL {kind[:-1]} {case['name']}: " + "; ".join(problems))
                else:
                    passed += 1
                    print(f"ok   {kind[:-1]} {case['name']}")
    print(f"scenarios: {passed} ok, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
