"""Health checks of the local scheduler, with Marathon's semantics.

- HTTP/HTTPS/MESOS_HTTP(S): passing when the status is 200..399 within ``timeoutSeconds``; with
  ``ignoreHttp1xx`` a 1xx answer leaves the state unchanged. TCP/MESOS_TCP: the connection opens in time.
  COMMAND: ``/bin/sh -c value`` in the task's sandbox and environment exits 0 in time.
- Failures are ignored within ``gracePeriodSeconds`` of the task's start until its first success.
- Marathon-level checks (HTTP, HTTPS, TCP) kill after ``maxConsecutiveFailures`` consecutive failures, never
  when it is 0; Mesos-level checks (MESOS_*, COMMAND) kill at ``>= maxConsecutiveFailures`` (0 = first failure)
  and wait ``delaySeconds`` (default 15) before the first check, as Mesos does. Marathon-level checks ignore
  ``delaySeconds`` (documented as not implemented in Marathon).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envfixtures.drivers.marathon.client import format_time

MESOS_LEVEL = ("MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP", "COMMAND")


def defaults(check: Mapping[str, Any]) -> dict[str, Any]:
    """A health check with Marathon's defaults filled in (as Marathon returns it in the app)."""
    out = {
        "gracePeriodSeconds": 300,
        "intervalSeconds": 60,
        "timeoutSeconds": 20,
        "maxConsecutiveFailures": 3,
        "delaySeconds": 15,
        "protocol": "HTTP",
    }
    out.update(check)
    if out["protocol"] in ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"):
        out.setdefault("path", "/")
    if out["protocol"] in ("HTTP", "HTTPS"):
        out.setdefault("ignoreHttp1xx", False)
    if out["protocol"] != "COMMAND" and "port" not in out:
        out.setdefault("portIndex", 0)
    return out


@dataclass
class HealthState:
    """One health check's state for one task; ``to_json`` is Marathon's ``Health`` type."""

    check: dict[str, Any]
    instance_id: str
    alive: bool = False
    consecutive_failures: int = 0
    first_success: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str | None = None
    next_at: float = 0.0  # monotonic time of the next check
    running: bool = False  # a check is in flight
    reported: bool = False  # at least one result counted (Marathon lists a result only then)

    @property
    def mesos_level(self) -> bool:
        return self.check["protocol"] in MESOS_LEVEL

    def schedule_first(self, started_mono: float) -> None:
        delay = self.check.get("delaySeconds", 15) if self.mesos_level else 0
        self.next_at = started_mono + delay

    def record(self, ok: bool | None, cause: str | None, started_mono: float, now_mono: float) -> bool:
        """Count one result (None = ignored 1xx); return True when the task must be killed."""
        self.next_at = now_mono + max(float(self.check["intervalSeconds"]), 0.05)
        if ok is None:
            return False
        now = time.time()
        if ok:
            self.alive = True
            self.reported = True
            self.consecutive_failures = 0
            self.last_success = now
            if self.first_success is None:
                self.first_success = now
            return False
        in_grace = self.first_success is None and now_mono - started_mono < self.check["gracePeriodSeconds"]
        if in_grace:
            return False
        self.reported = True
        self.alive = False
        self.consecutive_failures += 1
        self.last_failure = now
        self.last_failure_cause = cause
        limit = int(self.check["maxConsecutiveFailures"])
        if self.mesos_level:
            return self.consecutive_failures >= max(limit, 1) or limit == 0
        return limit > 0 and self.consecutive_failures >= limit

    def to_json(self) -> dict[str, Any]:
        stamp = lambda t: format_time(t) if t else None  # noqa: E731
        return {
            "alive": self.alive,
            "consecutiveFailures": self.consecutive_failures,
            "firstSuccess": stamp(self.first_success),
            "lastSuccess": stamp(self.last_success),
            "lastFailure": stamp(self.last_failure),
            "lastFailureCause": self.last_failure_cause,
            "instanceId": self.instance_id,
        }


def check_port(check: Mapping[str, Any], ports: list[int]) -> int | None:
    if check.get("port"):
        return int(check["port"])
    index = int(check.get("portIndex", 0))
    return ports[index] if index < len(ports) else None


def run_check(
    check: Mapping[str, Any], host: str, ports: list[int], env: Mapping[str, str], cwd: str
) -> tuple[bool | None, str | None]:
    """Run one health check; return (passed, cause). ``passed`` is None for an ignored 1xx answer."""
    protocol = check["protocol"]
    timeout = max(float(check.get("timeoutSeconds", 20)), 0.1)
    if protocol == "COMMAND":
        try:
            result = subprocess.run(  # noqa: S603
                ["/bin/sh", "-c", check["command"]["value"]],
                cwd=cwd,
                env=dict(env),
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {timeout:g}s"
        if result.returncode == 0:
            return True, None
        return False, f"command exited with status {result.returncode}: {result.stderr.decode(errors='replace')[-200:]}"
    port = check_port(check, ports)
    if port is None:
        return False, "no port for this health check"
    if protocol in ("TCP", "MESOS_TCP"):
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True, None
        except OSError as exc:
            return False, f"{type(exc).__name__}: {exc}"
    secure = protocol in ("HTTPS", "MESOS_HTTPS")
    conn: http.client.HTTPConnection
    if secure:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl._create_unverified_context())  # noqa: S323
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", check.get("path") or "/", headers={"User-Agent": "Marathon"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if 100 <= status < 200 and check.get("ignoreHttp1xx"):
        return None, None
    if 200 <= status < 400:
        return True, None
    return False, f"{protocol} request to {host}:{port}{check.get('path') or '/'} returned status {status}"
