#!/usr/bin/env bash
# bench-compare.sh BASE [ROUNDS]: storage-api at revision BASE against the work tree, under the
# same wrk load (scripts/bench-load.sh), memory and bolt backends, 1 KiB objects. The two builds
# alternate ROUNDS times (default 3), so that whatever else the machine does falls on both alike;
# each round prints bench-load's table for each. Used for the before/after figures in
# docs/performance.md, e.g.:
#
#   scripts/bench-compare.sh 72e7dcf 3 | tee /tmp/compare.md
set -euo pipefail
base=${1:?usage: bench-compare.sh BASE-REVISION [ROUNDS]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
for r in $(seq "$rounds"); do
	echo "# round $r: before ($base)"
	BENCH_REVISION=$base BENCH_ROWS="memory bolt" bash "$here/bench-load.sh"
	echo "# round $r: after (work tree)"
	BENCH_ROWS="memory bolt" bash "$here/bench-load.sh"
done
