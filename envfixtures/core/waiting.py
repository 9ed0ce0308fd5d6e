"""Bounded waiting with backoff that fails fast when the awaited thing reached a failed state.

What counts as "not ready yet" is said at each call: ``retry_on`` names the exceptions a probe may raise while
the thing it asks is still coming up (a refused connection, a 503). Any other exception is a bug or a real
failure, and ends the wait at once (the way stamina's ``retry(on=...)`` and Terratest's retry of listed
errors do); a wait never spins until its timeout on a ``KeyError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from envfixtures.core.errors import FailedState, WaitTimeout

T = TypeVar("T")

#: A server that is not listening yet: refused or reset connections, timeouts. ``requests``' errors and
#: ``urllib``'s are ``OSError`` too.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError,)


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    retry_on: tuple[type[BaseException], ...] = (),
    failed: Callable[[], str | None] | None = None,
    first_delay: float = 0.05,
    max_delay: float = 1.0,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    ``failed`` is asked before every attempt; when it returns a reason the wait stops at once with
    :class:`FailedState`. An exception of ``retry_on`` from ``probe`` counts as "not yet" (the last one is
    reported on timeout); any other propagates. Delays grow by 1.5x from ``first_delay`` up to ``max_delay``.
    """
    deadline = time.monotonic() + timeout
    delay = first_delay
    last_error: BaseException | None = None
    while True:
        if failed is not None:
            reason = failed()
            if reason:
                raise FailedState(f"{what}: {reason}")
        try:
            result = probe()
        except retry_on as exc:
            last_error = exc
            result = None
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise WaitTimeout(f"{what}: not ready after {timeout:.0f}s{detail}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)
