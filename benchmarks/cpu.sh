#!/usr/bin/env bash
# CPU per resource: the adapter's own process CPU time (user + sys) per
# resource delivered by `ketamine-fhir sync`, with the EHR (`ketamine-fhir
# ehr`, fhirtest) in another process, against `ketamine-fhir map` on the
# same records. DESIGN.md section 6 asks for a ratio of at most 1.5.
#
# Usage: benchmarks/cpu.sh            (from anywhere in the repository)
# Environment:
#   PATIENTS  clinic size for `generate` (default 200: about 4,200 records,
#             18,000 resources)
#   SEED      generator seed (default 1)
#   STRATEGY  ehr.write_strategy default (default: the config default,
#             conditional-update)
#   SYNC_ENV  environment of the sync only (for example GOGC=100, to
#             compare with the sync's own GOGC of 200)
#   EHR_FLAGS more flags for `ketamine-fhir ehr` (for example
#             --validate=false: the EHR's CPU then disturbs the sync's less)
#   KEEP      set to keep the work directory
#   PROFILE   set to write CPU and allocation profiles of `map`, `sync`
#             and the EHR to the work directory (map.cpu, map.mem,
#             sync.cpu, sync.mem, ehr.cpu, ehr.mem; implies KEEP); read them with `go tool pprof -top -cum
#             WORK/kf WORK/sync.cpu`. Profiling costs a few percent of CPU.
set -euo pipefail

PATIENTS=${PATIENTS:-200}
SEED=${SEED:-1}
STRATEGY=${STRATEGY:-}
SYNC_ENV=${SYNC_ENV:-}
EHR_FLAGS=${EHR_FLAGS:-}
cd "$(dirname "$0")/.."
W=$(mktemp -d /tmp/kf-cpu.XXXXXX)
if [ -n "${PROFILE:-}" ]; then KEEP=1; fi
# profile NAME: the environment that profiles a command as NAME, if asked.
profile() {
	if [ -n "${PROFILE:-}" ]; then
		echo "KETAMINE_FHIR_CPUPROFILE=$W/$1.cpu KETAMINE_FHIR_MEMPROFILE=$W/$1.mem"
	fi
}
EHR_PID=
cleanup() {
	if [ -n "$EHR_PID" ]; then kill -TERM "$EHR_PID" 2>/dev/null || true; fi
	if [ -z "${KEEP:-}" ]; then rm -rf "$W"; else echo "work directory kept: $W"; fi
}
trap cleanup EXIT

echo "load at start: $(uptime)"
go build -o "$W/kf" ./cmd/ketamine-fhir
"$W/kf" generate --patients "$PATIENTS" --seed "$SEED" >"$W/clinic.ndjson" 2>"$W/generate.err"
echo "clinic: $(wc -l <"$W/clinic.ndjson") records ($PATIENTS patients, seed $SEED)"

# map: the same records, FHIR NDJSON to a file.
env $(profile map) /usr/bin/time -f '%U %S %e %M' -o "$W/map.time" "$W/kf" map "$W/clinic.ndjson" >"$W/mapped.ndjson"
MAP_RES=$(wc -l <"$W/mapped.ndjson")
read -r MAP_U MAP_S MAP_E MAP_M <"$W/map.time"

# The EHR in its own process, on a free port.
# shellcheck disable=SC2046,SC2086 # word splitting of the lists is meant
env $(profile ehr) "$W/kf" ehr --addr 127.0.0.1:0 $EHR_FLAGS >"$W/ehr.out" 2>"$W/ehr.err" &
EHR_PID=$!
for _ in $(seq 100); do
	grep -q 'serving FHIR R4 at' "$W/ehr.out" 2>/dev/null && break
	sleep 0.1
done
BASE=$(sed -n 's/.*serving FHIR R4 at //p' "$W/ehr.out")
[ -n "$BASE" ] || { echo "the EHR did not start" >&2; cat "$W/ehr.err" >&2; exit 1; }

{
	echo "store: sqlite:$W/outbox.db"
	echo "ehr:"
	echo "  base_url: $BASE"
	if [ -n "$STRATEGY" ]; then
		echo "  write_strategy:"
		echo "    default: $STRATEGY"
	fi
	echo "log:"
	echo "  level: warn"
} >"$W/kf.yaml"
"$W/kf" import --config "$W/kf.yaml" --quiet "$W/clinic.ndjson" >"$W/import.out"

# shellcheck disable=SC2046,SC2086
env $(profile sync) $SYNC_ENV /usr/bin/time -f '%U %S %e %M' -o "$W/sync.time" "$W/kf" sync --config "$W/kf.yaml" --quiet >"$W/sync.out"
read -r SYNC_U SYNC_S SYNC_E SYNC_M <"$W/sync.time"
head -1 "$W/sync.out"

EHR_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$EHR_PID/stat")
kill -TERM "$EHR_PID"
wait "$EHR_PID" || true
EHR_PID=
SYNC_RES=$(sed -n 's/^resources: //p' "$W/ehr.out" | tr ',' '\n' | awk -F= '{n += $2} END {print n + 0}')
DUPS=$(sed -n 's/^duplicate identifiers: //p' "$W/ehr.out")
echo "EHR: $(grep '^resources:' "$W/ehr.out"); duplicate identifiers: $DUPS; CPU ${EHR_CPU}s (its own process, flags: ${EHR_FLAGS:-none})"

awk -v mu="$MAP_U" -v ms="$MAP_S" -v me="$MAP_E" -v mm="$MAP_M" -v mr="$MAP_RES" \
	-v su="$SYNC_U" -v ss="$SYNC_S" -v se="$SYNC_E" -v sm="$SYNC_M" -v sr="$SYNC_RES" 'BEGIN {
	mc = mu + ms; sc = su + ss
	printf "map:  %d resources, CPU %.2fs (user %.2f + sys %.2f), wall %.2fs, max RSS %d KiB: %.1f us/resource\n", mr, mc, mu, ms, me, mm, 1e6 * mc / mr
	printf "sync: %d resources, CPU %.2fs (user %.2f + sys %.2f), wall %.2fs, max RSS %d KiB: %.1f us/resource\n", sr, sc, su, ss, se, sm, 1e6 * sc / sr
	printf "ratio sync/map CPU per resource: %.3f (bar: at most 1.5)\n", (sc / sr) / (mc / mr)
}'
echo "load at end: $(uptime)"
