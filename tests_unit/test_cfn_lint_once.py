"""The static stage parses a CloudFormation template once: cfn-lint lints the template as the rules parsed it, and
finds what it finds when it reads the file itself (its config, the template's own Metadata directives)."""

from __future__ import annotations

from pathlib import Path

import cfnlint.decode
import cfnlint.runner.template.runner as cfn_runner
import pytest

from envfixtures.rules import cloudformation as cfn_rules

ROOT = Path(__file__).resolve().parent.parent

#: Small templates with cfn-lint findings of several kinds: a misspelt property (E3002), an unknown resource type
#: (E3006), an unused parameter (a warning, W2001), a rule turned off for one resource by its Metadata, and by the
#: template's Metadata for the whole template.
TEMPLATES = {
    "typo": """
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketNam: x
""",
    "unknown-type": """
Resources:
  Thing:
    Type: AWS::EC2::NoSuchThing
""",
    "unused-parameter": """
Parameters:
  Unused:
    Type: String
Resources:
  Bucket:
    Type: AWS::S3::Bucket
""",
    "ignored-for-a-resource": """
Parameters:
  Unused:
    Type: String
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Metadata:
      cfn-lint:
        config:
          ignore_checks: [E3002]
    Properties:
      BucketNam: x
  Other:
    Type: AWS::S3::Bucket
    Properties:
      BucketNam: y
""",
    "ignored-for-the-template": """
Metadata:
  cfn-lint:
    config:
      ignore_checks: [W2001]
Parameters:
  Unused:
    Type: String
Resources:
  Bucket:
    Type: AWS::S3::Bucket
""",
}


def _ids(findings: list) -> list[tuple[str, str]]:
    return [(f.place, f.message.split()[0]) for f in findings]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_linting_the_parsed_template_finds_what_linting_the_file_finds(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TEMPLATES[name].lstrip())
    from_file = cfn_rules.run_cfn_lint(path)
    parsed = cfn_rules.run_cfn_lint(path, template=cfn_rules.load(path).raw)
    assert parsed == from_file
    expected = {
        "typo": [("line 5", "E3002")],
        "unknown-type": [("line 3", "E3006")],
        "unused-parameter": [("line 2", "W2001")],
        "ignored-for-a-resource": [("line 2", "W2001"), ("line 16", "E3002")],
        "ignored-for-the-template": [],
    }[name]
    assert _ids(parsed) == expected


def test_the_real_template_is_linted_alike_both_ways() -> None:
    path = ROOT / "templates" / "cloudformation" / "environment.yaml"
    assert cfn_rules.run_cfn_lint(path, template=cfn_rules.load(path).raw) == cfn_rules.run_cfn_lint(path)


def test_check_file_with_cfn_lint_parses_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules' loader and cfn-lint's own file runner both decode with ``cfnlint.decode.decode``: one call."""
    path = tmp_path / "typo.yaml"
    path.write_text(TEMPLATES["typo"].lstrip())
    calls: list[str] = []
    real = cfnlint.decode.decode

    def counting(filename: str, *args: object, **kwargs: object) -> object:
        calls.append(filename)
        return real(filename, *args, **kwargs)

    monkeypatch.setattr(cfnlint.decode, "decode", counting)
    monkeypatch.setattr(cfn_runner, "decode", counting)
    findings = cfn_rules.check_file(path, lint=True)
    assert [f.rule for f in findings if f.rule == "cfn-lint"] == ["cfn-lint"], findings
    assert calls == [str(path)]
