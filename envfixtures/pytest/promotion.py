"""The promotion record: whether a run may promote its SHA, and what ``reports/promotion.json`` says if so.

A promotion record means exactly one thing: this SHA, as committed, built into this environment by this run and
fully verified. So a run is promotable only when the whole selection ran and passed on an environment it built:
no ``-k``, ``-m``, ``--lf`` or ``--deselect``, nothing deselected by any plugin, no failure, error or unexpected
pass, at least one test, the checkout equal to the SHA in everything the run reads, and a clean teardown. Skips
are allowed and counted.

*The checkout equal to the SHA* (:func:`envfixtures.lifecycle.differences_from_sha`, computed from git at the
start of the run and again at its end, whether the SHA came from ``git rev-parse HEAD`` or from ``--env-sha``):
HEAD is the SHA; no tracked file is modified or staged; no file under the paths the run reads (each component's
input files and their directories, each configured path, the platform's configuration file) is untracked, and
every input file is committed (an ignored template is still deployed). Templates, definitions and the stack's
template are read from the working tree, while migrations and the artifact are read from the SHA itself
(``git show``, ``git archive``): under this rule the two are the same bytes, so reading the inputs from the
working tree is equivalent to reading them from the SHA. Without it, an ``--env-sha`` other than HEAD, an edited
template or an untracked ``templates/marathon/extra.json`` would be deployed and vouched for under a SHA that
does not hold it. Each difference is a reason in the verdict.

*Built by this run*: a ``--env-reuse`` run never promotes, even of a kept environment built from the current
HEAD on a clean tree. The environment was built by an earlier run (whose checkout this run cannot check again),
has been through that run's tests and any since (fault tests stop nodes, tests write data), may have been
completed by this run on demand, and is not torn down at the end, so its teardown is not verified. If the kept
environment's SHA is not HEAD, the tests that ran are not even those of the SHA the record would name; the verdict
says that first. Reuse is the debugging loop (``--env-keep``, then ``--env-reuse NAME --lf``); promotion takes a
fresh run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envfixtures.core.environment import Environment
    from envfixtures.pytest.reports import Results


def selection_narrowed(options: Any) -> list[str]:
    """The command-line options of this run that select part of the suite, as the user wrote them."""
    reasons = []
    if getattr(options, "keyword", ""):
        reasons.append(f"-k {options.keyword!r}")
    if getattr(options, "markexpr", ""):
        reasons.append(f"-m {options.markexpr!r}")
    if getattr(options, "lf", False):
        reasons.append("--lf")
    if getattr(options, "deselect", None):
        reasons.append("--deselect " + " ".join(options.deselect))
    return reasons


def refusals(
    results: "Results",
    env: "Environment",
    *,
    exitstatus: int,
    provenance: Sequence[str],
    teardown_problems: list[str],
) -> list[str]:
    """Why this run may not promote its SHA; empty when it may. ``provenance``: why the SHA does not describe what
    the run deployed and verified (:meth:`envfixtures.pytest.run.Run.provenance`)."""
    why = [f"the selection was narrowed ({r})" for r in results.narrowed]
    if results.deselected:
        why.append(f"{results.deselected} test(s) were deselected")
    bad = {k: results.counts.get(k, 0) for k in ("failed", "error", "xpassed")}
    if any(bad.values()):
        why.append("not every test passed (" + ", ".join(f"{v} {k}" for k, v in bad.items() if v) + ")")
    if results.interrupted:
        why.append("the run was interrupted")
    if not results.ran:
        why.append("no test ran")
    if exitstatus != 0 and not why:
        why.append(f"pytest exited with status {exitstatus}")
    if not env.exists:
        why.append("no environment was built")
    why += provenance
    if teardown_problems:
        why.append("the environment's teardown had problems")
    return why


def reuse_refusals(name: str, sha: str, head: str | None, built: str | None) -> list[str]:
    """Why a run on the kept environment ``name`` (of ``sha``, the commit ``built`` in this checkout) may not promote,
    the checkout being at ``head`` (None: no git checkout with a commit); see the module's docstring."""
    why = []
    if head is None:
        why.append(f"the checkout is not a git checkout with a commit: nothing ties the tests that ran to {sha}")
    elif built != head:
        why.append(
            f"environment {name} was built from {sha}, the checkout is at {head[:12]}: the tests that ran are not "
            f"those of {sha}"
        )
    why.append(
        f"--env-reuse: environment {name} was built by an earlier run, not by this one, and has been used since: "
        "a promotion record needs an environment built and verified by one run"
    )
    return why


def record(results: "Results", env: "Environment") -> dict[str, Any]:
    """The promotion record of a passed run (see the module's docstring for when there is one)."""
    states = env.states()
    return {
        "sha": env.sha,
        "environment": env.name,
        "backend": env.backend,
        "started": results.started_iso,
        "ended": results.ended_iso,
        "counts": results.counts_for_people(),
        "versions": versions(states),
        "artifacts": artifacts(states),
        "inputs": inputs(env),
    }


def inputs(env: "Environment") -> dict[str, str]:
    """The sha256 of each input file of the environment's components (templates, definitions), by path relative
    to the checkout: what was deployed besides the artifact."""
    found = {}
    for path in env.inputs():
        shown = path.relative_to(env.root).as_posix() if path.is_relative_to(env.root) else str(path)
        found[shown] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(found.items()))


def versions(states: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The versions of what ran, from the ``versions`` fact of each built component (e.g. ``{"rabbitmq": "3.10.8"}``).

    Two components naming the same thing with different versions keep both, as ``component.name``.
    """
    found: dict[str, str] = {}
    owner: dict[str, str] = {}
    for component, state in sorted(states.items()):
        values = (state.get("facts") or {}).get("values") or {}
        for name, version in sorted((values.get("versions") or {}).items()):
            version = str(version)
            if name in found and found[name] != version:
                found[f"{owner[name]}.{name}"] = found.pop(name)
                found[f"{component}.{name}"] = version
            else:
                found[name], owner[name] = version, component
    return found


def artifacts(states: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The ``artifact_sha256`` fact of each component that has one (the apps' artifact), or of each of its
    artifacts (``images``: ``images:<name>`` -> the manifest's digest)."""
    found = {}
    for component, state in sorted(states.items()):
        digest = ((state.get("facts") or {}).get("values") or {}).get("artifact_sha256")
        if isinstance(digest, dict):
            found.update({f"{component}:{name}": str(value) for name, value in sorted(digest.items())})
        elif digest:
            found[component] = str(digest)
    return found
