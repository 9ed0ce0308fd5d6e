"""Rules on the CloudFormation template, as rendered, plus cfn-lint run as a library.

The template is parsed with cfn-lint's decoder (via :func:`envfixtures.drivers.aws.cloudformation.load_template`),
whose nodes carry their line, then *rendered*: ``Ref`` and ``Fn::Sub`` of parameters and pseudo
parameters are replaced by example values (parameter defaults, an example environment name and SHA),
so that a rule sees ``FromPort: 8000`` where the file says ``!Ref AppPort``. Rules that look for
secrets read the template as written (a rendered ``!Ref`` is an example value, not a literal).

Rules reason about values, not text: a CIDR is parsed (``192.168.1.0/0`` is all of IPv4), ports are
numbers, a value under ``Fn::If`` is each of its branches, and messages name resources, not raw intrinsics.
All rules here are policy rules (:mod:`.policy`): CloudFormation would accept what they refuse.

Which security group is which is read from the template's structure, not from logical ids:
the load balancer's groups are those of ``AWS::ElasticLoadBalancingV2::LoadBalancer``; the database's
those of ``AWS::RDS::DBInstance`` / ``DBCluster``; a host role's groups are those of the launch
templates whose instances carry that ``Role`` tag. The apps' group is a group of the app hosts that no
other role's hosts carry (the Mesos cluster group sits on masters too, so it does not count).
A group may always reach itself (cluster members talking to each other).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfixtures.core import naming
from envfixtures.core.errors import TemplateError
from envfixtures.drivers.aws import cloudformation as cfn
from envfixtures.rules import Finding, from_error, secret_like
from envfixtures.rules.policy import Policy

SOURCE_KEYS = ("CidrIp", "CidrIpv6", "SourcePrefixListId", "SourceSecurityGroupId")
WORLD = frozenset({"0.0.0.0/0", "::/0"})
#: The ports a database engine listens on when the instance sets no ``Port``.
ENGINE_PORTS = {
    "postgres": 5432,
    "aurora-postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "aurora-mysql": 3306,
    "aurora": 3306,
    "oracle": 1521,
    "sqlserver": 1433,
}
#: The broker's service ports (AMQP, AMQPS, management HTTP/HTTPS) open to clients.
BROKER_PORTS = frozenset({5671, 5672, 15671, 15672})
#: Properties with which a DB instance or cluster inherits its storage encryption (CloudFormation forbids
#: setting StorageEncrypted with them: a read replica, a restore from a snapshot, a cluster member).
INHERITS_ENCRYPTION = (
    "SourceDBInstanceIdentifier",
    "SourceDBClusterIdentifier",
    "DBSnapshotIdentifier",
    "DBClusterSnapshotIdentifier",
    "SnapshotIdentifier",
    "DBClusterIdentifier",
)
EXAMPLE_SHA = "0123456789abcdef0123456789abcdef01234567"
EXAMPLE_ENV = naming.env_name(EXAMPLE_SHA, "abcd")
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": EXAMPLE_ENV,
    "AWS::StackId": f"arn:aws:cloudformation:us-east-1:123456789012:stack/{EXAMPLE_ENV}/example",
}
#: An example of each value the ``aws`` component can pass to a stack parameter (its configured ``parameters``
#: say which parameter gets which), to render the template as it will be built.
EXAMPLE_VALUES = {
    "env_name": EXAMPLE_ENV,
    "sha": EXAMPLE_SHA,
    "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    "host_scripts_url": f"s3://envfixtures-staging-123456789012-us-east-1/{EXAMPLE_ENV}/{EXAMPLE_SHA}/hosts/",
    "internal_load_balancer": "true",
    "host_image": "ami-0123456789abcdef0",
    "domain_name": "",  # the API's own name is optional: the template is checked as most runs build it
    "hosted_zone_id": "",
}


def example_parameters(parameters: Mapping[str, str]) -> dict[str, Any]:
    """Example values of the stack parameters that a platform's ``[tool.envfixtures.aws.parameters]`` maps (stack
    parameter -> what envfixtures gives it), to render the template as it will be built (no secret: its marker)."""
    return {p: EXAMPLE_VALUES[v] for p, v in parameters.items() if v in EXAMPLE_VALUES}


_NO_VALUE = object()
_NO_APP_GROUP = (
    "none found: the apps' hosts are launch templates tagged Role=<one of "
    "[tool.envfixtures.rules.cfn-private-sources] app_roles>"
)
_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")
#: Secret-like keys whose value is a reference to a secret, not a secret (``MasterUserSecret.SecretArn``).
_NOT_SECRET_SUFFIXES = ("arn", "id", "name", "length", "policy", "type", "enabled", "version", "kmskeyid")


@dataclass(frozen=True)
class Document:
    """A parsed template: as written (``raw``) and as rendered with example parameter values."""

    path: Path
    raw: dict[str, Any]
    rendered: dict[str, Any]
    values: dict[str, Any]
    #: the platform's policy (the rules' settings: which hosts are the apps')
    policy: Policy = Policy()

    def resources(self, *types: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(logical id, rendered resource) of the given types (all when none given)."""
        for rid, res in (self.rendered.get("Resources") or {}).items():
            if isinstance(res, Mapping) and (not types or res.get("Type") in types):
                yield rid, res

    def finding(self, rule: str, node: Any, message: str, resource: Any = None) -> Finding:
        """A finding at ``node``'s line, else at the ``Properties`` key of ``resource``."""
        fallback = key_of(resource, "Properties") if isinstance(resource, Mapping) else resource
        return Finding(str(self.path), f"line {line_of(node, fallback)}", rule, message)


# ---------------------------------------------------------------------------- loading and rendering


def load(path: Path | str, values: Mapping[str, Any] | None = None, policy: Policy | None = None) -> Document:
    """Parse and render ``path``; :class:`TemplateError` (file, line) when it does not parse."""
    path = Path(path)
    raw = cfn.load_template(path)
    vals = example_values(raw, values)
    return Document(path, raw, render(raw, vals), vals, policy or Policy())


def example_values(template: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A value for every parameter: ``given``, else an example, else the default, else a marker."""
    out: dict[str, Any] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        spec = spec if isinstance(spec, Mapping) else {}
        if given and name in given:
            value: Any = given[name]
        elif "Default" in spec:
            value = spec["Default"]
        elif spec.get("Type") == "Number":
            value = spec.get("MinValue", 1)
        else:
            value = f"<{name}>"
        if spec.get("Type") == "Number":
            try:
                value = int(value)
            except (TypeError, ValueError):
                pass
        out[name] = value
    return out


def render(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` with Refs and Subs of parameters replaced by ``values`` (nodes keep their lines)."""
    known = {**PSEUDO, **values}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref" and isinstance(arg, str):
                    if arg == "AWS::NoValue":
                        return _NO_VALUE
                    if arg in known:
                        return _like(node, known[arg])
                if key == "Fn::Sub":
                    text = _sub(arg, known, walk)
                    if text is not None:
                        return _like(node, text)
                if key == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
                    branches = [walk(b) for b in arg[1:]]  # a branch of AWS::NoValue stays one (not dropped)
                    kept = [{"Ref": "AWS::NoValue"} if b is _NO_VALUE else b for b in branches]
                    out_if = copy.copy(node)
                    out_if[key] = [arg[0], *kept]
                    return out_if
            out = copy.copy(node)
            out.clear()
            for k, v in node.items():
                new = walk(v)
                if new is not _NO_VALUE:
                    out[k] = new
            return out
        if isinstance(node, list):
            out_list = copy.copy(node)
            out_list.clear()
            out_list.extend(v for v in (walk(x) for x in node) if v is not _NO_VALUE)
            return out_list
        return node

    rendered = walk(template)
    rendered["Parameters"] = template.get("Parameters") or {}  # kept as written
    return rendered


def _sub(arg: Any, known: Mapping[str, Any], walk: Callable[[Any], Any]) -> Any:
    """The string of an ``Fn::Sub`` when every variable is known; ``None`` otherwise."""
    if isinstance(arg, str):
        text, extra = arg, {}
    elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], Mapping):
        text, extra = arg
    else:
        return None
    scope = {**known, **{k: walk(v) for k, v in (extra or {}).items()}}
    names = _SUB_VAR.findall(text)
    if not all(n in scope and isinstance(scope[n], (str, int)) for n in names):
        return None
    return _SUB_VAR.sub(lambda m: str(scope[m.group(1)]), text)


