# The two commands of the README, and the benchmarks. Each installs what is missing first.
.PHONY: bootstrap verify test bench lint clean

bootstrap:
	./scripts/bootstrap.sh

## The gate (what Jenkins runs): build the environment of HEAD, verify it, tear it down.
verify: bootstrap
	python3 -m tox -e build-and-verify -- $(ARGS)

## The project's own tests: lint, unit and static checks, integration, the plugin's tests, and the gate itself.
test: bootstrap
	python3 -m tox -e lint,unit,integration,plugin,build-and-verify

bench: bootstrap
	python3 -m tox -e bench

lint: bootstrap
	python3 -m tox -e lint

clean:
	python3 -m envfixtures.cli reap 2>/dev/null || true
	rm -rf .tox reports .envfixtures/envs bench/results
