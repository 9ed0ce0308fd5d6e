"""The environment's CloudFormation stack: parse the template, create, wait, read outputs, delete.

The same code runs against moto (local) and the real service (aws). Two moto behaviours shape it
(see ``docs/local-standins.md``): a failed create raises inside ``create_stack`` and leaves the stack
in ``CREATE_IN_PROGRESS`` for ever, so the create error is reported at once and the waiter is
bounded; and ``describe_stacks`` returns NoEcho parameters in clear text, so no stack description
ever leaves this module with its parameters (see :func:`describe`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from envfixtures.core.errors import BuildError, FailedState, TeardownError, TemplateError, WaitTimeout
from envfixtures.core.redaction import Redactor
from envfixtures.core.waiting import wait_for

log = logging.getLogger(__name__)

CAPABILITIES = ("CAPABILITY_IAM",)


# ---------------------------------------------------------------------------- template


def load_template(path: Path | str) -> dict[str, Any]:
    """Parse a CloudFormation template (YAML with short tags, or JSON) with cfn-lint's loader.

    Raises :class:`TemplateError` naming the file and the line when it does not parse or is not
    a template. Returns the template as plain data (short tags expanded to their long form).
    """
    from cfnlint.decode import decode  # imported here: cfn-lint takes ~2 s to import

    path = Path(path)
    if not path.is_file():
        raise TemplateError(path, "line 1", "template file not found")
    template, matches = decode(str(path))
    if matches:
        first = matches[0]
        line = getattr(first, "linenumber", 1) or 1
        raise TemplateError(path, f"line {line}", f"does not parse: {first.message}")
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict) or not template["Resources"]:
        raise TemplateError(path, "line 1", "not a CloudFormation template: no Resources mapping")
    return template


def no_echo_parameters(template: Mapping[str, Any]) -> frozenset[str]:
    """Names of the template's NoEcho parameters (their values must never be shown)."""
    params = template.get("Parameters") or {}
    return frozenset(k for k, v in params.items() if isinstance(v, Mapping) and str(v.get("NoEcho")).lower() == "true")


