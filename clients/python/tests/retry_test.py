"""The clients' retries and deadlines against the real daemon, sync (Verdict) and asyncio
(AsyncVerdict):

    python clients/python/tests/retry_test.py --verdict target/debug/verdict --policies policies

- a daemon that is not there at the first attempt and starts because of it (the first retry's
  log record starts it, on the port the client calls): the call is answered, after retries;
- a connection to the daemon that fails once (a proxy that drops the first connection, as a
  restarting daemon would), with retries that span under 0.7 s: a retry reaches the daemon (the
  channel's own reconnect backoff, 0.8 to 1.2 s in grpc unless the client sets it, would fail
  every retry at once);
- nothing listening and a deadline shorter than the retries would take: the call fails at its
  deadline (one deadline for the call and its retries), not before and not long after;
- nothing listening and few retries: exactly that many retries, then UNAVAILABLE;
- INVALID_ARGUMENT from the daemon is not retried;
- a bad retry setting is refused when the client is made.

tests/python_client.rs runs it. Prints one line per case and a summary; exits 1 if any failed.
"""

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time

import grpc

from verdict import AsyncVerdict, Verdict, VerdictError

DR_HOUSE = {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
            "attr": {"practice_id": "7"}}
PATIENT = {"kind": "Patient", "id": "123",
           "attr": {"practice_id": "7", "patient_id": "123", "celebrity": False}}


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Retries(logging.Handler):
    """Counts the client's retry records; on the first one, runs `on_first` (starts a daemon)."""

    def __init__(self, on_first=None):
        super().__init__(logging.INFO)
        self.records: list[str] = []
        self.on_first = on_first

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())
        if len(self.records) == 1 and self.on_first:
            self.on_first()


class Watch:
    """Attaches a Retries handler to the client's logger for a `with` block."""

    def __init__(self, on_first=None):
        self.handler = Retries(on_first)
        self.logger = logging.getLogger("verdict.client")

    def __enter__(self) -> Retries:
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self.handler

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)


class LateDaemon:
    """`verdict serve` on `port`, started only when `start` is called; stopped on exit."""

    def __init__(self, verdict: str, policies: str, port: int):
        self.command = [verdict, "serve", "--listen", f"127.0.0.1:{port}", "--policies", policies]
        self.process = None
        self.started_at = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def __enter__(self) -> "LateDaemon":
        return self

    def __exit__(self, *exc) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()


class DroppingProxy:
    """A TCP proxy to 127.0.0.1:`port` that closes the first `drop` connections at once (a daemon
    going away) and forwards the others."""

    def __init__(self, port: int, drop: int = 1):
        self.port, self.drop, self.dropped = port, drop, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dropped < self.drop:
                self.dropped += 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def quick_retries_bridge_a_dropped_connection(verdict: str, policies: str) -> list[str]:
    problems = []
    port = free_port()
    with LateDaemon(verdict, policies, port) as daemon:
        daemon.start()
        with Verdict(f"127.0.0.1:{port}", timeout=30, retries=100, max_backoff=0.5) as ready:
            ready.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])  # the daemon is up
        proxy = DroppingProxy(port)
        # Four retries after 0.05-0.1, 0.1-0.2, 0.1-0.2 and 0.1-0.2 s: 0.35 to 0.7 s in all.
        with Watch() as retries, Verdict(proxy.addr, retries=4, backoff=0.1,
                                         max_backoff=0.2) as client:
            try:
                result = client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])
                if not result.allowed("Patient", "123", "read"):
                    problems.append(f"answered {result}")
            except grpc.RpcError as error:
                problems.append(f"failed: {error.code()} after {len(retries.records)} retries")
            if proxy.dropped != 1 or not retries.records:
                problems.append(f"{proxy.dropped} dropped, {len(retries.records)} retries")
        proxy.close()
    return problems


def late_daemon_sync(verdict: str, policies: str) -> list[str]:
    port = free_port()
    problems = []
    with LateDaemon(verdict, policies, port) as daemon, Watch(daemon.start) as retries:
        with Verdict(f"127.0.0.1:{port}", timeout=30, retries=100, backoff=0.05,
                     max_backoff=0.5) as client:
            result = client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read", "delete"])])
            if [result[0].allowed("read"), result[0].allowed("delete")] != [True, False]:
                problems.append(f"answered {result}")
            if daemon.process is None:
                problems.append("answered without the daemon")
            if not retries.records or "Check: UNAVAILABLE" not in retries.records[0]:
                problems.append(f"no retry after UNAVAILABLE: {retries.records}")
            # The channel is up now: PlanFilter answers at once.
            before = len(retries.records)
            plan = client.plan_filter("Patient", "read", principal=DR_HOUSE)
            if plan.kind != "conditional" or len(retries.records) != before:
                problems.append(f"plan_filter: {plan.kind}, {retries.records[before:]}")
    return problems


async def late_daemon_async(verdict: str, policies: str) -> list[str]:
    port = free_port()
    problems = []
    with LateDaemon(verdict, policies, port) as daemon, Watch(daemon.start) as retries:
        async with AsyncVerdict(f"127.0.0.1:{port}", timeout=30, retries=100, backoff=0.05,
                                max_backoff=0.5) as client:
            plan = await client.plan_filter("Patient", "read", principal=DR_HOUSE)
            if plan.kind != "conditional":
                problems.append(f"plan_filter: {plan.kind}")
            if daemon.process is None:
                problems.append("answered without the daemon")
            if not retries.records or "PlanFilter: UNAVAILABLE" not in retries.records[0]:
                problems.append(f"no retry after UNAVAILABLE: {retries.records}")
            result = await client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])
            if not result.allowed("Patient", "123", "read"):
                problems.append(f"answered {result}")
    return problems


