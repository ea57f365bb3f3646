# stepgate: two-step verification for clients that can only send a password.
GO      ?= go
BIN     := bin/stepgate
DATA    ?= ./stepgate-data
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/stepgate/stepgate/internal/cli.Version=$(VERSION)
FUZZTIME ?= 30s
PKGS    ?= ./...

# A pipeline fails when any part of it does: `make test` pipes go test.
SHELL       := bash
.SHELLFLAGS := -o pipefail -c

.PHONY: all build run test bench bench-go bench-smoke lint fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stepgate

# Runs stepgate on its embedded default: a data folder in ./stepgate-data,
# a demo user with its QR code, LDAP on 127.0.0.1:3389, IMAP and POP3 (demo
# mailbox) on 127.0.0.1:1143 and 1110, SMTP submission (a sink) on
# 127.0.0.1:1587, admin on 127.0.0.1:9386. Ctrl-C stops it.
run: build
	$(BIN) --data-dir $(DATA) serve --demo --imap-upstream demo --pop3-upstream demo --submission-upstream demo

# go test's usual output (ok lines, failures), then every skipped test
# with its reason: integration tests skip when slapd, Dovecot or a mail
# client is missing, and go test alone would only print ok.
# PKGS narrows it (make test PKGS=./protocols/ldap/).
test:
	$(GO) build -o bin/testsummary ./internal/testenv/cmd/testsummary
	$(GO) test -race -count=1 -json $(PKGS) | bin/testsummary

# stepgate side by side with slapd, slapd+otp and Dovecot (README,
# Performance): prints the table and writes it, its JSON and the plots to
# bench/results/. A few minutes.
bench:
	STEPGATE_BENCH=full $(GO) test -run '^TestBench$$' -count=1 -v -timeout 30m ./bench -args -bench-out $(CURDIR)/bench/results

# Go micro-benchmarks of the core and the front ends.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./...

# The harness with tiny counts and every Go benchmark once, so neither
# can rot (CI runs it).
bench-smoke:
	STEPGATE_BENCH=smoke $(GO) test -run '^TestBench$$' -count=1 -v -timeout 10m ./bench -args -bench-out $(CURDIR)/bench/results-smoke
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin
