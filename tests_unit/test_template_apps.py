"""The template's apps block (issue 18) as a moto server creates it: the ECR repository of each image the platform
builds, named and tagged for the environment, its registry as the output the ``images`` component reads; the API's
alias record only with a domain, and the API's name following it; and the certificate check that the domain needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_cloudformation import PASSWORD, REFERENCE, SHA, TEMPLATE, Moto, certificate, fresh

from envfixtures.components import aws as aws_component
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ConfigError
from envfixtures.drivers.aws import cloudformation

__all__ = ["fresh"]


#: what the aws component gives a stand-in (no network load balancer, no Debian image in moto)
STAND_IN = {
    "HostScriptsUrl": "s3://envfixtures-staging-123456789012-us-east-1/ef-unit/hosts/",
    "InternalLoadBalancer": "false",
    "ImageId": aws_component.STAND_IN_IMAGE,
}


def create(moto: Moto, name: str, **parameters: str) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's outputs and its resources (logical id -> type)."""
    cf = moto.client("cloudformation")
    stack_id = cloudformation.create_stack(
        cf, name=name, template_path=TEMPLATE,
        parameters={"EnvName": name, "GitSha": SHA, "CertificateArn": certificate(moto), "DbMasterPassword": PASSWORD,
                    **STAND_IN, **parameters},
        tags={"EnvName": name, "GitSha": SHA}, secrets=[PASSWORD], timeout=30,
    )  # fmt: skip
    resources = cf.describe_stack_resources(StackName=stack_id)["StackResources"]
    # moto lists a resource whose condition is false as an entry with neither logical id nor type: left out.
    kinds = {r["LogicalResourceId"]: r["ResourceType"] for r in resources if "LogicalResourceId" in r}
    return cloudformation.outputs(cf, stack_id), kinds


@pytest.mark.integration
def test_the_stack_has_an_ecr_repository_per_image_named_for_the_environment(fresh: Moto) -> None:
    outputs, resources = create(fresh, "ef-unit-ecr")
    images = REFERENCE.section("images")["containerfiles"]
    repositories = fresh.client("ecr").describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repositories) == sorted(f"ef-unit-ecr/{name}" for name in images)
    assert outputs["ImageRegistry"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/ef-unit-ecr"
    [repository] = repositories
    assert outputs["ServicesRepositoryUri"] == repository["repositoryUri"]
    assert repository["repositoryUri"].startswith(outputs["ImageRegistry"] + "/")
    tags = fresh.client("ecr").list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert {(t["Key"], t["Value"]) for t in tags} >= {("EnvName", "ef-unit-ecr"), ("GitSha", SHA)}
    # Without a domain: no alias record, and the API is named by the load balancer.
    assert "ApiAliasRecord" not in resources
    assert outputs["ApiHost"] == outputs["LoadBalancerDns"]
    assert outputs["ApiUrl"] == f"https://{outputs['LoadBalancerDns']}"


@pytest.mark.integration
def test_with_a_domain_the_stack_creates_its_alias_record_and_the_api_takes_its_name(fresh: Moto) -> None:
    zone = fresh.client("route53").create_hosted_zone(Name="example.com", CallerReference="unit")["HostedZone"]["Id"]
    outputs, resources = create(
        fresh, "ef-unit-dns", DomainName="api.example.com", HostedZoneId=zone.rsplit("/", 1)[-1]
    )
    assert resources["ApiAliasRecord"] == "AWS::Route53::RecordSet"
    assert outputs["ApiHost"] == "api.example.com" and outputs["ApiUrl"] == "https://api.example.com"


def test_the_template_reads_what_the_platform_maps_to_it() -> None:
    template = cloudformation.load_template(TEMPLATE)
    section = REFERENCE.section("aws")
    assert section["parameters"]["DomainName"] == "domain_name"
    assert section["parameters"]["HostedZoneId"] == "hosted_zone_id"
    for meaning in ("image_registry", "api_host", "api_target_group"):
        assert section["outputs"][meaning] in template["Outputs"], meaning
    agents = template["Resources"]["MesosAgentGroup"]["Properties"]
    assert "TargetGroupARNs" not in agents, "the target group holds tasks (ip:port), not the agents on one port"


@pytest.mark.parametrize(
    ("names", "domain", "covers"),
    [
        (["api.example.com"], "api.example.com", True),
        (["*.example.com"], "api.example.com", True),
        (["*.example.com"], "a.api.example.com", False),
        (["example.com", "www.example.com"], "api.example.com", False),
        (["API.Example.com."], "api.example.com", True),
    ],
)
def test_a_certificate_covers_its_names_and_one_wildcard_label(names: list[str], domain: str, covers: bool) -> None:
    assert aws_component.certificate_covers(names, domain) is covers


def domain_env(tmp_path: Path, **settings: str) -> Environment:
    return Environment(
        name="ef-0123456-dom", sha=SHA, backend="aws", root=REFERENCE_ROOT, home=tmp_path / "home",
        settings={"quiet": "true", **settings}, components=["aws"], config=REFERENCE,
    )  # fmt: skip


REFERENCE_ROOT = TEMPLATE.parents[2]


def test_a_domain_without_its_hosted_zone_is_refused_at_configure_time(tmp_path: Path) -> None:
    env = domain_env(tmp_path, aws_domain_name="api.example.com")
    cls: Any = env.component_class("aws")
    with pytest.raises(ConfigError, match="set both aws_domain_name .* and aws_hosted_zone_id"):
        aws_component._domain(env.context("aws", cls))
    both = domain_env(tmp_path, aws_domain_name="API.example.com.", aws_hosted_zone_id="Z0123456789ABC")
    assert aws_component._domain(both.context("aws", cls)) == "api.example.com"