# ---------------------------------------------------------------------------- redaction


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by the mask (for messages built from AWS answers)."""
    return Redactor(secrets).redact(text)


def describe(cf: Any, stack: str) -> dict[str, Any] | None:
    """The stack's description without its parameters, or ``None`` when there is no such stack.

    Parameters are dropped because moto returns NoEcho values in clear text.
    """
    try:
        stacks = cf.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    if not stacks:
        return None
    found = dict(stacks[0])
    found.pop("Parameters", None)
    return found


# ---------------------------------------------------------------------------- create


def create_stack(
    cf: Any,
    *,
    name: str,
    template_path: Path | str,
    parameters: Mapping[str, str],
    tags: Mapping[str, str],
    secrets: Iterable[str] = (),
    timeout: float = 60.0,
    max_delay: float = 1.0,
    canonical: bool = False,
) -> str:
    """Create the stack, wait until ``CREATE_COMPLETE``, and return its id.

    ``canonical`` sends the template as parsed (JSON, short forms expanded as CloudFormation reads them) instead
    of its text: moto reads some short forms its own way (``!GetAtt Db.Endpoint.Address`` split on every dot).

    ``secrets`` are values that must not appear in any message (the NoEcho parameter values).
    Fails fast with :class:`FailedState` (carrying the failing events) on a ``*_FAILED`` or
    rollback state, and with :class:`BuildError` when the service refuses the create outright
    (moto does that for every failure). ``timeout`` bounds the wait; use minutes on real AWS.
    """
    secrets = [s for s in secrets if s]
    body = json.dumps(load_template(template_path)) if canonical else Path(template_path).read_text(encoding="utf-8")
    try:
        answer = cf.create_stack(
            StackName=name,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            Capabilities=list(CAPABILITIES),
            # The default (roll back) keeps the failed resources' events to report; teardown deletes.
        )
    except ClientError as exc:
        raise BuildError(
            redact(f"create_stack {name!r} from {template_path} was refused: {_error_text(exc)}", secrets)
        ) from None
    except (BotoCoreError, ResponseParserError) as exc:  # moto answers an HTML 500 for what it does not implement
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BuildError(
            redact(f"create_stack {name!r} from {template_path} failed in the service: {first}", secrets)
        ) from None
    stack_id = answer["StackId"]
    log.info("stack %s: create requested (%s)", name, stack_id)
    wait_for_status(cf, stack_id, target="CREATE_COMPLETE", timeout=timeout, secrets=secrets, max_delay=max_delay)
    return stack_id


def wait_for_status(
    cf: Any,
    stack: str,
    *,
    target: str,
    timeout: float,
    secrets: Iterable[str] = (),
    max_delay: float = 1.0,
    gone_ok: bool = False,
) -> str:
    """Wait until ``stack`` reaches ``target``; fail fast on a failed or rollback state.

    With ``gone_ok`` a stack that no longer exists counts as reached (deletes by name).
    """
    secrets = list(secrets)
    seen: dict[str, str] = {}

    def failed() -> str | None:
        try:
            found = describe(cf, stack)
        except (BotoCoreError, ResponseParserError) as exc:  # moto answers an HTML 500 for stacks it half-made
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return redact(f"the service failed describing stack {stack}: {first}", secrets)
        if found is None:
            seen["status"] = "GONE"
            return None if gone_ok else "the stack does not exist (any more)"
        status = found["StackStatus"]
        seen["status"] = status
        if status == target:
            return None
        wrong_way = target.startswith("CREATE") and status.startswith("DELETE")
        if status.endswith("_FAILED") or "ROLLBACK" in status or wrong_way:
            reason = found.get("StackStatusReason") or "no reason given"
            lines = failing_events(cf, stack)
            detail = "; ".join(lines) if lines else "no failed resource events"
            return redact(f"stack {stack} is {status} ({reason}); failing events: {detail}", secrets)
        return None

    def reached() -> bool:
        return seen.get("status") == target or (gone_ok and seen.get("status") == "GONE")

    wait_for(reached, what=f"stack {stack} to reach {target}", timeout=timeout, failed=failed, max_delay=max_delay)
    return seen["status"]


# ---------------------------------------------------------------------------- read


def outputs(cf: Any, stack: str) -> dict[str, str]:
    """The stack's outputs as ``{OutputKey: OutputValue}``."""
    found = describe(cf, stack)
    if found is None:
        raise BuildError(f"stack {stack} does not exist; cannot read its outputs")
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def events(cf: Any, stack: str, *, limit: int = 30) -> list[str]:
    """The stack's latest events, newest first, one line each (for ``diagnose``)."""
    try:
        answer = cf.describe_stack_events(StackName=stack)
    except ClientError as exc:
        return [f"(no events: {_error_text(exc)})"]
    return [_event_line(e) for e in answer.get("StackEvents", [])[:limit]]


