"""What a component sees of its environment: a narrow :class:`BuildContext`, never the environment itself.

A component's ``check``, ``build``, ``teardown`` and ``diagnose`` receive one. It is bound to the component, so
``spawn``, ``workdir``, ``log_path``, ``record`` and ``stop_processes`` need no component name, and ``facts``
answers only for what the component ``requires``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envfixtures.core.errors import BuildError
from envfixtures.core.facts import Facts
from envfixtures.core.processes import Process

if TYPE_CHECKING:
    from envfixtures.core.environment import Environment


class BuildContext:
    """The component ``component`` of one environment, with its typed settings."""

    def __init__(
        self, env: "Environment", component: str, requires: Sequence[str], settings: Any, config: Any = None
    ) -> None:
        self._env = env
        self.component = component
        self._requires = tuple(requires)
        #: the component's own settings, per run (an instance of its ``Settings`` dataclass)
        self.settings = settings
        #: the component's section of the platform's configuration (an instance of its ``Config`` dataclass)
        self.config = config
        #: the platform's whole configuration (``[tool.envfixtures]``: the policy rules, where messages point)
        self.platform = env.config
        #: the environment's own settings (:class:`~envfixtures.core.settings.EnvironmentSettings`)
        self.environment_settings = env.options

    # ------------------------------------------------------------------ what the environment is
    @property
    def name(self) -> str:
        """The environment's name (a valid stack name, vhost, Marathon group id and directory name)."""
        return self._env.name

    @property
    def sha(self) -> str:
        return self._env.sha

    @property
    def backend(self) -> str:
        return self._env.backend

    @property
    def root(self) -> Path:
        """The checkout the environment is built from (templates, migrations, the platform's code)."""
        return self._env.root

    def path(self, relative: str) -> Path:
        """A path of the component's configuration (relative to the checkout root) as an absolute path."""
        return self._env.root / relative

    @property
    def state_dir(self) -> Path:
        """The environment's state directory (a server that must reach its files may need it)."""
        return self._env.dir

    # ------------------------------------------------------------------ what the component may do
    def facts(self, component: str) -> Facts:
        """Facts of a component this one ``requires`` (built before this one's build starts)."""
        if component not in self._requires and component != self.component:
            raise BuildError(f"{self.component} reads the facts of {component!r}: declare it in `requires`")
        return self._env.facts(component)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> Process:
        """Start a process of this component in its own session, journaled before it starts; its output goes to
        :meth:`log_path` ``(name)``. Stopped by the environment's teardown whatever the component does.

        The :class:`~envfixtures.core.processes.Process` returned waits for readiness (failing at once if the
        process exits) and stops its group. This is a :class:`~envfixtures.core.processes.Spawner`."""
        return self._env.spawn(self.component, name, argv, env=env, cwd=cwd, user=user)

    def processes(self) -> list[Process]:
        """This component's journaled processes still recorded as running (whichever process started them),
        to stop with :meth:`Process.stop <envfixtures.core.processes.Process.stop>` (which checks their identity)."""
        return self._env.journaled_processes(self.component)

    def stop_processes(self, *, timeout: float = 10.0) -> None:
        self._env.stop_processes(self.component, timeout=timeout)

    def workdir(self) -> Path:
        """The component's own directory in the state directory (0700), removed by a green teardown."""
        return self._env.workdir(self.component)

    def scratch_dir(self) -> Path:
        """A private directory outside the state directory (for a server running as another user)."""
        return self._env.scratch_dir(self.component)

    def log_path(self, name: str) -> Path:
        return self._env.log_path(self.component, name)

    def records(self, kind: str) -> list[dict[str, Any]]:
        """What this component journaled of ``kind`` with :meth:`record` (for a teardown after a build that died
        before its facts were written)."""
        return [
            r for r in self._env.journal.records() if r.get("kind") == kind and r.get("component") == self.component
        ]

    def record(self, kind: str, **data: Any) -> None:
        """Journal a resource that is not a process (a stack, a vhost, an object) before creating it."""
        self._env.record(self.component, kind, **data)

    def progress(self, message: str) -> None:
        """One progress line on the terminal and in the environment's progress log."""
        self._env.progress(message)

    def new_secret(self, label: str, nbytes: int = 24) -> str:
        """A generated password, redacted from every output from now on."""
        return self._env.new_secret(label, nbytes, component=self.component)

    def add_secret(self, label: str, value: str) -> None:
        """Redact ``value`` (a secret the component got elsewhere) from every output from now on."""
        self._env.add_secret(label, value, component=self.component)