def _like(node: Any, value: Any) -> Any:
    """``value`` carrying the line of ``node`` when it is a string."""
    if isinstance(value, str) and hasattr(node, "start_mark"):
        from cfnlint.decode.node import str_node

        return str_node(value, node.start_mark, node.end_mark)
    return value


def line_of(node: Any, fallback: Any = None) -> int:
    """1-based line of a parsed node (a mapping key is a node too); 1 when nothing carries a mark."""
    for candidate in (node, fallback):
        mark = getattr(candidate, "start_mark", None)
        if mark is not None:
            return int(mark.line) + 1
    return 1


def key_of(mapping: Any, key: str) -> Any:
    """The key object of ``mapping`` (it carries the key's line), or ``None`` when absent."""
    for k in mapping if isinstance(mapping, Mapping) else ():
        if k == key:
            return k
    return None


# ---------------------------------------------------------------------------- structure helpers


def name_of(node: Any) -> str:
    """What a reader calls ``node`` in a message: a resource's or parameter's name, not a raw intrinsic."""
    if isinstance(node, Mapping) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return str(arg)
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else [str(a) for a in arg]
            return str(parts[0]) if parts[-1] == "GroupId" else ".".join(str(p) for p in parts)
        if key == "Fn::Sub":
            return str(arg[0] if isinstance(arg, list) and arg else arg)
        if key == "Fn::ImportValue":
            return f"the export {name_of(arg)}"
        if key == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return f"{name_of(arg[1])} or {name_of(arg[2])} (if {arg[0]})"
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(name_of(a) for a in arg[1])
        if str(key).startswith("Fn::"):
            return f"a value computed by {key}"
    if isinstance(node, (Mapping, list)):
        return json.dumps(node, default=str)
    return str(node)


def _values(node: Any) -> list[Any]:
    """The values ``node`` may take: both branches of an ``Fn::If`` (``None`` for ``AWS::NoValue``)."""
    if isinstance(node, Mapping) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return _values(arg[1]) + _values(arg[2])
        if key == "Ref" and arg == "AWS::NoValue":
            return [None]
    return [node]


def world_prefix(cidr: Any) -> bool:
    """Whether ``cidr`` is a /0 prefix of IPv4 or IPv6 however written (``192.168.1.0/0`` is all of IPv4)."""
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def sg_ref(node: Any) -> str | None:
    """The logical id (or literal id) a security group reference points to."""
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            parts = arg.split(".") if isinstance(arg, str) else list(arg)
            if parts and parts[-1] == "GroupId":
                return str(parts[0])
    return None


def _refs(nodes: Any) -> set[str]:
    return {r for r in (sg_ref(n) for n in (nodes if isinstance(nodes, list) else [])) if r}


def _tags(tags: Any) -> dict[str, Any]:
    return {t.get("Key"): t.get("Value") for t in (tags or []) if isinstance(t, Mapping)}


def host_groups(doc: Document) -> dict[str, set[str]]:
    """Role tag -> security groups of the launch templates whose instances carry it."""
    lt_roles: dict[str, set[str]] = {}
    lt_groups: dict[str, set[str]] = {}
    for rid, res in doc.resources("AWS::EC2::LaunchTemplate"):
        data = (res.get("Properties") or {}).get("LaunchTemplateData") or {}
        groups = _refs(data.get("SecurityGroupIds")) | _refs(data.get("SecurityGroups"))
        for nic in data.get("NetworkInterfaces") or []:
            groups |= _refs(nic.get("Groups")) if isinstance(nic, Mapping) else set()
        lt_groups[rid] = groups
        for spec in data.get("TagSpecifications") or []:
            if isinstance(spec, Mapping) and spec.get("ResourceType") == "instance":
                role = _tags(spec.get("Tags")).get("Role")
                if isinstance(role, str):
                    lt_roles.setdefault(rid, set()).add(role)
    for _, res in doc.resources("AWS::AutoScaling::AutoScalingGroup"):
        props = res.get("Properties") or {}
        lt = sg_ref((props.get("LaunchTemplate") or {}).get("LaunchTemplateId"))
        role = _tags(props.get("Tags")).get("Role")
        if lt and isinstance(role, str):
            lt_roles.setdefault(lt, set()).add(role)
    out: dict[str, set[str]] = {}
    for lt, roles in lt_roles.items():
        for role in roles:
            out.setdefault(role, set()).update(lt_groups.get(lt, set()))
    return out


