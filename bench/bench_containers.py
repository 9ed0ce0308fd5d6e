"""What running the reference platform's apps as containers adds to a gate run, step by step.

Each run does what a gate does once: starts a fresh registry on loopback (every environment has its own), builds
the platform's image from ``git archive`` of HEAD (``services/Containerfile``), pushes it (gzip, the base layer
included: the registry is new), removes the local tag and pulls it back (what the scheduler does before each
launch), starts one container of it (``python3 -c pass`` with HOST networking) and, as the baseline in the same
run, the same command as a host process; then removes what it made. The base image is made first if this machine
lacks it (once per machine, not counted). Medians of ``--runs`` (default 3); writes
``bench/results/containers.json``.

    python bench/bench_containers.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envfixtures.core.ports import free_port  # noqa: E402
from envfixtures.drivers.artifact import committed_tree  # noqa: E402
from envfixtures.drivers.containers import images, podman, registry  # noqa: E402
from envfixtures.drivers.marathon import containerizer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "containers.json"
STEPS = ("registry start", "image build", "push", "pull", "container start+exit", "process start+exit (baseline)")


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def one_run(sha: str, config: dict, work: Path) -> dict[str, float]:
    label = f"bench-{secrets.token_hex(4)}"
    port = free_port()
    address = f"127.0.0.1:{port}"
    user, password = "bench", secrets.token_urlsafe(16)
    out: dict[str, float] = {}
    t0 = time.monotonic()
    conf = registry.configure(work / "registry", port, user, password)
    server = subprocess.Popen(registry.argv(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        while True:
            try:
                if registry.answers(address, user, password):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        out["registry start"] = time.monotonic() - t0
        authfile = registry.write_auth_file(work / "auth.json", address, user, password)
        tree = committed_tree(ROOT, sha, "", work / "tree")
        (name, containerfile), *_ = config["containerfiles"].items()
        ref = f"{address}/{name}:{sha}"
        out["image build"] = timed(lambda: images.build(tree, containerfile, ref, env_name=label, sha=sha,
                                                        log=work / "build.log"))  # fmt: skip
        out["push"] = timed(lambda: images.push(ref, authfile, work))
        podman.run("rmi", ref)
        out["pull"] = timed(lambda: images.pull(ref, authfile, tls_verify=False))
        run = podman.command("run", "--rm", "--network", "host", "--pull", "never", *containerizer.ulimit_args(),
                             "--label", f"{podman.ENV_LABEL}={label}", ref, "python3", "-c", "pass")  # fmt: skip
        out["container start+exit"] = timed(lambda: subprocess.run(run, check=True, capture_output=True))  # noqa: S603
        out["process start+exit (baseline)"] = timed(
            lambda: subprocess.run(["python3", "-c", "pass"], check=True)  # noqa: S607
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        podman.remove_containers(label)
        podman.remove_images(label)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    problem = podman.missing() or (None if registry.executable() else "docker-registry is not installed")
    if problem:
        print(f"bench_containers: skipped: {problem}")
        return 0
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["envfixtures"]["images"]
    for base, command in config.get("bases", {}).items():
        with tempfile.TemporaryDirectory() as tmp:
            images.ensure_base(base, command, ROOT, log=Path(tmp) / "base.log")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-containers-") as tmp:
            runs.append(one_run(sha.strip(), config, Path(tmp)))
    medians = {step: statistics.median(r[step] for r in runs) for step in STEPS}
    added = sum(medians[s] for s in STEPS[:5]) - medians[STEPS[5]]
    print(f"containers: medians of {args.runs} runs (seconds)")
    print("| step | median s |\n|---|---|")
    for step in STEPS:
        print(f"| {step} | {medians[step]:.2f} |")
    ratio = medians["container start+exit"] / medians["process start+exit (baseline)"]
    print(f"| container start ÷ process start | {ratio:.1f}x |")
    print(f"| added per gate run (registry, build, push, pull, one start, less a process start) | {added:.2f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": runs, "medians": medians, "added": added}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
