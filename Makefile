# idgate: `make demo` runs the whole stack locally; `make test` runs every test, real components included.
# Both install what is missing first: npm dependencies, and HAProxy, Redis and systemd (for systemd-analyze) from Debian's packages.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export NODE_OPTIONS_JEST := --experimental-vm-modules

.PHONY: all deps system-deps build demo demo-ha test test-unit test-e2e test-faults test-compat typecheck bench profile costs clean

all: build

system-deps:
	@missing=""; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ "$(WITH_BROWSER)" = 1 ] && [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if [ "$(WITH_BENCH)" = 1 ] && ! command -v wrk >/dev/null; then missing="$$missing wrk"; fi; \
	if [ "$(WITH_BENCH)" = 1 ] && [ ! -x /usr/sbin/apache2 ]; then missing="$$missing apache2-bin"; fi; \
	if [ "$(WITH_BENCH)" = 1 ] && [ ! -f /usr/lib/apache2/modules/mod_auth_openidc.so ]; then missing="$$missing libapache2-mod-auth-openidc"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: system-deps node_modules/.installed

build: deps
	# From scratch: tsc never deletes the output of a source that was moved or removed, and `npm pack`
	# would ship it (test/e2e/package-install.test.ts checks the tarball holds nothing stale).
	rm -rf dist
	npx tsc -p tsconfig.build.json

typecheck: deps
	npx tsc -p tsconfig.json --noEmit

# `make demo IDP=okta`: the local IdP answers the way Okta does (docs/okta.md, "Try it locally").
demo: build
	IDP_PROFILE=$(IDP) node dist/demo/demo-main.js

# The replicated deployment: Redis Sentinel (primary, replica, three sentinels), two idgate, two HAProxy
# (8080 and 8090); it prints what to try (README, High availability demo).
demo-ha: build
	node dist/demo/demo-ha-main.js

# The real-browser test drives Debian's Chromium (never a downloaded browser).
test: WITH_BROWSER = 1
test: build typecheck
	rm -rf .run/test-logs && mkdir -p .run/test-logs
	# A hung run fails within 20 minutes instead of holding CI for its whole budget.
	IDGATE_LOG_CAPTURE_DIR=$(CURDIR)/.run/test-logs NODE_OPTIONS=$(NODE_OPTIONS_JEST) timeout 1200 npx jest
	# The end-to-end tests that depend on the IdP's profile once more, against the Okta-shaped IdP
	# (jest.okta.config.js: the `per IdP profile` blocks); their
	# logs go to the same directory, so the scan below covers both passes.
	IDGATE_LOG_CAPTURE_DIR=$(CURDIR)/.run/test-logs NODE_OPTIONS=$(NODE_OPTIONS_JEST) timeout 600 npx jest -c jest.okta.config.js
	node test/scan-logs.mjs .run/test-logs

test-unit: build
	NODE_OPTIONS=$(NODE_OPTIONS_JEST) npx jest test/unit

test-e2e: build
	NODE_OPTIONS=$(NODE_OPTIONS_JEST) npx jest test/e2e

# Replicas, rolling restarts and faults (test/faults/, a few minutes; `make test` runs them too): two
# HAProxy and two idgate on one Redis, a replica killed, the IdP stopped, a slow Redis or IdP, Redis
# restarted or stopped, a paused Redis replica. Each prints its request counts and figures
# (docs/operations.md).
test-faults: build
	NODE_OPTIONS=$(NODE_OPTIONS_JEST) timeout 600 npx jest --runInBand test/faults

# The compatibility matrix (docs/compatibility.md): HAProxy, Redis, Valkey and Node versions beyond the ones
# on PATH, fetched and built into .cache/compat (reused when present) from Debian's source packages and
# the npm registry, each run against the tests that touch it; prints the matrix.
test-compat: build
	compat/fetch.sh $(CURDIR)/.cache/compat
	node compat/run.mjs $(CURDIR)/.cache/compat

# Figures go to bench/results.json, bench/results.svg and bench/RESULTS.md (see the README, Performance).
# The peer it measures, Apache + mod_auth_openidc, comes from apache2-bin (the server and its modules,
# without the apache2 package's system service on port 80) and libapache2-mod-auth-openidc.
bench: WITH_BENCH = 1
bench: build
	BENCH_COMMAND="make bench" node dist/bench/run.js

# A V8 CPU profile of idgate under SPOE load, with its top functions (for work on the check path).
profile: WITH_BENCH = 1
profile: build
	node dist/bench/profile.js

# CPU per request of each process (HAProxy, idgate, upstream, ...) at one fixed rate: passthrough, each
# transport's ceiling and idgate on it (where a check's cost goes).
costs: WITH_BENCH = 1
costs: build
	node dist/bench/costs.js

clean:
	rm -rf dist node_modules/.installed
