"""The ``envfixtures`` command: manage environments outside pytest.

envfixtures up [COMPONENT ...]   build and keep an environment; print its name and facts (secrets masked)
envfixtures ls                   environments with state, owner, age, kept or not
envfixtures down NAME            tear an environment down
envfixtures reap                 tear down every environment whose run is gone and that was not kept
envfixtures reap --aws           ... and delete environments' stacks found by their tags in AWS (no local state)
envfixtures check                the static rules on every input of the platform (no environment is built)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from envfixtures import lifecycle
from envfixtures.core import config as platform_config
from envfixtures.core import naming, registry
from envfixtures.core.environment import KEPT, TORN_DOWN, Environment, list_environments
from envfixtures.core.errors import ConfigError, EnvfixturesError
from envfixtures.core.facts import Facts
from envfixtures.core.settings import layered, on_command_line_warning, parse_lines
from envfixtures.core.state import secret_settings
from envfixtures.lifecycle import git_head, ini_values

log = logging.getLogger("envfixtures.cli")

#: ``reap --aws`` leaves stacks younger than this alone: with no local state, age is the only sign that a stack's
#: run is over. A gate's run on ``aws`` is bounded by its create (``aws_stack_timeout``, 1 h), its tests and its
#: delete (1 h again): 6 hours is well past the longest.
AWS_REAP_OLDER_THAN_HOURS = 6.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="envfixtures", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("ENVFIXTURES_HOME", ".envfixtures")),
        help="directory of environment state (default: $ENVFIXTURES_HOME or ./.envfixtures)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build an environment and keep it")
    up.add_argument("components", nargs="*", help="components to build (default: the ini's env_components, else all)")
    up.add_argument("--backend", default=os.environ.get("ENVFIXTURES_BACKEND", "local"), choices=registry.BACKENDS)
    up.add_argument("--sha", default=os.environ.get("ENVFIXTURES_SHA"), help="git SHA (default: HEAD)")
    up.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a component setting")
    sub.add_parser("ls", help="list environments")
    down = sub.add_parser("down", help="tear an environment down")
    down.add_argument("name")
    reap = sub.add_parser("reap", help="tear down environments whose run is gone and that were not kept")
    reap.add_argument(
        "--aws",
        action="store_true",
        help="also delete the stacks that carry the environment tag in AWS, found by tag and age (no local state "
        "needed), like `taskcat test clean`",
    )
    reap.add_argument(
        "--region",
        action="append",
        default=[],
        help="with --aws: a region to search (repeatable; default the configured one: env_settings aws_region, "
        "else boto3's)",
    )
    reap.add_argument(
        "--older-than",
        type=float,
        default=AWS_REAP_OLDER_THAN_HOURS,
        metavar="HOURS",
        help=f"with --aws: only stacks created more than HOURS ago (default {AWS_REAP_OLDER_THAN_HOURS:g}: longer "
        "than a gate's run; 0 takes all)",
    )
    check = sub.add_parser("check", help="the static rules on the platform's templates and definitions; builds nothing")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting (e.g. rules_off=...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cfnlint").setLevel(logging.WARNING)  # its "Run scan of template" lines
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is met here, not at interpreter exit
        return code
    except EnvfixturesError as exc:
        print(f"envfixtures: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`envfixtures ls | head -n 2`): stop quietly, as a Unix filter does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def cmd_up(args: argparse.Namespace) -> int:
    root = Path.cwd()
    if args.sha:
        sha = args.sha.strip().lower()
        if not naming.SHA_RE.match(sha):
            raise ConfigError(f"--sha: not a git SHA (7 to 40 hex digits): {args.sha!r}")
    else:
        sha = git_head(root)
    # The same environment as `pytest` from this directory would build: its ini's components and settings,
    # then --set on top (as --env-set is on top of ini env_settings).
    ini_file, ini_components, ini_settings = ini_values(root)
    settings, given = layered(
        ini_settings if ini_file else [], f"{ini_file} env_settings", args.set, "--set", os.environ
    )
    warning = on_command_line_warning(secret_settings(given), "--set")
    if warning:
        print(f"envfixtures: warning: {warning}", file=sys.stderr)
    platform = platform_config.find(root)
    wanted = args.components or ini_components or list(platform.components) or list(registry.COMPONENTS)
    for component in wanted:
        if component not in registry.COMPONENTS:
            raise ConfigError(f"unknown component {component!r}; known: {', '.join(registry.COMPONENTS)}")
    env = lifecycle.new_environment(
        sha=sha,
        backend=args.backend,
        root=root,
        home=args.home.resolve(),
        branch=os.environ.get("BRANCH_NAME"),
        settings=settings,
        components=tuple(registry.COMPONENTS),  # whatever `wanted` needs; `check` narrows to it
        config=platform,
        check=wanted,
    )
    env.materialize()
    lifecycle.sigterm_as_interrupt()
    try:
        for component in env.required_closure(wanted):
            env.ensure(component)
    except BaseException:
        # Nothing of a failed `up` stays: what it started is torn down, and its secrets go from disk (but those of
        # what the teardown could not take down, for `envfixtures down` to retry with).
        _print_problems(lifecycle.teardown(env) + lifecycle.forget(env))
        raise
    env.update_meta(kept=True, status=KEPT)
    print(env.name)
    redactor = env.redactor()  # a fact that is not marked secret may still carry one (a URL with its password)
    for component, state in env.states().items():
        if state.get("facts"):
            facts = json.dumps(Facts.from_json(state["facts"]).masked(), sort_keys=True)
            print(f"{component}: {redactor.redact(facts)}")
    print(f"reuse: pytest --env-reuse {env.name}    destroy: envfixtures down {env.name}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    rows = [("NAME", "STATUS", "BACKEND", "OWNER", "AGE", "KEPT", "COMPONENTS")]
    for env in list_environments(args.home):
        meta = env.meta
        owner = meta.get("owner", {})
        alive = "running" if env.owner_alive() else "gone"
        built = ",".join(n for n, s in env.states().items() if s.get("status") == "built") or "-"
        rows.append(
            (
                env.name,
                meta.get("status", "?"),
                meta.get("backend", "?"),
                f"{owner.get('pid')}({alive})",
                _age(time.time() - meta.get("created", time.time())),
                "yes" if meta.get("kept") else "no",
                built,
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _importable(env: Environment) -> Environment:
    """A component of the platform's own may be a module of its checkout: put the checkout on ``sys.path``."""
    if str(env.root) not in sys.path:
        sys.path.append(str(env.root))
    return env


