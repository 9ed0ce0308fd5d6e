"""The pytest plugin (entry point ``pytest11``): options, ini keys, hooks and fixtures — wiring only.

The logic lives in :mod:`envfixtures.pytest.config` (settings), :mod:`envfixtures.pytest.run` (the run's hold on its
environment), :mod:`envfixtures.core.environment` (building and teardown), :mod:`envfixtures.pytest.reports` (what a
run reports, and where), :mod:`envfixtures.pytest.evidence` and :mod:`envfixtures.pytest.promotion`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from envfixtures import lifecycle
from envfixtures.core.environment import TEARDOWN_FAILED, TORN_DOWN, Environment
from envfixtures.core.errors import ConfigError, EnvfixturesError
from envfixtures.core.facts import Facts
from envfixtures.core.redaction import redacting_output
from envfixtures.pytest import config as settings_mod
from envfixtures.pytest import eager, promotion, reports, static
from envfixtures.pytest.run import WORKER_KEY, Run, is_worker

log = logging.getLogger(__name__)

RUN_KEY = pytest.StashKey[Run]()
EAGER_KEY = pytest.StashKey[eager.EagerBuilds]()
RESULTS_KEY = pytest.StashKey[reports.Results]()
OUTPUT_KEY = pytest.StashKey[contextlib.ExitStack]()
DESELECTED_KEY = "envfixtures_deselected"  # xdist workeroutput: how many items a worker deselected


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from envfixtures.pytest import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings_mod.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.option.help:
        return
    settings = settings_mod.resolve(config)
    plugin = _RunPlugin(config)
    config.pluginmanager.register(plugin, "envfixtures-run")
    config.pluginmanager.register(_component_fixtures(settings.components)(), "envfixtures-components")
    if static.only(config):  # the static items alone: a stand-in environment that is never built, no Run
        config.stash[static.ENV_KEY] = static.check_environment(settings)
        return
    if config.option.collectonly or getattr(config.option, "showfixtures", False):
        return  # nothing will run: name no environment
    try:
        if is_worker(config):
            run = Run.for_worker(config.workerinput, settings)  # type: ignore[attr-defined]
        else:
            run = Run.for_controller(settings)
            run.install_signal_handlers()
    except (ConfigError, EnvfixturesError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[RUN_KEY] = run
    config.stash[static.ENV_KEY] = run.env
    plugin.run = run


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: hand the environment's name to each worker."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is not None:
        node.workerinput[WORKER_KEY] = run.env.description


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    """``--env-static-only``: no test module is collected, nor imported."""
    return True if static.only(config) else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The static stage first: an item per input file of the environment's components (see :mod:`.static`)."""
    env = config.stash.get(static.ENV_KEY, None)
    if env is not None and (static.only(config) or static.wanted(config)):
        items[:0] = static.items(session, env)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selection is final (deselection is done): what it needs starts building (see :mod:`.eager`)."""
    run = session.config.stash.get(RUN_KEY, None)
    builds = eager.start(session, run) if run is not None else None
    if builds is not None:
        session.config.stash[EAGER_KEY] = builds


def pytest_sessionstart(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None:
        _redact_live_output(session.config, run)
    if run is not None and not is_worker(session.config):
        narrowed = promotion.selection_narrowed(session.config.option)
        session.config.stash[RESULTS_KEY] = reports.Results(narrowed=narrowed)
        reports.forget_promotion(session.config)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        if static.only(session.config) and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a platform whose components deploy no file: nothing to check
        return
    # Before the teardown (a worker: before it exits, as another may wait for a build of its own eager ones).
    eager.finish(session.config.stash.get(EAGER_KEY, None), interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
    if is_worker(session.config):
        return
    message = run.finish()
    if message:
        session.config.get_terminal_writer().line("\n" + message)
    if run.teardown_problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    results = session.config.stash.get(RESULTS_KEY, None)
    if results is not None:  # after the teardown: the reports show its timeline and its problems
        session.config.get_terminal_writer().line(reports.write(session.config, run, results, session.exitstatus))
    _forget(run)  # every report is written and redacted: the secrets may go


def pytest_unconfigure(config: pytest.Config) -> None:
    """The safety net: a run that never reached sessionfinish still tears down what it owns, and forgets its secrets."""
    run = config.stash.get(RUN_KEY, None)
    if run is not None and not is_worker(config):
        run.finish()
        _forget(run)
    output = config.stash.get(OUTPUT_KEY, None)
    if output is not None:
        output.close()
    eager.release(config.stash.get(EAGER_KEY, None))


def _forget(run: Run) -> None:
    """The secrets of an environment this run owned and tore down go from disk, but those of what its teardown left
    standing (``teardown_failed``): ``envfixtures down`` retries with them, and forgets them once it succeeds."""
    if run.owner and run.env.exists and run.env.meta.get("status") in (TORN_DOWN, TEARDOWN_FAILED):
        for problem in lifecycle.forget(run.env):
            log.warning("%s", problem)


def _redact_live_output(config: pytest.Config, run: Run) -> None:
    """What reaches the terminal or a file past the test reports: live logs (``log_cli``, ``--log-file``) and, with
    ``-s`` (no capture), what the tests print through ``sys.stdout`` and ``sys.stderr``."""
    reports.redact_live_output(config, run.env.redactor)
    if config.option.capture == "no" and OUTPUT_KEY not in config.stash:
        stack = contextlib.ExitStack()
        stack.enter_context(redacting_output(run.env.redactor))
        config.stash[OUTPUT_KEY] = stack


@pytest.fixture(scope="session")
def envfixtures_env(request: pytest.FixtureRequest) -> Environment:
    """The Environment of this run: name, SHA, backend, state directory; ``ensure(name)`` builds a component."""
    run = request.config.stash.get(RUN_KEY, None)
    if run is None:
        raise pytest.UsageError("envfixtures: no environment in this run (--collect-only or --fixtures)")
    return run.env


def _component_fixture(name: str) -> Callable[..., Facts]:
    def fixture(self: object, envfixtures_env: Environment, pytestconfig: pytest.Config) -> Facts:
        # Builds take a while: let their progress lines reach the terminal instead of the test's capture.
        # What a build prints there is redacted (a component's own print of a password it was given).
        capman = pytestconfig.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled(), redacting_output(envfixtures_env.redactor):
            return envfixtures_env.ensure(name)

    fixture.__name__ = name
    fixture.__doc__ = (
        f"Facts of the {name!r} component (endpoints, ids, credentials), built once per environment across xdist "
        "workers, its requirements first: from collection on when a selected test needs it (--env-eager), else on "
        "first use."
    )
    return pytest.fixture(scope="session", name=name)(fixture)


class _RunPlugin:
    """Hooks bound to this run: evidence and redaction of every test report, and the run's results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.run: Run | None = None

    @property
    def results(self) -> reports.Results | None:
        return self.config.stash.get(RESULTS_KEY, None)  # the controller's (or the single process's) only

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """In the process that ran the test: a failing test's evidence, while the environment is up."""
        report = yield
        if self.run is not None:
            reports.attach_evidence(item, report, self.run)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Redact every secret of the environment from what the terminal and the reports will show; count it."""
        if self.run is not None:
            reports.redact_report(report, self.run.env.redactor())
        if self.results is not None:
            status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
            self.results.add(report, status[0] if status else "")

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self.run is not None and report.failed:
            reports.redact_report(report, self.run.env.redactor())
        if self.results is not None and report.failed:
            self.results.add_collect_error(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        """Before the terminal's warnings summary shows it."""
        if self.run is not None:
            reports.redact_warning(warning_message, self.run.env.redactor())

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if self.results is not None:
            self.results.deselected += len(items)
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[DESELECTED_KEY] = workeroutput.get(DESELECTED_KEY, 0) + len(items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: every worker collects (and deselects) the whole suite; the controller takes the largest count."""
        if self.results is not None:
            done = getattr(node, "workeroutput", {}).get(DESELECTED_KEY, 0)
            self.results.deselected = max(self.results.deselected, done)

    def pytest_keyboard_interrupt(self) -> None:
        if self.results is not None:
            self.results.interrupted = True


def _component_fixtures(names: tuple[str, ...]) -> type:
    """A plugin class holding a session fixture per component, named like it (pytest reads fixtures off the class)."""
    return type("EnvfixturesComponents", (), {f"_envfixtures_{name}": _component_fixture(name) for name in names})
