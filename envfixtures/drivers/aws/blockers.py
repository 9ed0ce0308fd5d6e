"""What keeps a CloudFormation stack from being deleted, and what is left of it after.

CloudFormation cannot delete a bucket that holds objects (or object versions, or delete markers), nor a hosted
zone that holds records other than its own NS and SOA: :func:`clear_known` clears both, for a stack's resources.
What is left once a stack is gone (retained, or a stack record that moto dropped while its resources stayed) is
found by tag with :func:`tagged_resources` (stack tags are passed on to the resources that take tags).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

BUCKET = "AWS::S3::Bucket"
HOSTED_ZONE = "AWS::Route53::HostedZone"
#: The resource types :func:`clear_known` knows how to clear.
KNOWN = (BUCKET, HOSTED_ZONE)


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object, object version and delete marker of ``bucket`` (a bucket already gone is fine);
    how many were deleted."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    except s3.exceptions.NoSuchBucket:
        return deleted
    return deleted


def clear_zone(route53: Any, zone_id: str) -> int:
    """Delete every record set of the hosted zone but its own SOA and apex NS; how many were deleted."""
    zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
    apex = zone["Name"].rstrip(".") + "."
    doomed = []
    for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        for record in page.get("ResourceRecordSets", []):
            if record["Type"] == "SOA" or (record["Type"] == "NS" and record["Name"].rstrip(".") + "." == apex):
                continue
            doomed.append(record)
    for start in range(0, len(doomed), 100):
        changes = [{"Action": "DELETE", "ResourceRecordSet": r} for r in doomed[start : start + 100]]
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return len(doomed)


def clear_known(resources: Iterable[Mapping[str, Any]], client: Callable[[str], Any]) -> list[str]:
    """Clear what blocks the delete of ``resources`` (stack resource summaries): buckets are emptied, zones lose
    their records. ``client(service)`` makes a client. One line per resource cleared or that could not be; a
    failure is reported, not raised (the delete that follows says what is still blocked)."""
    lines = []
    clients: dict[str, Any] = {}
    for resource in resources:
        kind, physical = resource.get("ResourceType"), resource.get("PhysicalResourceId")
        if kind not in KNOWN or not physical:
            continue
        count = 0
        try:
            if kind == BUCKET:
                count = empty_bucket(clients.setdefault("s3", client("s3")), physical)
                what = f"emptied bucket {physical} ({count} object version(s) and delete marker(s))"
            else:
                count = clear_zone(clients.setdefault("route53", client("route53")), physical)
                what = f"cleared hosted zone {physical} ({count} record set(s) other than its SOA and NS)"
        except (ClientError, BotoCoreError) as exc:
            what = f"could not clear {kind} {physical}: {_first_line(exc)}"
        log.info("%s", what)
        if count or what.startswith("could not"):
            lines.append(what)
    return lines


def tagged_resources(tagging: Any, key: str, value: str | None = None) -> dict[str, dict[str, str]]:
    """Every resource of the region tagged ``key`` (``= value`` if given), but CloudFormation stacks, by ARN ->
    its tags (through the Resource Groups Tagging API, which sees the resources of most services)."""
    tag_filter: dict[str, Any] = {"Key": key}
    if value is not None:
        tag_filter["Values"] = [value]
    found = {}
    for page in tagging.get_paginator("get_resources").paginate(TagFilters=[tag_filter]):
        for mapping in page.get("ResourceTagMappingList", []):
            arn = mapping["ResourceARN"]
            if ":cloudformation:" in arn:
                continue
            found[arn] = {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
