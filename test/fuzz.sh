#!/usr/bin/env bash
# Runs every Go fuzz target of the module (every "func FuzzXxx(" in a _test.go file),
# one after another, each for $FUZZTIME (default 20s; "1000x" counts executions
# instead), and stops at the first failure. The seed corpora under testdata/fuzz/ run
# with every plain "go test"; this script searches beyond them so that a regression
# shows in CI.
#
#   test/fuzz.sh                     every target
#   FUZZTIME=2m test/fuzz.sh Header  targets whose name matches the ERE "Header"
#
# A failing input is saved by go test as <package>/testdata/fuzz/<FuzzXxx>/<hash>:
# commit it with the fix, and it becomes a regression test.
set -euo pipefail

cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-20s}"
filter="${1:-}"
go="${GO:-go}"
if ! command -v "$go" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  go=/usr/local/go/bin/go
fi

# "path/to/x_test.go:func FuzzName(f *testing.F) {" -> "path/to FuzzName", sorted.
mapfile -t targets < <(
  grep -rHE --include='*_test.go' --exclude-dir=vendor --exclude-dir=testdata --exclude-dir=.git \
    '^func Fuzz[A-Za-z0-9_]*\(' . |
    sed -E 's|^\./||; s|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$|\1 \2|; s|^[^ /]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$|. \1|' |
    sort
)
if [ -n "$filter" ]; then
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -E " [^ ]*${filter}[^ ]*$" || true)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found${filter:+ matching $filter}" >&2
  exit 1
fi

summary=()
print_summary() {
  echo
  echo "== fuzz summary (FUZZTIME=$fuzztime) =="
  printf '%s\n' "${summary[@]}"
}

# corpus_count prints how many files the target's corpus directory holds.
corpus_count() {
  { find "$1" -type f 2>/dev/null || true; } | wc -l
}

echo "fuzz.sh: ${#targets[@]} targets, $fuzztime each"
for t in "${targets[@]}"; do
  pkg="${t% *}"
  name="${t#* }"
  corpus="./$pkg/testdata/fuzz/$name"
  start=$SECONDS
  result=FAIL
  # Go 1.26's fuzz coordinator can fail a target with "context deadline exceeded" at
  # the -fuzztime boundary without any failing input (go.dev/issue/75804, fixed in Go
  # 1.27). A failure counts only when go test wrote a failing input; a failure without
  # one is retried once, and if it recurs it is reported as a flake, not a failure.
  for attempt in 1 2; do
    echo
    echo "== $name (./$pkg)${attempt:+ attempt $attempt}"
    before=$(corpus_count "$corpus")
    log=$(mktemp)
    if "$go" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "./$pkg/" 2>&1 | tee "$log"; then
      result=ok
    elif [ "$(corpus_count "$corpus")" -gt "$before" ] || ! grep -q 'context deadline exceeded' "$log"; then
      result=FAIL
    else
      result=flake
    fi
    rm -f "$log"
    [ "$result" = flake ] || break
  done
  summary+=("$(printf '%-5s %-24s ./%-24s %4ds' "$result" "$name" "$pkg" $((SECONDS - start)))")
  if [ "$result" = FAIL ]; then
    print_summary
    echo "fuzz.sh: $name failed; the failing input is under $corpus/" >&2
    exit 1
  fi
done
print_summary
