# Tern: the two commands are `make run` and `make test` (see README.md).
SWIFT ?= swift
ARGS ?=
RATE ?= 2000
DURATION ?= 10

.PHONY: run test build build-release deps deps-test bench load-test clean

deps:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

build: deps
	$(SWIFT) build

build-release: deps
	$(SWIFT) build -c release

## Builds and starts tern on its embedded defaults (UDP and TCP on 127.0.0.1:5060).
## Extra arguments: make run ARGS="--listen udp:127.0.0.1:5070 --config tern.example.yaml"
run: build
	.build/debug/tern $(ARGS)

## Installs what is missing, runs the SIPp smoke flows and load test, then every Swift test (unit, end to end, conformance, fuzz).
## The outside services (a MongoDB-wire server) run on ephemeral ports for the whole run and stop
## at its end, pass or fail (scripts/services.sh). The CPU-bound tests (the fuzzer, thousands of
## calls through the proxy) run first and alone: beside the timing tests on a 2-core machine they
## held both cores for half a minute and made those time out.
CPU_BOUND_TESTS = SIPFuzzTests|weightedDispatcher|numberPortabilityWithAMillionEntries
test: deps-test
	$(SWIFT) build --build-tests
	scripts/services.sh start
	status=0; . .services/env && export TERN_REQUIRE_SERVICES=1 && { \
	  TERN=.build/debug/tern scripts/sipp-smoke.sh && \
	  $(SWIFT) build -c release --product tern && \
	  TERN=.build/release/tern RATE=$(RATE) DURATION=$(DURATION) scripts/sipp-options-load.sh && \
	  $(SWIFT) test --skip-build --filter '$(CPU_BOUND_TESTS)' && \
	  $(SWIFT) test --skip-build --skip '$(CPU_BOUND_TESTS)'; } || status=$$?; \
	scripts/services.sh stop; exit $$status

## Release build; parser throughput and allocations; heap allocations per REGISTER and proxied MESSAGE; SIPp scenarios against Tern and Kamailio with ratios;
## offline-message store and drain rates with SQLite and MongoDB; presence NOTIFY rate, latency, memory;
## the event bus's cost to SIP.
bench: build-release
	@scripts/install-deps.sh bench
	.build/release/tern-parser-bench
	TERN=.build/release/tern scripts/alloc-count.sh
	TERN=.build/release/tern scripts/bench.sh
	TERN=.build/release/tern scripts/bench-messaging.sh
	TERN=.build/release/tern scripts/bench-presence.sh
	# The same subscriptions with a 200 ms interval: how many NOTIFYs a second Tern sustains.
	TERN=.build/release/tern INTERVAL_MS=200 SETTLE_SECONDS=3 scripts/bench-presence.sh
	TERN=.build/release/tern scripts/bench-events.sh

clean:
	rm -rf .build