def cmd_down(args: argparse.Namespace) -> int:
    env = _importable(Environment.open(args.home, args.name))
    problems = lifecycle.teardown(env)
    _print_problems(problems + lifecycle.forget(env))
    if problems:
        print(f"{env.name}: teardown failed ({len(problems)} problem(s)); run `envfixtures down {env.name}` again")
        return 1
    print(f"{env.name}: torn down")
    return 0


def cmd_reap(args: argparse.Namespace) -> int:
    failed = 0
    reaped = 0
    for env in list_environments(args.home):
        meta = env.meta
        if meta.get("status") == TORN_DOWN or meta.get("kept") or env.owner_alive():
            continue
        try:
            problems = lifecycle.teardown(_importable(env))
            problems += lifecycle.forget(env)
        except EnvfixturesError as exc:
            problems = [str(exc)]
        reaped += 1
        failed += bool(problems)
        print(f"{env.name}: reaped" + (f" with problems: {'; '.join(problems)}" if problems else ""))
    print(f"reaped {reaped} environment(s)")
    platform = platform_config.find(Path.cwd())
    pruned = lifecycle.prune(args.home, platform)
    if pruned:
        print(f"pruned the state of {len(pruned)} environment(s) torn down long ago: {', '.join(pruned)}")
    if args.aws:
        failed += reap_aws(args, platform)
    return 1 if failed else 0


