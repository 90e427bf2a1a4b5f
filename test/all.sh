#!/usr/bin/env bash
# Runs every test of tlsgate, in the order CI runs them, and stops at the first failure:
#   1. static checks: gofmt, go vet, staticcheck (every build tag), go mod tidy
#   2. the unit and integration suite with the race detector (loopback fakes only)
#   3. every fuzz target for $FUZZTIME (default 10s each)
#   4. the end-to-end suite against real Postfix, nsd, unbound, redis-server and
#      chromium (root); test/e2e/install.sh installs the Debian packages on first run,
#      before step 2, whose black-box tests start redis-server too
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
# staticcheck is pinned; `go run pkg@version` builds it once into the module cache.
staticcheck="honnef.co/go/tools/cmd/staticcheck@v0.8.2"

go version
echo "== static checks"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...
go vet -tags e2e ./test/e2e/
go run "$staticcheck" ./...
go run "$staticcheck" -tags e2e ./...
go mod tidy -diff

# The Debian packages the tests run for real (Postfix, nsd, unbound, redis-server,
# chromium, ...), installed first: some unit tests start redis-server too.
echo "== install test dependencies"
test/e2e/install.sh

echo "== unit and integration tests"
go test -race -shuffle=on -count=1 ./...

echo "== fuzz"
FUZZTIME="${FUZZTIME:-10s}" test/fuzz.sh

echo "== end-to-end"
go test -tags e2e -count=1 -v ./test/e2e/
