# Tandem: build, test, lint, bench. Needs Go; the tests also need the Debian
# packages chromium, haproxy, wrk and python3 (.ci/run installs them).
GO ?= go

.PHONY: build test lint bench fuzz clean

build:
	$(GO) build -o bin/tandem ./cmd/tandem

# The tests include the linters: CI lands nothing that is not gofmt, vet
# and staticcheck clean.
# The web server's unit tests run a second time with the event loops off,
# so the goroutine path alone is tested too (not only what the loops hand it).
test: lint
	$(GO) test -count=1 -timeout 20m ./...
	TANDEM_TEST_EVENT_LOOPS=-1 $(GO) test -count=1 -timeout 5m ./backend/webserver

lint:
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above" && exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd examples/cart-go && $(GO) vet ./...

bench:
	bash bench/run.sh

clean:
	rm -rf bin
