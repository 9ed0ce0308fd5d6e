"""Every case of the broken-template corpus (``tests_unit/broken/manifest.yaml``) is caught by the rule meant
for it, with a message naming the case's file and the place of the mistake.

The case files are generated from the real templates (see the manifest's header), into ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from envfixtures import rules
from envfixtures.core import config
from envfixtures.rules import cloudformation, marathon, policy, rabbitmq

#: The reference platform's policy rules and their settings (its [tool.envfixtures]).
REFERENCE_POLICY = policy.from_platform(config.find(Path(__file__).resolve().parent.parent))

_spec = importlib.util.spec_from_file_location("broken_corpus", Path(__file__).with_name("broken") / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["broken_corpus"] = corpus  # dataclasses look their module up there
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]

CASES = corpus.cases()


def findings_for(case: "corpus.Case", path: Path) -> list[rules.Finding]:
    if case.template == "cloudformation":
        return cloudformation.check_file(path, lint=case.rule == "cfn-lint", policy=REFERENCE_POLICY)
    if case.template == "marathon":
        return marathon.check_dir(path.parent)
    return rabbitmq.check_file(path)


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CASES) >= 20
    assert {c.template for c in CASES} == {"cloudformation", "marathon", "rabbitmq"}
    assert len({c.file for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_case_is_caught_by_its_rule_at_its_place(case: "corpus.Case", tmp_path: Path) -> None:
    path = corpus.materialize(case, tmp_path)
    found = findings_for(case, path)
    by_rule = [f for f in found if f.rule == case.rule]
    assert by_rule, f"{case.file} ({case.mistake}) was not caught by {case.rule}; found:\n{rules.report(found)}"
    line = corpus.expected_line(case, path)
    if line is None:
        at_place = [f for f in by_rule if f.place == case.place]
        want = case.place
    else:
        at_place = [f for f in by_rule if re.match(rf"line {line}\b", f.place)]
        want = f"line {line}"
    assert at_place, f"{case.file}: {case.rule} fired, but not at {want}:\n{rules.report(by_rule)}"
    message = str(at_place[0])
    assert message.startswith(f"{path}:{at_place[0].place}: "), message
    assert "\n" not in message


def test_the_real_templates_trip_none_of_the_case_rules() -> None:
    """So each case's finding comes from its one mistake, not from the template it copies."""
    real = cloudformation.check_file(
        corpus.source("cloudformation"), policy=REFERENCE_POLICY
    )  # cfn-lint: in test_static_cloudformation
    real += marathon.check_dir(corpus.source("marathon").parent) + rabbitmq.check_file(corpus.source("rabbitmq"))
    assert real == [], rules.report(real)
