"""The static stage inside the user's own test run: one pytest item per input file of the environment's components
(the stack template, each app template, the broker's definitions), so a platform needs no tox env of ours.

Each item runs the static rules of the component that deploys the file (cfn-lint included) with the platform's
policy; it fails with one line per finding — file, place, rule id, and how to fix or turn it off — and passes
with its warnings in the report. The items come first and are selected like any test (``-k definitions``); a run
of explicit test ids (``path::test``) gets none. The same findings refuse the build at configure time whatever
the selection, so these items report; they do not guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envfixtures import lifecycle
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ConfigError, EnvfixturesError

ITEM_NAME = "static_rules"
OPTION = "env_static_only"
#: the environment whose inputs the items check: the run's, or the stand-in of a static-only run
ENV_KEY = pytest.StashKey[Environment]()


class InputFile(pytest.File):
    """An input file of a component, as a collector of its one item."""

    component: str = ""

    def collect(self) -> list[pytest.Item]:
        return [StaticCheck.from_parent(self, name=ITEM_NAME, component=self.component)]


class StaticCheck(pytest.Item):
    def __init__(self, *, component: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.component = component

    def runtest(self) -> None:
        findings = _findings(self.config, self.component, self.path)
        failing = [f for f in findings if f.refuses]
        warnings = [f for f in findings if not f.refuses]
        if warnings:
            self.add_report_section("call", "warnings", "\n".join(_line(f) for f in warnings))
        if failing:
            raise StaticFindings(failing)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, StaticFindings):
            return "\n".join(_line(f) for f in excinfo.value.findings)
        return super().repr_failure(excinfo)  # type: ignore[return-value]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.component}: {ITEM_NAME} of {self.path.name}"


class StaticFindings(Exception):
    def __init__(self, findings: list[Any]) -> None:
        super().__init__(f"{len(findings)} finding(s)")
        self.findings = findings


def items(session: pytest.Session, env: Environment) -> list[pytest.Item]:
    """An item per input file of the environment's components, in build order."""
    out: list[pytest.Item] = []
    for path, name in env.inputs().items():
        node = InputFile.from_parent(session, path=path)
        node.component = name
        out.extend(node.collect())
    return out


def wanted(config: pytest.Config) -> bool:
    """Not when the run names explicit test ids."""
    return not any("::" in str(arg) for arg in config.args)


def only(config: pytest.Config) -> bool:
    """``--env-static-only``: the static items and nothing else."""
    return bool(config.getoption(OPTION, False))


def check_environment(settings: Any) -> Environment:
    """The stand-in environment of a static-only run (:class:`envfixtures.pytest.config.Settings`): its components
    and settings as the run's would have, its settings and configuration checked; named, never built."""
    try:
        return lifecycle.check_environment(
            root=settings.root, home=settings.home, sha=settings.sha, backend=settings.backend,
            settings=settings.values, components=settings.components, config=settings.platform,
        )  # fmt: skip
    except (ConfigError, EnvfixturesError) as exc:
        raise pytest.UsageError(str(exc)) from None


_CACHE = pytest.StashKey[dict[str, list[Any]]]()


def _findings(config: pytest.Config, component: str, path: Path) -> list[Any]:
    """The findings of ``component``'s rules on ``path`` (each component's rules run once per process)."""
    cache = config.stash.setdefault(_CACHE, {})
    if component not in cache:
        env = config.stash[ENV_KEY]
        cls = env.component_class(component)
        cache[component] = cls.lint(env.context(component, cls), thorough=True)
    return [f for f in cache[component] if Path(f.file) == Path(path)]


def _line(finding: Any) -> str:
    from envfixtures.rules import hint

    return f"{finding}{hint(finding.rule)}"
