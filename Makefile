# wsreactor — common tasks. `make test` is what CI runs (.ci/run).
GO      ?= go
PKGS    ?= ./...
BENCH   ?= .
COUNT   ?= 5
FUZZTIME ?= 60s

.PHONY: build run test unit-test browser-test bench fuzz vet fmt clean scale compare

build:
	$(GO) build -o bin/wsreactor ./cmd/wsreactor

# Runs the server on its defaults plus whatever ARGS holds, e.g. make run ARGS='-app echo'.
run:
	$(GO) run ./cmd/wsreactor $(ARGS)

# The whole suite: unit and integration tests under the race detector, then the real-browser
# test (installs Debian's chromium on first use).
test: unit-test browser-test

unit-test:
	$(GO) test -race -count=1 $(PKGS)

browser-test:
	scripts/install-chromium.sh
	$(GO) test -tags browser -count=1 -run '^TestBrowser' ./server/

bench:
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchmem -count=$(COUNT) $(PKGS)

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecoder$$' -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run='^$$' -fuzz='^FuzzHandshake$$' -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run='^$$' -fuzz='^FuzzUTF8$$' -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run='^$$' -fuzz='^FuzzWheel$$' -fuzztime=$(FUZZTIME) ./timerwheel/

# Measurements, never part of CI: the million-socket run and the side-by-side comparison.
scale:
	scripts/scale.sh $(ARGS)

compare:
	scripts/bench-compare.sh $(ARGS)

vet:
	$(GO) vet $(PKGS)
	test -z "$$(gofmt -l .)"

clean:
	rm -rf bin
