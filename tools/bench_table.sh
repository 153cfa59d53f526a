#!/usr/bin/env bash
# Regenerates the measured table of docs/benchmarks.md (the part between its "bench-table" markers;
# the prose around it stays) and docs/benchmarks.csv, with the machine, versions, date and this run's
# convolution/memory peaks in the table's header:
#   tools/bench_table.sh                      every model, torch and onnxruntime, defaults
#   tools/bench_table.sh --models bore_depth  extra arguments go to `bore-depth bench`
# The CPU may be shared: read the rows as ratios within one run (docs/benchmarks.md).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$repo/tools/env.sh" >/dev/null
cd "$repo"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
bore-depth bench "$@" --md "$tmp/table.md" --csv "$tmp/table.csv" --force || status=$?
if [[ ! -s $tmp/table.md ]]; then
  echo "bench_table.sh: bore-depth bench wrote no table (exit $status); docs/benchmarks.md unchanged" >&2
  exit $((status ? status : 1))
fi
python - docs/benchmarks.md "$tmp/table.md" "tools/bench_table.sh${*:+ $*}" <<'PY'
import sys
from pathlib import Path

doc, table, command = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), sys.argv[3]
start, end = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
text = doc.read_text()
if start not in text or end not in text:
    sys.exit(f"bench_table.sh: {doc} lacks the {start} ... {end} markers; not touching it")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
body = f"{start}\nCommand: `{command}`.\n\n{table.rstrip()}\n{end}"
doc.write_text(head + body + tail)
print(f"bench_table.sh: updated {doc}")
PY
cp "$tmp/table.csv" docs/benchmarks.csv
echo "bench_table.sh: updated docs/benchmarks.csv"
exit "$status"