def reap_aws(args: argparse.Namespace, platform: platform_config.PlatformConfig) -> int:
    """Delete the stacks that carry the environment tag and are older than ``--older-than`` hours, in every region
    of ``--region``, through the teardown's own delete; then name what is left tagged of stacks already gone.
    Needs no local state (a new Jenkins workspace); an environment this state directory knows as kept, or whose
    run is alive, is left alone. Returns how many deletes failed (or environments left resources)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from envfixtures.components import aws

    key = aws.platform_env_tag_key(platform)
    regions = list(dict.fromkeys(args.region)) or [_configured_region()]
    spared = {env.name: ("kept" if env.meta.get("kept") else "its run is alive") for env in list_environments(args.home)
              if env.meta.get("status") != TORN_DOWN and (env.meta.get("kept") or env.owner_alive())}  # fmt: skip
    failed = deleted = 0
    now = time.time()
    for region in regions:
        try:
            stacks = aws.environment_stacks(region, key)
            remnants = aws.remnants(region, key)
        except (ClientError, BotoCoreError) as exc:  # no access to the region, no credentials, no such region
            failed += 1
            print(f"{region}: cannot list its stacks and tagged resources: {exc}; check the credentials and region")
            continue
        old = [s for s in stacks if s["created"] is None or now - s["created"].timestamp() > args.older_than * 3600]
        print(f"{region}: {len(stacks)} stack(s) tagged {key}, {len(old)} older than {args.older_than:g} h")
        for stack in old:
            age = _age(now - stack["created"].timestamp()) if stack["created"] else "?"
            where = f"{region}: stack {stack['name']} ({key}={stack['value']}, {stack['status']}, {age} old)"
            if stack["value"] in spared:
                print(f"{where}: left alone ({spared[stack['value']]} in {args.home})")
                continue
            try:
                aws.delete_environment_stack(
                    name=stack["value"], stack=stack["id"], region=region, tag_key=key, timeout=3600.0,
                    max_delay=15.0, progress=print, retry="envfixtures reap --aws",
                )  # fmt: skip
            except EnvfixturesError as exc:
                failed += 1
                print(f"{where}: not deleted: {exc}")
                continue
            deleted += 1
            print(f"{where}: deleted")
        with_stack = {s["value"] for s in stacks}
        for value, arns in remnants.items():
            if value in with_stack or value in spared:
                continue
            failed += 1
            shown = ", ".join(arns[:10]) + (f" and {len(arns) - 10} more" if len(arns) > 10 else "")
            print(
                f"{region}: {len(arns)} resource(s) tagged {key}={value} remain with no stack: {shown}; delete them "
                "(in the console, or with each service's CLI)"
            )
    print(f"deleted {deleted} stack(s) found by tag")
    return failed


def _configured_region() -> str:
    """The region of ``reap --aws`` without ``--region``: the ini's env_settings ``aws_region``, else boto3's."""
    import boto3

    ini_file, _, ini_settings = ini_values(Path.cwd())
    region = (parse_lines(ini_settings, f"{ini_file} env_settings") if ini_file else {}).get("aws_region")
    region = region or boto3.Session().region_name
    if not region:
        raise ConfigError("reap --aws: no region: pass --region, or set aws_region in env_settings or AWS_REGION")
    return region


def cmd_check(args: argparse.Namespace) -> int:
    """One line per finding and per file, as the static items of a pytest run report them; 1 if any refuses."""
    from envfixtures.rules import hint

    root = Path.cwd()
    ini_file, _, ini_settings = ini_values(root)
    settings, _ = layered(ini_settings if ini_file else [], f"{ini_file} env_settings", args.set, "--set", os.environ)
    env = lifecycle.check_environment(
        root=root, home=args.home.resolve(), settings=settings, components=None, config=platform_config.find(root)
    )
    refused = 0
    for path, findings in lifecycle.static_findings(env).items():
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        print(f"{shown}: " + (f"{len(findings)} finding(s)" if findings else "ok"))
        for finding in findings:
            print(f"  {finding}{hint(finding.rule)}")
            refused += finding.refuses
    return 1 if refused else 0


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


COMMANDS = {"up": cmd_up, "ls": cmd_ls, "down": cmd_down, "reap": cmd_reap, "check": cmd_check}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


if __name__ == "__main__":
    sys.exit(main())
