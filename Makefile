# The README's two commands: `make demo` and `make test`.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Expanded when a recipe runs, i.e. after bootstrap has installed uv if it was missing.
UV = $(shell scripts/uv-path)
export UV_SYSTEM_CERTS := 1

.PHONY: bootstrap test test-unit demo sandbox-down

bootstrap:
	./scripts/bootstrap.sh

# The whole suite, from nothing: system packages, Docker engine, Python env from uv.lock, then pytest.
test: bootstrap
	$(UV) run --frozen pytest

test-unit: bootstrap
	$(UV) run --frozen pytest -m "not e2e"

# The main job on the local sandbox: bring up the local OVH world (3 VPS containers, OVH API + DNS,
# ACME, cloud API emulators, the sample application, a Prefect server and its worker), prepare
# production's DNS ahead (the seed's 24 h rule, as a warning in the sandbox), promote v1.0.0 through
# test and staging, stop at the production approval (printing the UI link and the approve command),
# answer it as the demo operator, deploy production, then print and write the tracking document.
demo: bootstrap
	$(UV) run --frozen technicia-deploy sandbox up
	$(UV) run --frozen technicia-deploy dns prepare production
	$(UV) run --frozen technicia-deploy promote v1.0.0 --operator demo --approve-as demo
	$(UV) run --frozen technicia-deploy report --output .sandbox/deployment-tracking.md
	@cat .sandbox/deployment-tracking.md
	@echo "Tracking document: .sandbox/deployment-tracking.md"
	@$(UV) run --frozen technicia-deploy sandbox status | grep '^prefect:'

sandbox-down:
	$(UV) run --frozen technicia-deploy sandbox down
