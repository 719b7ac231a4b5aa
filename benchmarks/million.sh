#!/usr/bin/env bash
# One million records end to end (DESIGN.md section 6): generate a clinic
# of about 1,000,000 records, import it into a SQLite outbox, and sync it
# into `ketamine-fhir ehr` (fhirtest) running as a separate process.
# Reports wall time, records and resources per second, and the peak RSS of
# each adapter process (bar: under 256 MiB) and, separately, of the EHR.
#
# Usage: benchmarks/million.sh      (from anywhere in the repository)
# Environment:
#   PATIENTS      clinic size (default 48120: 1,000,070 records, seed 1)
#   SEED          generator seed (default 1)
#   DIR           work directory (default /tmp/kf-1m); its outbox is
#                 started afresh
#   DEADLINE      sync --deadline (default 100m): the sync stops claiming
#                 then, and the script reports how far it got
#   STRATEGY      ehr.write_strategy default (default: the config default,
#                 conditional-update)
#   EHR_FLAGS     more flags for `ketamine-fhir ehr` (default
#                 --validate=false: on a 2-core machine the EHR's
#                 validating parse, about 600 us a resource, would share
#                 the cores with the adapter being measured; the adapter
#                 validates every resource it sends, and BENCHMARKS.md
#                 section 4 gives a run with validation on)
#   EHR_GOMEMLIMIT  GOMEMLIMIT of the EHR process (default 15GiB): fhirtest
#                 holds about 2.3 KB a resource live, 10 GB for the
#                 clinic's 4.25 M, and Go's default collector target would
#                 double that
#   MIN_AVAIL_MB  memory watchdog (default 3072): if the machine's
#                 MemAvailable falls below this while syncing (the EHR
#                 keeps every resource in memory), the sync is stopped
#                 with SIGTERM and the script reports how far it got
# A line of watch.log every 30 s shows memory and progress while it runs.
set -euo pipefail