def failed_within(elapsed: float, error: Exception, low: float, high: float,
                  retries: Retries) -> list[str]:
    problems = []
    if not isinstance(error, grpc.RpcError):
        return [f"raised {error!r}"]
    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        problems.append(f"failed with {error.code()}")
    if not low <= elapsed < high:
        problems.append(f"failed after {elapsed:.3f} s, not within [{low}, {high})")
    if len(retries.records) < 3:
        problems.append(f"only {len(retries.records)} retries")
    return problems


def deadline_covers_retries_sync() -> list[str]:
    # 1000 retries would take far longer than the 1 s deadline; the pauses are at most 0.1 s.
    with Watch() as retries, Verdict(f"127.0.0.1:{free_port()}", timeout=1.0, retries=1000,
                                     backoff=0.02, max_backoff=0.1) as client:
        started = time.monotonic()
        try:
            client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])
            return ["answered with nothing listening"]
        except Exception as error:  # noqa: BLE001 - the test reports what it got
            return failed_within(time.monotonic() - started, error, 0.85, 2.5, retries)


async def deadline_covers_retries_async() -> list[str]:
    # The call's own timeout, not the client's 30 s.
    with Watch() as retries:
        async with AsyncVerdict(f"127.0.0.1:{free_port()}", timeout=30, retries=1000,
                                backoff=0.02, max_backoff=0.1) as client:
            started = time.monotonic()
            try:
                await client.plan_filter("Patient", "read", principal=DR_HOUSE, timeout=1.0)
                return ["answered with nothing listening"]
            except Exception as error:  # noqa: BLE001
                return failed_within(time.monotonic() - started, error, 0.85, 2.5, retries)


def retries_are_bounded() -> list[str]:
    problems = []
    for retries_wanted in (0, 3):
        with Watch() as retries, Verdict(f"127.0.0.1:{free_port()}", timeout=30,
                                         retries=retries_wanted, backoff=0.01) as client:
            try:
                client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])
                problems.append("answered with nothing listening")
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    problems.append(f"retries={retries_wanted}: {error.code()}")
            if len(retries.records) != retries_wanted:
                problems.append(f"retries={retries_wanted}: {len(retries.records)} retries")
    return problems


async def other_errors_are_not_retried(verdict: str, policies: str) -> list[str]:
    problems = []
    port = free_port()
    with LateDaemon(verdict, policies, port) as daemon:
        daemon.start()
        with Watch() as retries:
            with Verdict(f"127.0.0.1:{port}", timeout=30, retries=100, max_backoff=0.5) as client:
                # Waits for the daemon (retrying UNAVAILABLE) before the real question.
                client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])])
                before = len(retries.records)
                try:
                    client.check(principal=DR_HOUSE, resources=[({"kind": ""}, ["read"])])
                    problems.append("a resource without a kind was answered")
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        problems.append(f"sync: {error.code()} {error.details()}")
                if len(retries.records) != before:
                    problems.append(f"sync: retried {retries.records[before:]}")
            async with AsyncVerdict(f"127.0.0.1:{port}", timeout=30, retries=5) as client:
                before = len(retries.records)
                try:
                    await client.check(principal=DR_HOUSE, resources=[({"kind": ""}, ["read"])])
                    problems.append("a resource without a kind was answered")
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        problems.append(f"async: {error.code()} {error.details()}")
                if len(retries.records) != before:
                    problems.append(f"async: retried {retries.records[before:]}")
    return problems


def bad_settings_are_refused() -> list[str]:
    problems = []
    for settings in ({"retries": -1}, {"retries": 1.5}, {"backoff": 0}, {"backoff": 2.0},
                     {"timeout": 0}):
        try:
            Verdict("127.0.0.1:1", **settings).close()
            problems.append(f"accepted {settings}")
        except VerdictError:
            pass
    with Verdict("127.0.0.1:1") as client:
        try:
            client.check(principal=DR_HOUSE, resources=[(PATIENT, ["read"])], timeout=-1)
            problems.append("accepted a negative call timeout")
        except VerdictError:
            pass
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdict", required=True, help="the verdict binary")
    parser.add_argument("--policies", required=True)
    args = parser.parse_args()
    failed = passed = 0
    cases = [
        ("sync: a daemon that starts after the first attempt",
         lambda: late_daemon_sync(args.verdict, args.policies)),
        ("async: a daemon that starts after the first attempt",
         lambda: asyncio.run(late_daemon_async(args.verdict, args.policies))),
        ("quick retries bridge a dropped connection",
         lambda: quick_retries_bridge_a_dropped_connection(args.verdict, args.policies)),
        ("sync: one deadline covers the retries", deadline_covers_retries_sync),
        ("async: one deadline covers the retries",
         lambda: asyncio.run(deadline_covers_retries_async())),
        ("retries are bounded", retries_are_bounded),
        ("INVALID_ARGUMENT is not retried",
         lambda: asyncio.run(other_errors_are_not_retried(args.verdict, args.policies))),
        ("bad settings are refused", bad_settings_are_refused),
    ]
    for name, case in cases:
        problems = case()
        if problems:
            failed += 1
            print(f"FAIL {name}: " + "; ".join(problems))
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"retries: {passed} ok, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
