# The README's two commands: `make demo` and `make test`.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: bootstrap test test-unit demo sandbox-down

bootstrap:
	./scripts/bootstrap.sh

# The whole suite, from nothing: system packages, Docker engine, Python env from uv.lock, then pytest.
test: bootstrap
	uv run --frozen pytest

test-unit: bootstrap
	uv run --frozen pytest -m "not e2e"

# The main job on the local sandbox: bring up the local OVH world (3 VPS containers, OVH API + DNS,
# ACME, cloud API emulators, the sample application, a Prefect server), deploy the first good
# release to its test environment, and write the tracking document.
demo: bootstrap
	uv run --frozen technicia-deploy sandbox up
	uv run --frozen technicia-deploy deploy test --version v1.0.0 --operator demo
	uv run --frozen technicia-deploy report --output .sandbox/deployment-tracking.md
	@echo "Tracking document: .sandbox/deployment-tracking.md"
	@uv run --frozen technicia-deploy sandbox status | grep '^prefect:'

sandbox-down:
	uv run --frozen technicia-deploy sandbox down