def load_balancer_groups(doc: Document) -> set[str]:
    out: set[str] = set()
    for _, res in doc.resources("AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::ElasticLoadBalancing::LoadBalancer"):
        out |= _refs((res.get("Properties") or {}).get("SecurityGroups"))
    return out


def database_groups(doc: Document) -> set[str]:
    out: set[str] = set()
    for _, res in doc.resources("AWS::RDS::DBInstance", "AWS::RDS::DBCluster"):
        out |= _refs((res.get("Properties") or {}).get("VPCSecurityGroups"))
    return out


def broker_groups(doc: Document) -> set[str]:
    roles = host_groups(doc)
    out = set().union(*(roles.get(r, set()) for r in doc.policy.of("cfn-private-sources").broker_roles))
    for _, res in doc.resources("AWS::AmazonMQ::Broker"):
        out |= _refs((res.get("Properties") or {}).get("SecurityGroups"))
    return out


def app_groups(doc: Document) -> set[str]:
    """Groups carried by app hosts and by no other role's hosts."""
    roles = host_groups(doc)
    app_roles = doc.policy.of("cfn-private-sources").app_roles
    apps = set().union(*(roles.get(r, set()) for r in app_roles))
    others = set().union(*(g for r, g in roles.items() if r not in app_roles))
    return apps - others


@dataclass(frozen=True)
class Ingress:
    group: str | None
    rule: Mapping[str, Any]
    where: Any  # a node carrying the line
    group_node: Any = None

    @property
    def name(self) -> str:
        """The group's name for a message."""
        return self.group or name_of(self.group_node)


def ingress_rules(doc: Document) -> Iterator[Ingress]:
    """Every ingress rule: inline in a security group, or a standalone SecurityGroupIngress."""
    for rid, res in doc.resources("AWS::EC2::SecurityGroup"):
        for rule in (res.get("Properties") or {}).get("SecurityGroupIngress") or []:
            if isinstance(rule, Mapping):
                yield Ingress(rid, rule, rule)
    for _, res in doc.resources("AWS::EC2::SecurityGroupIngress"):
        props = res.get("Properties") or {}
        yield Ingress(sg_ref(props.get("GroupId")), props, props, props.get("GroupId"))


def _ports(rule: Mapping[str, Any]) -> str:
    if str(rule.get("IpProtocol")) in ("-1", "all"):
        return "all ports"
    lo, hi = name_of(rule.get("FromPort")), name_of(rule.get("ToPort"))
    return f"port {lo}" if lo == hi else f"ports {lo}-{hi}"


