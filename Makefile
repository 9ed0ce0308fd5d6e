# The two commands of the README, and the benchmarks. Each installs what is missing first (scripts/bootstrap.sh):
# tox runs from the project's own .venv/, never from the system Python.
.PHONY: bootstrap verify unit test hosts-test bench soak lint clean

TOX = .venv/bin/python -m tox

bootstrap:
	./scripts/bootstrap.sh

## The gate (what Jenkins runs): build the environment of HEAD, verify it, tear it down.
verify: bootstrap
	$(TOX) -e build-and-verify -- $(ARGS)

## The library's own unit tests (no environment): Jenkins runs them after the gate, on every change.
unit: bootstrap
	$(TOX) -e unit -- $(ARGS)

## The project's own tests: lint, unit and static checks, integration, the plugin's tests, and the gate itself.
test: bootstrap
	$(TOX) -e lint,unit,integration,plugin,build-and-verify

## The boot scripts of templates/hosts/ run for real in a fresh Debian 12 root (as root: mount, chroot). Not part
## of `test` (README, "The two commands"). FRESH_ROOT_APT_CACHE=DIR keeps the root's downloaded packages.
hosts-test: bootstrap
	$(TOX) -e hosts -- $(ARGS)

bench: bootstrap
	$(TOX) -e bench -- $(ARGS)

## The gate N times and under a signal matrix; exits non-zero on any leak or flaky failure (bench/soak.py).
soak: bootstrap
	$(TOX) -e soak -- $(ARGS)

lint: bootstrap
	$(TOX) -e lint

clean:
	[ ! -x .tox/build-and-verify/bin/envfixtures ] || .tox/build-and-verify/bin/envfixtures reap || true
	rm -rf .tox reports .envfixtures/envs bench/results
