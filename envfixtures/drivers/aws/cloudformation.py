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
from collections.abc import Iterable, Mapping
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


def delete_stack(cf: Any, stack: str, *, timeout: float = 60.0, max_delay: float = 1.0) -> None:
    """Delete the stack, wait for ``DELETE_COMPLETE``, then verify that it is gone by name.

    ``stack`` may be the stack id (preferred: a deleted stack stays describable by id) or its name.
    Raises :class:`TeardownError` when it fails or is still there.
    """
    found = describe(cf, stack)
    if found is None:
        log.info("stack %s: already gone", stack)
        return
    name = found["StackName"]
    try:
        cf.delete_stack(StackName=found["StackId"])
    except ClientError as exc:
        # Real AWS accepts the request and reports DELETE_FAILED; moto refuses a VPC stack here
        # (DependencyViolation) and drops the stack record while its resources stay.
        raise TeardownError(
            f"delete of stack {name} was refused: {_error_text(exc)}; its resources may be left"
        ) from None
    log.info("stack %s: delete requested", name)
    try:
        wait_for_status(
            cf, found["StackId"], target="DELETE_COMPLETE", timeout=timeout, max_delay=max_delay, gone_ok=True
        )
    except (FailedState, WaitTimeout) as exc:
        raise TeardownError(
            f"stack {name} was not deleted: {exc}; delete it in the console or with "
            f"`aws cloudformation delete-stack --stack-name {name}`"
        ) from None
    left = describe(cf, name)
    if left is not None and left["StackStatus"] != "DELETE_COMPLETE":
        raise TeardownError(f"stack {name} is still there after its delete ({left['StackStatus']})")
    log.info("stack %s: deleted and verified gone", name)


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