def _port_range(rule: Mapping[str, Any]) -> tuple[int, int] | None:
    """(from, to) of an ingress rule; (0, 65535) for all protocols; ``None`` when not known statically."""
    if str(rule.get("IpProtocol")) in ("-1", "all"):
        return (0, 65535)
    try:
        lo, hi = int(rule.get("FromPort")), int(rule.get("ToPort"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if lo == -1 or hi == -1:
        return (0, 65535)
    return (lo, hi)


def _source(rule: Mapping[str, Any]) -> str:
    for key in ("CidrIp", "CidrIpv6", "SourcePrefixListId"):
        if rule.get(key) is not None:
            return name_of(rule[key])
    source = rule.get("SourceSecurityGroupId")
    return f"group {sg_ref(source) or name_of(source)}" if source is not None else "an unknown source"


# ---------------------------------------------------------------------------- rules


def world_open(doc: Document) -> list[Finding]:
    """Nothing but the load balancer's security group is reachable from any /0 prefix of IPv4 or IPv6."""
    lb = load_balancer_groups(doc)
    out = []
    for ing in ingress_rules(doc):
        for key in ("CidrIp", "CidrIpv6"):
            cidr = ing.rule.get(key)
            if world_prefix(cidr) and ing.group not in lb:
                canonical = "0.0.0.0/0" if key == "CidrIp" else "::/0"
                written = f"{cidr} (that is {canonical})" if str(cidr).strip() != canonical else canonical
                out.append(
                    doc.finding(
                        "cfn-world-open",
                        key_of(ing.rule, key),
                        f"security group {ing.name} is open to {written} on {_ports(ing.rule)}; only the load "
                        f"balancer's group ({', '.join(sorted(lb)) or 'none'}) may be reachable from the internet",
                    )
                )
    return out


def internal_load_balancer_groups(doc: Document) -> set[str]:
    """The security groups of the template's internal load balancers (``Scheme: internal``)."""
    out: set[str] = set()
    for _, res in doc.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"):
        props = res.get("Properties") or {}
        if props.get("Scheme") == "internal":
            out |= _refs(props.get("SecurityGroups"))
    return out


def _overlap(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether two port ranges share a port (an unknown range may share any)."""
    return a is None or b is None or (a[0] <= b[1] and b[0] <= a[1])


def _relay_closed(doc: Document, relay: str, ports: tuple[int, int] | None, apps: set[str]) -> bool:
    """Whether the internal load balancer's group ``relay`` admits, on ``ports``, only the apps' group (or itself):
    then a guarded group that admits ``relay`` on those ports is still reached from the apps only."""
    for ing in ingress_rules(doc):
        if ing.group != relay or not _overlap(_port_range(ing.rule), ports):
            continue
        source = sg_ref(ing.rule.get("SourceSecurityGroupId"))
        if source is None or (source not in apps and source != relay):
            return False
    return True


def private_sources(doc: Document) -> list[Finding]:
    """The database's and the broker's groups are reached only from the apps' group (or from themselves), directly or
    through an internal load balancer whose own group admits, on those ports, only the apps' group."""
    apps = app_groups(doc)
    guarded = {g: "database" for g in database_groups(doc)} | {g: "broker" for g in broker_groups(doc)}
    relays = internal_load_balancer_groups(doc) - set(guarded)
    out = []
    for ing in ingress_rules(doc):
        if ing.group not in guarded:
            continue
        source = sg_ref(ing.rule.get("SourceSecurityGroupId"))
        if source is not None and (source in apps or source == ing.group):
            continue
        if source in relays and _relay_closed(doc, source, _port_range(ing.rule), apps):
            continue
        source_key = next((k for k in SOURCE_KEYS if ing.rule.get(k) is not None), "SourceSecurityGroupId")
        out.append(
            doc.finding(
                "cfn-private-sources",
                key_of(ing.rule, source_key),
                f"{guarded[ing.group]} security group {ing.name} admits {_source(ing.rule)} on {_ports(ing.rule)}; "
                f"it may be reached only from the apps' group ({', '.join(sorted(apps)) or _NO_APP_GROUP})"
                + (
                    " (an internal load balancer's group counts only when it admits, on those ports, nothing else)"
                    if source in relays
                    else ""
                ),
            )
        )
    return out


def database_ports(doc: Document) -> dict[str, set[int]]:
    """Database group -> the ports its instances and clusters listen on (``Port``, else the engine's)."""
    out: dict[str, set[int]] = {}
    for _, res in doc.resources("AWS::RDS::DBInstance", "AWS::RDS::DBCluster"):
        props = res.get("Properties") or {}
        try:
            port = int(props["Port"]) if props.get("Port") is not None else None
        except (TypeError, ValueError):
            port = None
        if port is None:
            port = ENGINE_PORTS.get(str(props.get("Engine", "")).lower())
        for group in _refs(props.get("VPCSecurityGroups")):
            out.setdefault(group, set()).update({port} if port else set())
    return out


def port_ranges(doc: Document) -> list[Finding]:
    """Least privilege: ingress to the database's and the broker's groups opens one service port, no wider range
    (the database's port; AMQP and management for the broker). A group reaching itself (a cluster) is exempt."""
    allowed = {g: ("database", ports) for g, ports in database_ports(doc).items()}
    allowed |= {g: ("broker", set(BROKER_PORTS)) for g in broker_groups(doc)}
    out = []
    for ing in ingress_rules(doc):
        if ing.group not in allowed or sg_ref(ing.rule.get("SourceSecurityGroupId")) == ing.group:
            continue
        role, ports = allowed[ing.group]
        span = _port_range(ing.rule)
        if span is None or not ports:
            continue
        lo, hi = span
        if lo == hi and lo in ports:
            continue
        where = "FromPort" if "FromPort" in ing.rule else "IpProtocol"
        out.append(
            doc.finding(
                "cfn-port-range",
                key_of(ing.rule, where),
                f"{role} security group {ing.name} opens {_ports(ing.rule)} to {_source(ing.rule)}; open only "
                f"its service port ({', '.join(str(p) for p in sorted(ports))}), one rule per port",
                ing.where,
            )
        )
    return out


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _databases(doc: Document) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    for rid, res in doc.resources("AWS::RDS::DBInstance"):
        yield rid, res, res.get("Properties") or {}


def _inherits_encryption(props: Mapping[str, Any]) -> bool:
    """Set (in every branch of an ``Fn::If``) one of the properties that make storage encryption inherited."""
    return any(
        props.get(key) is not None and all(v not in (None, "") for v in _values(props[key]))
        for key in INHERITS_ENCRYPTION
    )


def _encrypted(value: Any) -> bool:
    return value is not None and all(v is None or _truthy(v) for v in _values(value))


def database_encrypted(doc: Document) -> list[Finding]:
    """Every DB instance and cluster has StorageEncrypted: true, except those that inherit it (a read replica,
    a restore from a snapshot, a member of a cluster: CloudFormation forbids setting it there)."""
    out = []
    for rid, res in doc.resources("AWS::RDS::DBInstance", "AWS::RDS::DBCluster"):
        props = res.get("Properties") or {}
        if _inherits_encryption(props):
            continue
        value = props.get("StorageEncrypted")
        if not _encrypted(value):
            kind = "database cluster" if res.get("Type") == "AWS::RDS::DBCluster" else "database"
            shown = "" if value is None else f" (is {name_of(value)})"
            out.append(
                doc.finding(
                    "cfn-db-encrypted",
                    key_of(props, "StorageEncrypted"),
                    f"{kind} {rid} must set StorageEncrypted: true{shown}",
                    res,
                )
            )
    return out


def database_private(doc: Document) -> list[Finding]:
    """Every DB instance says PubliclyAccessible: false."""
    out = []
    for rid, res, props in _databases(doc):
        value = props.get("PubliclyAccessible")
        if value is None or any(v is None or _truthy(v) for v in _values(value)):
            out.append(
                doc.finding(
                    "cfn-db-public",
                    key_of(props, "PubliclyAccessible"),
                    f"database {rid} must set PubliclyAccessible: false (is {name_of(value)})",
                    res,
                )
            )
    return out


def database_backups(doc: Document) -> list[Finding]:
    """Every DB instance keeps backups: BackupRetentionPeriod set and at least 1."""
    out = []
    for rid, res, props in _databases(doc):
        if props.get("DBClusterIdentifier") is not None or props.get("SourceDBInstanceIdentifier") is not None:
            continue  # a cluster keeps the backups of its members; a read replica's source keeps them
        value = props.get("BackupRetentionPeriod")
        try:
            ok = value is not None and int(value) >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            out.append(
                doc.finding(
                    "cfn-db-backups",
                    key_of(props, "BackupRetentionPeriod"),
                    f"database {rid} must set BackupRetentionPeriod >= 1 (is {name_of(value)})",
                    res,
                )
            )
    return out


PUBLIC_ACCESS_BLOCK = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")


def bucket_encrypted(doc: Document) -> list[Finding]:
    """Every bucket has a default server-side encryption."""
    out = []
    for rid, res in doc.resources("AWS::S3::Bucket"):
        props = res.get("Properties") or {}
        rules = ((props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []
        algos = [
            ((r.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm"))
            for r in rules
            if isinstance(r, Mapping)
        ]
        if not any(algos):
            out.append(
                doc.finding(
                    "cfn-bucket-encrypted",
                    key_of(props, "BucketEncryption"),
                    f"bucket {rid} has no BucketEncryption with an SSEAlgorithm",
                    res,
                )
            )
    return out


def bucket_closed(doc: Document) -> list[Finding]:
    """Every bucket has a PublicAccessBlockConfiguration with its four settings true."""
    out = []
    for rid, res in doc.resources("AWS::S3::Bucket"):
        props = res.get("Properties") or {}
        block = props.get("PublicAccessBlockConfiguration")
        if not isinstance(block, Mapping):
            out.append(
                doc.finding(
                    "cfn-bucket-public",
                    key_of(props, "PublicAccessBlockConfiguration"),
                    f"bucket {rid} has no PublicAccessBlockConfiguration",
                    res,
                )
            )
            continue
        open_ = [k for k in PUBLIC_ACCESS_BLOCK if not _truthy(block.get(k))]
        if open_:
            where = key_of(block, open_[0]) if open_[0] in block else block
            out.append(
                doc.finding(
                    "cfn-bucket-public",
                    where,
                    f"bucket {rid}: PublicAccessBlockConfiguration must set {', '.join(open_)} true",
                    res,
                )
            )
    return out


def imdsv2(doc: Document) -> list[Finding]:
    """Every launch template (and launch configuration) requires IMDSv2: MetadataOptions.HttpTokens required."""
    out = []
    for rid, res in doc.resources("AWS::EC2::LaunchTemplate", "AWS::AutoScaling::LaunchConfiguration"):
        props = res.get("Properties") or {}
        data = props.get("LaunchTemplateData") if res.get("Type") == "AWS::EC2::LaunchTemplate" else props
        data = data if isinstance(data, Mapping) else {}
        options = data.get("MetadataOptions") if isinstance(data.get("MetadataOptions"), Mapping) else {}
        if options.get("HttpTokens") != "required" and options.get("HttpEndpoint") != "disabled":
            where = key_of(options, "HttpTokens") if "HttpTokens" in options else key_of(data, "MetadataOptions")
            out.append(
                doc.finding(
                    "cfn-imdsv2",
                    where,
                    f"{rid} allows IMDSv1 (MetadataOptions.HttpTokens is {name_of(options.get('HttpTokens'))}); "
                    "set HttpTokens: required",
                    res,
                )
            )
    return out


def secret_defaults(doc: Document) -> list[Finding]:
    """No NoEcho or password-like parameter has a Default; password-like parameters are NoEcho."""
    out = []
    for name, spec in (doc.raw.get("Parameters") or {}).items():
        if not isinstance(spec, Mapping):
            continue
        no_echo = _truthy(spec.get("NoEcho"))
        if (no_echo or secret_like(name)) and spec.get("Default") not in (None, ""):
            out.append(
                doc.finding(
                    "cfn-secret-default",
                    key_of(spec, "Default"),
                    f"parameter {name} is a secret and must have no Default (it would be in the "
                    "template, in git, for every environment)",
                    spec,
                )
            )
        elif secret_like(name) and not no_echo:
            out.append(
                doc.finding(
                    "cfn-secret-default",
                    key_of(spec, "NoEcho") if "NoEcho" in spec else name,
                    f"parameter {name} looks like a secret and must be NoEcho: true",
                    spec,
                )
            )
    return out


def secret_literals(doc: Document) -> list[Finding]:
    """No password-like property of a resource holds a literal string (use a Ref or a dynamic reference)."""
    out: list[Finding] = []

    def walk(node: Any, rid: str, trail: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                here = f"{trail}.{key}"
                lowered = str(key).lower()
                if (
                    isinstance(value, str)
                    and value
                    and secret_like(key)
                    and not lowered.endswith(_NOT_SECRET_SUFFIXES)
                    and not value.startswith(("{{resolve:", "arn:"))
                ):
                    out.append(
                        doc.finding(
                            "cfn-secret-literal",
                            key,
                            f"{rid}{here} is a literal secret; pass it as "
                            "a NoEcho parameter or a {{resolve:secretsmanager:...}} reference",
                            node,
                        )
                    )
                else:
                    walk(value, rid, here)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, rid, f"{trail}[{i}]")

    for rid, res in (doc.raw.get("Resources") or {}).items():
        if isinstance(res, Mapping):
            walk(res.get("Properties") or {}, rid, ".Properties")
    return out


RULES: dict[str, Callable[[Document], list[Finding]]] = {
    "cfn-world-open": world_open,
    "cfn-private-sources": private_sources,
    "cfn-port-range": port_ranges,
    "cfn-db-encrypted": database_encrypted,
    "cfn-db-public": database_private,
    "cfn-db-backups": database_backups,
    "cfn-bucket-encrypted": bucket_encrypted,
    "cfn-bucket-public": bucket_closed,
    "cfn-imdsv2": imdsv2,
    "cfn-secret-default": secret_defaults,
    "cfn-secret-literal": secret_literals,
}


# ---------------------------------------------------------------------------- parameters


def parameter_problems(template: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """What CloudFormation would refuse in ``values`` for the template's parameters (constraints, missing)."""
    problems = []
    for name, spec in (template.get("Parameters") or {}).items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name not in values:
            if "Default" not in spec:
                problems.append(f"{name}: no value and no Default")
            continue
        text = str(values[name])
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(str(pattern), text):
            problems.append(f"{name}: {text!r} does not match AllowedPattern {pattern}")
        if "MinLength" in spec and len(text) < int(spec["MinLength"]):
            problems.append(f"{name}: shorter than MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
            problems.append(f"{name}: longer than MaxLength {spec['MaxLength']}")
        if spec.get("AllowedValues") and text not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}: {text!r} is not one of AllowedValues")
    return problems


# ---------------------------------------------------------------------------- entry points


def check(doc: Document) -> list[Finding]:
    """Every rule of :data:`RULES` on a loaded document."""
    return [f for rule in RULES.values() for f in rule(doc)]


def run_cfn_lint(
    path: Path | str, regions: list[str] | None = None, *, template: Mapping[str, Any] | None = None
) -> list[Finding]:
    """cfn-lint (as a library) on ``path``; each match as a finding (rule ``cfn-lint``, ``line N``).

    ``template``: the template as already parsed from ``path`` by cfn-lint's decoder (:func:`load`'s ``raw``), linted
    as it is instead of parsing the file again; cfn-lint is configured as for the file (its config files, the
    template's own ``Metadata``), so the matches are the same."""
    from cfnlint.api import ManualArgs, lint_file

    config = ManualArgs(regions=regions) if regions else None
    if template is None:
        matches = lint_file(Path(path), config=config)
    else:
        from cfnlint.config import ConfigMixIn
        from cfnlint.runner import Runner

        runner = Runner(ConfigMixIn(["--template", str(path)], **(config or {})))
        matches = runner.validate_template(template)  # type: ignore[arg-type]
    return [Finding(str(path), f"line {m.linenumber}", "cfn-lint", f"{m.rule.id} {m.message}") for m in matches]


def check_file(
    path: Path | str, *, lint: bool = False, values: Mapping[str, Any] | None = None, policy: Policy | None = None
) -> list[Finding]:
    """Parse, render and check ``path``; a parse error is the one finding (rule ``cfn-parse``). ``lint``: cfn-lint
    too, on the template as parsed here (the file is parsed once)."""
    try:
        doc = load(path, values, policy)
    except TemplateError as exc:
        return [from_error(exc, "cfn-parse")]
    findings = check(doc)
    if lint:  # last: nothing reads the document after cfn-lint had it
        findings += run_cfn_lint(path, template=doc.raw)
    return findings
