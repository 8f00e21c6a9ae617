#!/usr/bin/env bash
# Runs one fuzz target: bash scripts/fuzz.sh -run '^$' -fuzz FuzzName -fuzztime 5s ./pkg (make fuzz calls it).
#
# Go 1.26's fuzzing coordinator can report the end of a duration -fuzztime as a failure, "context deadline
# exceeded", when a worker is still mid-call as the deadline fires (go.dev/issue/75804, fixed in Go 1.27). That
# is no finding: a real one writes its input to PKG/testdata/fuzz/FuzzName/. So a run whose only complaint is
# that line, and that wrote no new input there, passes with a warning; every other failure fails.
set -uo pipefail
target="" pkg="${!#}"
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  [[ ${args[i]} == -fuzz ]] && target=${args[i + 1]}
done
[[ -n $target && $pkg == ./* ]] || { echo "usage: fuzz.sh [go test flags] -fuzz FuzzName ... ./pkg" >&2; exit 2; }

corpus="$pkg/testdata/fuzz/$target"
before=$(ls "$corpus" 2>/dev/null | sort)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
((rc == 0)) && exit 0
after=$(ls "$corpus" 2>/dev/null | sort)
if [[ $before == "$after" ]] && grep -q "^--- FAIL: $target " "$out" &&
  [[ $(grep -c '^    ' "$out") == 1 ]] && grep -qx '    context deadline exceeded' "$out"; then
  echo "fuzz.sh: $target: the fuzztime deadline reported as a failure, no input written (go.dev/issue/75804): not a finding" >&2
  exit 0
fi
exit "$rc"
