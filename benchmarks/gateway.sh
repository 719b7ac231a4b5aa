#!/usr/bin/env bash
# The pacer against an API gateway it was not written with: `ketamine-fhir
# ehr` (fhirtest) at 50 ms latency behind benchmarks/gateway, a token
# bucket of RATE requests per second and BURST tokens that refuses with
# 429 (or STATUS) before the EHR sees the request. Syncs a generated clinic
# at concurrency C with ehr.max_rate unset, and prints the sync's summary
# and the gateway's count: the requests it refused, and the requests per
# second it passed against RATE. Issue #9 asks, against fhirtest's own
# limit, at least 0.9 R with under 1% refused.
#
# Usage: benchmarks/gateway.sh      (from anywhere in the repository)
# Environment:
#   RATE         requests per second of the bucket (default 40)
#   BURST        tokens of the bucket (default RATE: a second's worth; 1 is
#                no burst, as nginx's limit_req without burst)
#   RETRY_AFTER  Retry-After of a refusal: none (default), ceil, or seconds
#   STATUS       status of a refusal (default 429)
#   PATIENTS     clinic size for `generate` (default 20: 433 records, about
#                1,700 resources, 45 s at 40/s)
#   SEED         generator seed (default 3)
#   C            sync.concurrency (default 16)
set -euo pipefail

RATE=${RATE:-40}
BURST=${BURST:-$RATE}
RETRY_AFTER=${RETRY_AFTER:-none}
STATUS=${STATUS:-429}
PATIENTS=${PATIENTS:-20}
SEED=${SEED:-3}
C=${C:-16}
cd "$(dirname "$0")/.."
W=$(mktemp -d /tmp/kf-gateway.XXXXXX)
EHR_PID=
GW_PID=
cleanup() {
	for p in $GW_PID $EHR_PID; do kill -TERM "$p" 2>/dev/null || true; done
	rm -rf "$W"
}
trap cleanup EXIT

# wait_for FILE PATTERN: until a started process has printed its address.
wait_for() {
	for _ in $(seq 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "no '$2' in $1" >&2
	exit 1
}

echo "load at start: $(uptime)"
go build -o "$W/kf" ./cmd/ketamine-fhir
go build -o "$W/gateway" ./benchmarks/gateway
"$W/kf" generate --patients "$PATIENTS" --seed "$SEED" >"$W/clinic.ndjson" 2>/dev/null

"$W/kf" ehr --addr 127.0.0.1:0 --latency 50ms >"$W/ehr.out" 2>"$W/ehr.err" &
EHR_PID=$!
wait_for "$W/ehr.out" 'serving FHIR R4 at'
BASE=$(sed -n 's/.*serving FHIR R4 at //p' "$W/ehr.out")
ORIGIN=$(sed -E 's#^(https?://[^/]+).*#\1#' <<<"$BASE")
BASE_PATH=${BASE#"$ORIGIN"}

"$W/gateway" -listen 127.0.0.1:0 -upstream "$ORIGIN" -rate "$RATE" -burst "$BURST" \
	-retry-after "$RETRY_AFTER" -status "$STATUS" >"$W/gateway.out" 2>&1 &
GW_PID=$!
wait_for "$W/gateway.out" 'gateway at'
GW=$(sed -nE 's#^gateway at (http://[^:]+:[0-9]+).*#\1#p' "$W/gateway.out")
head -1 "$W/gateway.out"

cat >"$W/kf.yaml" <<EOF
store: sqlite:$W/outbox.db
ehr:
  base_url: $GW$BASE_PATH
sync:
  concurrency: $C
log:
  level: warn
EOF
"$W/kf" import --config "$W/kf.yaml" --quiet "$W/clinic.ndjson" >/dev/null
echo "clinic: $(wc -l <"$W/clinic.ndjson") records ($PATIENTS patients, seed $SEED), C = $C"
"$W/kf" sync --config "$W/kf.yaml" --quiet >"$W/sync.out"
head -1 "$W/sync.out"

kill -TERM "$GW_PID"
wait "$GW_PID" || true
GW_PID=
tail -1 "$W/gateway.out"
echo "load at end: $(uptime)"