def failing_events(cf: Any, stack: str) -> list[str]:
    """The stack's events in a failed state (the first cause of a rollback is the oldest of them)."""
    try:
        answer = cf.describe_stack_events(StackName=stack)
    except ClientError:
        return []
    failed = [e for e in answer.get("StackEvents", []) if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
    return [_event_line(e) for e in reversed(failed)][:10]


# ---------------------------------------------------------------------------- delete

#: How many times a stack in ``DELETE_FAILED`` is deleted again (its known blockers cleared in between) before the
#: last delete retains what still fails.
DELETE_ATTEMPTS = 3


@dataclass(frozen=True)
class Deleted:
    """A finished delete: the stack's name, how many deletes it took, and what the last one retained (one
    ``"<type> <physical id> (<logical id>)"`` each: left in the account, no longer in any stack)."""

    name: str
    attempts: int
    retained: tuple[str, ...] = ()


def stack_resources(cf: Any, stack: str) -> list[dict[str, Any]]:
    """The stack's resources (logical and physical id, type, status and its reason); empty when it is gone."""
    found: list[dict[str, Any]] = []
    try:
        for page in cf.get_paginator("list_stack_resources").paginate(StackName=stack):
            found += page.get("StackResourceSummaries", [])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return []
        raise
    return found


def blockers(cf: Any, stack: str) -> list[dict[str, Any]]:
    """The resources a delete could not delete (``DELETE_FAILED``), with their reasons."""
    return [r for r in stack_resources(cf, stack) if r.get("ResourceStatus") == "DELETE_FAILED"]


def resource_line(resource: Mapping[str, Any]) -> str:
    reason = resource.get("ResourceStatusReason") or ""
    return (
        f"{resource.get('ResourceType')} {resource.get('PhysicalResourceId') or '?'} "
        f"({resource.get('LogicalResourceId')}){': ' + reason if reason else ''}"
    )


def delete_stack(
    cf: Any,
    stack: str,
    *,
    timeout: float = 60.0,
    max_delay: float = 1.0,
    clear: Callable[[list[dict[str, Any]]], list[str]] | None = None,
    attempts: int = DELETE_ATTEMPTS,
    progress: Callable[[str], None] | None = None,
) -> Deleted | None:
    """Delete the stack until it is gone; ``None`` if there was no such stack, or it was deleted already (nothing
    was done: what a previous delete left, retained or refused, is for the caller to look for).

    ``stack`` may be the stack id (preferred: a deleted stack stays describable by id) or its name. ``clear`` is
    given resources of the stack and clears what would block their delete (empties buckets, removes zone records),
    returning one line per thing done: it is called with every resource before the first delete, then with the
    ``DELETE_FAILED`` ones before each new attempt. After ``attempts`` deletes that end ``DELETE_FAILED``, one more
    delete retains the resources that still fail (``RetainResources``): the stack goes, they stay, and the result
    names them. Each wait is bounded by ``timeout``.

    Raises :class:`TeardownError` when the delete is refused (moto refuses a VPC stack, ``DependencyViolation``,
    and drops the stack's record while its resources stay), does not finish in time, or the stack is still there.
    """
    say = progress or log.info
    found = describe(cf, stack)
    if found is None:
        log.info("stack %s: already gone", stack)
        return None
    name, stack_id = found["StackName"], found["StackId"]
    if found["StackStatus"] == "DELETE_COMPLETE":  # by id, a deleted stack is still described (for 90 days)
        log.info("stack %s: already deleted", name)
        return None
    if clear is not None:
        try:
            resources = stack_resources(cf, stack_id)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:  # moto: a stack it half-made
            resources = []
            say(f"aws: stack {name}: its resources could not be listed ({type(exc).__name__}); deleting it as it is")
        for line in clear(resources):
            say(f"aws: stack {name}: {line}")
    failing: list[dict[str, Any]] = []
    for attempt in range(1, attempts + 1):
        if _delete_until_done(cf, stack_id, name, timeout=timeout, max_delay=max_delay) != "DELETE_FAILED":
            return _verified(cf, name, Deleted(name, attempt))
        failing = blockers(cf, stack_id)
        listed = "; ".join(resource_line(r) for r in failing) or "no resource in DELETE_FAILED"
        say(f"aws: stack {name}: delete {attempt}/{attempts} ended DELETE_FAILED; blocked by: {listed}")
        if clear is not None and attempt < attempts:
            for line in clear(failing):
                say(f"aws: stack {name}: {line}")
    retain = [r["LogicalResourceId"] for r in failing]
    if not retain:
        raise TeardownError(
            f"stack {name} is DELETE_FAILED after {attempts} deletes with no failed resource to retain; see its "
            f"events (`aws cloudformation describe-stack-events --stack-name {stack_id}`)"
        )
    retained = tuple(
        f"{r.get('ResourceType')} {r.get('PhysicalResourceId') or '?'} ({r['LogicalResourceId']})" for r in failing
    )
    say(f"aws: stack {name}: deleting it retaining {len(retained)} resource(s): {', '.join(retained)}")
    status = _delete_until_done(cf, stack_id, name, timeout=timeout, max_delay=max_delay, retain=retain)
    if status == "DELETE_FAILED":
        listed = "; ".join(resource_line(r) for r in blockers(cf, stack_id))
        raise TeardownError(
            f"stack {name} is still DELETE_FAILED even retaining {', '.join(retain)} ({listed}); delete it in the "
            f"console or with `aws cloudformation delete-stack --stack-name {stack_id}`"
        )
    return _verified(cf, name, Deleted(name, attempts + 1, retained))


def _delete_until_done(
    cf: Any, stack_id: str, name: str, *, timeout: float, max_delay: float, retain: list[str] | None = None
) -> str:
    """Ask for the delete and wait for its end: ``DELETE_COMPLETE`` (or gone), or ``DELETE_FAILED``."""
    try:
        if retain:
            cf.delete_stack(StackName=stack_id, RetainResources=retain)
        else:
            cf.delete_stack(StackName=stack_id)
    except ClientError as exc:
        # Real AWS accepts the request and reports DELETE_FAILED; moto refuses a VPC stack here
        # (DependencyViolation) and drops the stack record while its resources stay.
        raise TeardownError(
            f"delete of stack {name} was refused: {_error_text(exc)}; its resources may be left"
        ) from None
    log.info("stack %s: delete requested%s", name, f" retaining {retain}" if retain else "")
    try:
        return wait_for_status(
            cf, stack_id, target="DELETE_COMPLETE", timeout=timeout, max_delay=max_delay, gone_ok=True
        )
    except FailedState as exc:
        found = describe(cf, stack_id)
        if found is not None and found["StackStatus"] == "DELETE_FAILED":
            return "DELETE_FAILED"
        raise TeardownError(
            f"stack {name} was not deleted: {exc}; delete it in the console or with "
            f"`aws cloudformation delete-stack --stack-name {name}`"
        ) from None
    except WaitTimeout as exc:
        raise TeardownError(
            f"stack {name} was not deleted: {exc}; delete it in the console or with "
            f"`aws cloudformation delete-stack --stack-name {name}`"
        ) from None


def _verified(cf: Any, name: str, deleted: Deleted) -> Deleted:
    left = describe(cf, name)
    if left is not None and left["StackStatus"] != "DELETE_COMPLETE":
        raise TeardownError(f"stack {name} is still there after its delete ({left['StackStatus']})")
    log.info("stack %s: deleted and verified gone", name)
    return deleted


# ---------------------------------------------------------------------------- find


def tagged_stacks(cf: Any, key: str) -> list[dict[str, Any]]:
    """Every stack of the region that carries the tag ``key`` and is not deleted: ``name``, ``id``, ``status``,
    ``created`` (a datetime), ``value`` (the tag's) and ``tags``; never its parameters (moto shows NoEcho ones)."""
    found = []
    for page in cf.get_paginator("describe_stacks").paginate():
        for stack in page.get("Stacks", []):
            tags = {t["Key"]: t["Value"] for t in stack.get("Tags") or []}
            if key not in tags or stack.get("StackStatus") == "DELETE_COMPLETE":
                continue
            found.append(
                {
                    "name": stack["StackName"],
                    "id": stack["StackId"],
                    "status": stack["StackStatus"],
                    "created": stack.get("CreationTime"),
                    "value": tags[key],
                    "tags": tags,
                }
            )
    return found


# ---------------------------------------------------------------------------- helpers


def _event_line(event: Mapping[str, Any]) -> str:
    when = event.get("Timestamp")
    stamp = when.strftime("%H:%M:%S") if hasattr(when, "strftime") else str(when)
    reason = event.get("ResourceStatusReason") or ""
    return (
        f"{stamp} {event.get('LogicalResourceId')} ({event.get('ResourceType')}) "
        f"{event.get('ResourceStatus')}{': ' + reason if reason else ''}"
    )


def _error_text(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    return f"{err.get('Code', 'Error')}: {err.get('Message', str(exc))}"
