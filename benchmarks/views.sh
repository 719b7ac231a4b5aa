#!/usr/bin/env bash
# The built-in views over about 1,000,000 FHIR resources (DESIGN.md
# section 6: "built-in views over 1,000,000 resources under 256 MiB RSS").
# Generates a clinic, maps it to FHIR NDJSON with `ketamine-fhir map`, then
# runs `ketamine-fhir views run --builtin` once per format under
# /usr/bin/time -v and prints resources/s (wall), resources/s per CPU
# second (user+sys), and the peak RSS of each run (bar: under 256 MiB).
#
# Usage: benchmarks/views.sh      (from anywhere in the repository)
# Environment:
#   PATIENTS  clinic size (default 11340: just over 1,000,000 mapped resources
#             with seed 1; the generator makes about 89 resources a patient)
#   SEED      generator seed (default 1)
#   FORMATS   output formats to run, space-separated (default "parquet csv")
#   DIR       work directory (default /tmp/kf-views-1m); the clinic and its
#             NDJSON are kept between runs
set -euo pipefail

PATIENTS=${PATIENTS:-11340}
SEED=${SEED:-1}
FORMATS=${FORMATS:-parquet csv}
DIR=${DIR:-/tmp/kf-views-1m}
cd "$(dirname "$0")/.."
mkdir -p "$DIR"

stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; } # a /usr/bin/time -v field
secs() { awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s}' <<<"$1"; } # h:mm:ss or m:ss.ss

stamp "load: $(uptime)"
go build -o "$DIR/kf" ./cmd/ketamine-fhir
CLINIC="$DIR/clinic-$PATIENTS-$SEED.ndjson"
FHIR="$DIR/fhir-$PATIENTS-$SEED.ndjson"
if [ ! -s "$CLINIC" ]; then
	"$DIR/kf" generate --patients "$PATIENTS" --seed "$SEED" >"$CLINIC"
fi
if [ ! -s "$FHIR" ]; then
	"$DIR/kf" map "$CLINIC" >"$FHIR.tmp"
	mv "$FHIR.tmp" "$FHIR"
fi
RESOURCES=$(wc -l <"$FHIR")
stamp "input: $RESOURCES resources, $(du -m "$FHIR" | cut -f1) MB of NDJSON ($PATIENTS patients, seed $SEED)"
CORES=$(nproc)

for fmt in $FORMATS; do
	out="$DIR/out-$fmt"
	rm -rf "$out"
	stamp "views run --builtin --format $fmt"
	/usr/bin/time -v -o "$DIR/$fmt.time" "$DIR/kf" views run --builtin --in "$FHIR" --format "$fmt" --out "$out" >"$DIR/$fmt.out" 2>"$DIR/$fmt.err" ||
		{ echo "views run failed:" >&2; tail -5 "$DIR/$fmt.err" >&2; exit 1; }
	cat "$DIR/$fmt.out"
	wall=$(secs "$(field "$DIR/$fmt.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')")
	user=$(field "$DIR/$fmt.time" 'User time (seconds)')
	sys=$(field "$DIR/$fmt.time" 'System time (seconds)')
	rss=$(field "$DIR/$fmt.time" 'Maximum resident set size (kbytes)')
	awk -v f="$fmt" -v n="$RESOURCES" -v w="$wall" -v u="$user" -v s="$sys" -v k="$rss" -v c="$CORES" 'BEGIN {
		printf "%s: %d resources, wall %.1f s, user %.1f s, sys %.1f s (%.2f cores busy of %d)\n", f, n, w, u, s, (u + s) / w, c
		printf "%s: %.0f resources/s wall, %.0f resources/s per CPU second (user+sys), %.0f resources/s per core (wall x %d cores)\n", f, n / w, n / (u + s), n / w / c, c
		printf "%s: max RSS %d KiB (%.0f MiB), %.2f of the 256 MiB bar\n", f, k, k / 1024, k / 1024 / 256
	}'
	du -sh "$out" | sed "s/^/$fmt: output /"
done
stamp "load: $(uptime)"
