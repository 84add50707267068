# weir: build, run, test, conformance and benchmarks.
#
#   make build        bin/weir
#   make run          wordcount example on the shipped sample text, embedded (--runner=weir)
#   make test         go vet, go test (the runner's tests twice: Fn API and in-process workers;
#                     conformance/typescript runs Beam's TypeScript SDK pipelines on bin/weir serve,
#                     needing node and npm, skipped without them outside CI), go test -race (runner
#                     and state; the runner's tests both ways), then conformance
#   make conformance  Beam's Go suites against `bin/weir serve` (conformance/cmd/conform)
#   make bench        Beam's Go load tests on weir, prism and direct (bench/cmd/loadbench), then the
#                     stateful benchmark on weir and prism (three paired rounds; the window
#                     pipeline, then the global-window one whose timer is set on every event),
#                     then weir without and with a checkpoint
#                     every second, three rounds, judged by the median ratio, then weir alone at
#                     10M events over 1M keys, its peak RSS judged against 1 GB (bench/cmd/statebench),
#                     then incremental checkpoints of 1 GiB of state and its
#                     recovery (bench/cmd/chkbench), then savepoints of the stateful
#                     benchmark's state at SP_KEYS keys: duration and size, throughput
#                     while they are written against checkpoints only, and restore into
#                     twice the parallelism against checkpoint recovery (bench/cmd/spbench)
#   make streaming    the streaming example, embedded, until Ctrl-C (which drains it)
#   make soak         the differential harness (conformance/metamorphic) on SEEDS random
#                     pipelines from SEED_BASE (make test runs its default 60); BIG=1 allows
#                     up to a million elements and keys
#
# Knobs: RUN_FLAGS (extra wordcount flags), CONFORM_FLAGS (e.g. --suites=primitives -v), BENCH_FLAGS (e.g. --tests=group_by_key),
# RECORDS (load test size), PARALLELISM (weir serve --parallelism; empty: weir's default),
# SP_KEYS, SP_PAIRS, SP_ROUNDS, SP_FLAGS (bench/cmd/spbench: keys, throughput window pairs,
# restore rounds, other flags).

GO          ?= go
WEIR        := bin/weir
RECORDS     ?= 1000000
# The stateful benchmark: a generator SDF into a per-key count in ValueState
# with an event-time timer per key (weir and prism).
STATE_EVENTS ?= 200000
STATE_KEYS   ?= 100000
# Then weir alone at this size, its peak RSS judged against 1 GB.
STATE_BIG_EVENTS ?= 10000000
STATE_BIG_KEYS   ?= 1000000
# Savepoints of the stateful benchmark's state (bench/cmd/spbench): keys,
# pairs of throughput windows and restore rounds. One pair keeps the step
# near 6 minutes here: a savepoint at 1M keys takes about two (bench/savepoint.md).
SP_KEYS   ?= 1000000
SP_PAIRS  ?= 3
SP_ROUNDS ?= 3
SP_FLAGS  ?=
PARALLELISM ?=
# make soak: how many seeds of the differential harness, from which.
SEEDS     ?= 500
SEED_BASE ?= 1000
BIG       ?=
CONFORM_FLAGS ?=
BENCH_FLAGS   ?=

# The example prints the most frequent words; add --output=FILE to RUN_FLAGS to write all counts.
WORDCOUNT_INPUT ?= examples/wordcount/testdata/kinglear.txt
RUN_FLAGS       ?=

# Packages tested with the race detector (only those that exist yet).
RACE_PKGS := $(foreach d,runner state,$(if $(wildcard $(d)),./$(d)/...))

PAR_FLAG := $(if $(PARALLELISM),--parallelism=$(PARALLELISM))

.PHONY: build run streaming test vet unit race conformance bench soak clean

build:
	$(GO) build -o $(WEIR) ./cmd/weir

run:
	$(GO) run ./examples/wordcount --input=$(WORDCOUNT_INPUT) $(RUN_FLAGS)

streaming:
	$(GO) run ./examples/streaming

test: vet unit race conformance

vet:
	$(GO) vet ./...

# The runner's tests run twice: with LOOPBACK workers over the Fn API (as
# under weir serve), then in the test process as --runner=weir runs them.
unit: build
	WEIR_BIN=$(abspath $(WEIR)) $(GO) test ./...
	WEIR_TEST_INPROCESS=1 $(GO) test ./runner/

race:
ifneq ($(RACE_PKGS),)
	$(GO) test -race -short $(RACE_PKGS)
	WEIR_TEST_INPROCESS=1 $(GO) test -race -short ./runner/
else
	@echo "race: no runner/ or state/ packages yet"
endif

conformance: build
	$(GO) run ./conformance/cmd/conform --weir=$(WEIR) $(PAR_FLAG) $(CONFORM_FLAGS)

# Every benchmark runs even when an earlier one misses its target; make
# bench then exits 1 (each prints its own PASS/FAIL).
bench: build
	@fail=0; set -x; \
	$(GO) run ./bench/cmd/loadbench --weir=$(WEIR) --records=$(RECORDS) $(PAR_FLAG) $(BENCH_FLAGS) || fail=1; \
	$(GO) run ./bench/cmd/statebench --events=$(STATE_EVENTS) --keys=$(STATE_KEYS) --runners=weir,prism --rounds=3 || fail=1; \
	$(GO) run ./bench/cmd/statebench --pipeline=global --events=$(STATE_EVENTS) --keys=$(STATE_KEYS) --runners=weir,prism --rounds=3 || fail=1; \
	$(GO) run ./bench/cmd/statebench --events=$(STATE_EVENTS) --keys=$(STATE_KEYS) --runners=weir,weir-chk --rounds=3 || fail=1; \
	$(GO) run ./bench/cmd/statebench --events=$(STATE_BIG_EVENTS) --keys=$(STATE_BIG_KEYS) --runners=weir --max_rss_mb=1024 || fail=1; \
	$(GO) run ./bench/cmd/chkbench || fail=1; \
	$(GO) run ./bench/cmd/spbench --keys=$(SP_KEYS) --pairs=$(SP_PAIRS) --rounds=$(SP_ROUNDS) $(SP_FLAGS) || fail=1; \
	{ set +x; } 2>/dev/null; exit $$fail

soak:
	$(GO) test ./conformance/metamorphic -run 'TestMetamorphic$$' -count=1 -timeout 0 -seeds=$(SEEDS) -seed_base=$(SEED_BASE) $(if $(BIG),-big)

clean:
	rm -rf bin out
