# The README's two commands: `make demo` and `make test`.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: bootstrap test test-unit demo bench

bootstrap:
	./scripts/bootstrap.sh

# The whole suite, from nothing: system packages, Docker engine, Python env from uv.lock, then pytest.
test: bootstrap
	uv run --frozen pytest

test-unit: bootstrap
	uv run --frozen pytest -m "not e2e"