PATIENTS=${PATIENTS:-48120}
SEED=${SEED:-1}
DIR=${DIR:-/tmp/kf-1m}
DEADLINE=${DEADLINE:-100m}
STRATEGY=${STRATEGY:-}
EHR_FLAGS=${EHR_FLAGS---validate=false}
EHR_GOMEMLIMIT=${EHR_GOMEMLIMIT:-15GiB}
MIN_AVAIL_MB=${MIN_AVAIL_MB:-3072}
cd "$(dirname "$0")/.."
mkdir -p "$DIR"
rm -f "$DIR"/outbox.db* "$DIR"/*.time "$DIR"/watch.log
EHR_PID=
cleanup() { if [ -n "$EHR_PID" ]; then kill -TERM "$EHR_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; } # a /usr/bin/time -v field
secs() { awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s}' <<<"$1"; } # h:mm:ss or m:ss.ss
avail_mb() { awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo; }
rss_mb() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$1/status" 2>/dev/null || echo 0; }

stamp "load: $(uptime)"
go build -o "$DIR/kf" ./cmd/ketamine-fhir
if [ ! -s "$DIR/clinic-$PATIENTS-$SEED.ndjson" ]; then
	"$DIR/kf" generate --patients "$PATIENTS" --seed "$SEED" >"$DIR/clinic-$PATIENTS-$SEED.ndjson"
fi
CLINIC="$DIR/clinic-$PATIENTS-$SEED.ndjson"
stamp "clinic: $(wc -l <"$CLINIC") records, $(du -m "$CLINIC" | cut -f1) MB"

# The EHR, a separate process on a free port, under /usr/bin/time for its
# peak RSS; EHR_PID is the ehr process itself (the child of time).
# shellcheck disable=SC2086 # EHR_FLAGS is a list of flags
GOMEMLIMIT=$EHR_GOMEMLIMIT /usr/bin/time -v -o "$DIR/ehr.time" "$DIR/kf" ehr --addr 127.0.0.1:0 --request-log-limit 1000 $EHR_FLAGS \
	>"$DIR/ehr.out" 2>"$DIR/ehr.err" &
TIME_PID=$!
for _ in $(seq 100); do
	grep -q 'serving FHIR R4 at' "$DIR/ehr.out" 2>/dev/null && break
	sleep 0.1
done
EHR_PID=$(pgrep -P "$TIME_PID")
BASE=$(sed -n 's/.*serving FHIR R4 at //p' "$DIR/ehr.out")
[ -n "$BASE" ] && [ -n "$EHR_PID" ] || { echo "the EHR did not start" >&2; cat "$DIR/ehr.err" >&2; exit 1; }
stamp "EHR pid $EHR_PID at $BASE (flags: ${EHR_FLAGS:-none}, GOMEMLIMIT $EHR_GOMEMLIMIT)"

cat >"$DIR/kf.yaml" <<YAML
store: sqlite:$DIR/outbox.db
ehr:
  base_url: $BASE
${STRATEGY:+  write_strategy:
    default: $STRATEGY}
log:
  format: json
  level: warn
YAML

stamp "import"
/usr/bin/time -v -o "$DIR/import.time" "$DIR/kf" import --config "$DIR/kf.yaml" "$CLINIC" >"$DIR/import.out" 2>"$DIR/import.err"
tail -1 "$DIR/import.out"
stamp "import: wall $(field "$DIR/import.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'), max RSS $(field "$DIR/import.time" 'Maximum resident set size (kbytes)') KiB"

stamp "sync (deadline $DEADLINE)"
SYNC_START=$(date +%s)
/usr/bin/time -v -o "$DIR/sync.time" "$DIR/kf" sync --config "$DIR/kf.yaml" --deadline "$DEADLINE" >"$DIR/sync.out" 2>"$DIR/sync.err" &
SYNC_TIME_PID=$!
sleep 1
SYNC_PID=$(pgrep -P "$SYNC_TIME_PID" || true)
STOPPED=
while kill -0 "$SYNC_TIME_PID" 2>/dev/null; do
	AV=$(avail_mb)
	echo "$(date -u +%H:%M:%S) +$(($(date +%s) - SYNC_START))s avail ${AV} MiB, EHR RSS $(rss_mb "$EHR_PID") MiB, sync RSS $(rss_mb "$SYNC_PID") MiB, load $(cut -d' ' -f1-3 /proc/loadavg); $(tail -1 "$DIR/sync.err" | cut -c1-200)" >>"$DIR/watch.log"
	if [ -z "$STOPPED" ] && [ "$AV" -lt "$MIN_AVAIL_MB" ]; then
		STOPPED="memory watchdog: MemAvailable ${AV} MiB < ${MIN_AVAIL_MB} MiB after $(($(date +%s) - SYNC_START))s"
		stamp "$STOPPED: stopping the sync (SIGTERM)"
		kill -TERM "$SYNC_PID" 2>/dev/null || true
	fi
	for _ in $(seq 30); do kill -0 "$SYNC_TIME_PID" 2>/dev/null && sleep 1; done
done
wait "$SYNC_TIME_PID" || true
SYNC_WALL=$(secs "$(field "$DIR/sync.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')")
cat "$DIR/sync.out"

stamp "stopping the EHR"
kill -TERM "$EHR_PID"
wait "$TIME_PID" || true
EHR_PID=
cat "$DIR/ehr.out"

RES=$(sed -n 's/^resources: //p' "$DIR/ehr.out" | tr ',' '\n' | awk -F= '{n += $2} END {print n + 0}')
SYNCED=$(sed -n 's/^sync: \([0-9]*\) synced.*/\1/p' "$DIR/sync.out")
SYNC_RSS=$(field "$DIR/sync.time" 'Maximum resident set size (kbytes)')
IMPORT_RSS=$(field "$DIR/import.time" 'Maximum resident set size (kbytes)')
EHR_RSS=$(field "$DIR/ehr.time" 'Maximum resident set size (kbytes)')
echo
echo "=== summary ($PATIENTS patients, seed $SEED)"
echo "import: wall $(field "$DIR/import.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'), user $(field "$DIR/import.time" 'User time (seconds)') s, sys $(field "$DIR/import.time" 'System time (seconds)') s, max RSS $IMPORT_RSS KiB ($((IMPORT_RSS / 1024)) MiB)"
echo "sync:   wall $(field "$DIR/sync.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'), user $(field "$DIR/sync.time" 'User time (seconds)') s, sys $(field "$DIR/sync.time" 'System time (seconds)') s, max RSS $SYNC_RSS KiB ($((SYNC_RSS / 1024)) MiB)"
echo "sync:   $SYNCED records synced, $RES resources in the EHR in ${SYNC_WALL} s: $(awk -v r="$SYNCED" -v s="$SYNC_WALL" 'BEGIN {printf "%.0f", r / s}') records/s, $(awk -v r="$RES" -v s="$SYNC_WALL" 'BEGIN {printf "%.0f", r / s}') resources/s"
echo "EHR:    max RSS $EHR_RSS KiB ($((EHR_RSS / 1024)) MiB)"
echo "adapter peak RSS vs 256 MiB: import $(awk -v k="$IMPORT_RSS" 'BEGIN {printf "%.2f", k / 1024 / 256}'), sync $(awk -v k="$SYNC_RSS" 'BEGIN {printf "%.2f", k / 1024 / 256}')"
if [ -n "$STOPPED" ]; then echo "NOT COMPLETE: $STOPPED"; fi
sqlite3 "file:$DIR/outbox.db?mode=ro" 'select kind, state, count(*) from outbox group by 1, 2' 2>/dev/null || true
stamp "load: $(uptime)"
