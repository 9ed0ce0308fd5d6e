"""The stack's hosts: their boot scripts staged in S3 before the stack, their console output as evidence after.

Staging (taskcat's pattern): one bucket per account and region (:func:`staging_bucket_name`), created when missing
(encrypted, closed to the public, tagged), holds each environment's scripts under ``<env>/<sha>/hosts/``; the hosts
fetch theirs from there at boot (the stack's ``HostScriptsUrl``), and the environment's prefix is deleted at its
teardown. The bucket stays: it is shared by the account's environments.

Console output (Terratest's ``ec2-syslog``): what an instance printed on its serial console, its boot included
(the UserData logs there), read with EC2 ``GetConsoleOutput``: the evidence of a host that did not boot.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

#: The tags of a staging bucket (it belongs to no environment: shared by the account's, in its region).
STAGING_TAGS = {"envfixtures:purpose": "staging"}


def staging_bucket_name(account: str, region: str) -> str:
    """The account's staging bucket in ``region`` (bucket names are global: the account and region make it
    unique; at most 12 + 1 + 25 + 19 characters, within S3's 63)."""
    return f"envfixtures-staging-{account}-{region}".lower()


def ensure_staging_bucket(s3: Any, bucket: str, region: str) -> bool:
    """Create ``bucket`` in ``region`` when it does not exist (encrypted, public access blocked, tagged);
    whether it was created."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if (exc.response.get("Error") or {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 takes no location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in STAGING_TAGS.items()]})
    log.info("created staging bucket %s in %s", bucket, region)
    return True


def upload_scripts(s3: Any, bucket: str, prefix: str, directory: Path) -> list[str]:
    """Upload every ``*.sh`` of ``directory`` to ``s3://bucket/prefix<name>``; their keys (sorted)."""
    keys = []
    for script in sorted(Path(directory).glob("*.sh")):
        key = f"{prefix}{script.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=script.read_bytes(), ContentType="text/x-shellscript")
        keys.append(key)
    return keys


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` of ``bucket`` (a bucket already gone is fine); how many."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    except ClientError as exc:
        if (exc.response.get("Error") or {}).get("Code") != "NoSuchBucket":
            raise
    return deleted


# ---------------------------------------------------------------------------- console output


def instances(ec2: Any, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The instances (any state but terminated long ago: EC2 forgets them) carrying every tag of ``tags``:
    ``id``, ``state`` and their ``Role`` tag, sorted by role then id."""
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                own = {t["Key"]: t["Value"] for t in instance.get("Tags") or []}
                found.append(
                    {
                        "id": instance["InstanceId"],
                        "state": (instance.get("State") or {}).get("Name", "?"),
                        "role": own.get("Role", "?"),
                    }
                )
    return sorted(found, key=lambda i: (i["role"], i["id"]))


def console_output(ec2: Any, instance_id: str) -> str:
    """The instance's console output as text ("" when it has none yet: EC2 keeps the last 64 KiB, from a few
    minutes after boot; ``Latest`` asks for the newest on the instance types that keep it)."""
    try:
        answer = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except ClientError as exc:
        if "Latest" not in str(exc):
            raise
        answer = ec2.get_console_output(InstanceId=instance_id)
    raw = answer.get("Output") or ""
    try:  # the API's Output is base64; some SDKs and stand-ins hand it decoded
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return raw


def collect_console_outputs(ec2: Any, tags: Mapping[str, str], directory: Path) -> list[tuple[dict[str, Any], Path]]:
    """Write the console output of every instance tagged ``tags`` to ``directory/console-<role>-<id>.log``; each
    instance with its file (an instance whose output could not be read gets a file that says why)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for instance in instances(ec2, tags):
        try:
            text = console_output(ec2, instance["id"]) or "(no console output yet)\n"
        except (ClientError, BotoCoreError) as exc:
            text = f"(console output not read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})\n"
        path = directory / f"console-{instance['role']}-{instance['id']}.log"
        path.write_text(text, encoding="utf-8")
        written.append((instance, path))
    return written
