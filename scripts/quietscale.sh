#!/usr/bin/env bash
# quietscale.sh: what N quiet containers cost berth and the daemon.
#
#   scripts/quietscale.sh [-n 300] [-warm 480] [-window 60] [-berth path/to/berth]
#   scripts/quietscale.sh -backlog 5000 [-n 200] [-berth path/to/berth]
#
# Starts N containers (network none, labelled berth.quietscale=1, FROM scratch
# around e2e/loggen) that each write 3 lines and then stay silent, starts
# berth (initial_position: beginning, JSON lines to /dev/null, its defaults
# otherwise), waits until every container's lines arrived (the attach time),
# lets it run -warm seconds (quiet streams reach their longest idle deadline
# after about 7.5 minutes with the defaults), then measures over -window
# seconds: berth's CPU and dockerd's (utime+stime from /proc/<pid>/stat),
# berth's RSS (VmRSS), goroutines (/status) and the logs requests it sent
# (berth_deadline_expiries_total, one re-attach per idle end). The containers,
# berth and its state are removed at the end, also on failure.
#
# With -backlog L, the N containers each write L lines and stop before berth
# starts (a backfill: berth's start with a backlog, or after a daemon
# restart): it reports how long berth took to read them all, dockerd's CPU
# over that time and its busiest second, and berth's most goroutines.
set -euo pipefail

N=300 WARM=480 WINDOW=60 BERTH= BACKLOG=0
while [ $# -gt 0 ]; do
	case "$1" in
	-n) N=$2; shift 2 ;;
	-warm) WARM=$2; shift 2 ;;
	-window) WINDOW=$2; shift 2 ;;
	-berth) BERTH=$2; shift 2 ;;
	-backlog) BACKLOG=$2; shift 2 ;;
	*) echo "usage: $0 [-n N] [-warm S] [-window S] [-berth PATH]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/.."
# One measurement of the daemon at a time: the e2e suite's run lock.
exec 9>>"${TMPDIR:-/tmp}/berth-e2e.lock"
if ! flock -n 9; then
	echo "waiting for ${TMPDIR:-/tmp}/berth-e2e.lock (another e2e run or measurement)..." >&2
	flock 9
fi
work=$(mktemp -d /tmp/quietscale.XXXXXX)
LABEL=berth.quietscale=1
IMAGE=berth-quietscale-loggen:1
BPID=
cleanup() {
	[ -n "$BPID" ] && kill "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null || true
	ids=$(docker ps -aq --filter "label=$LABEL")
	[ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$BERTH" ]; then
	CGO_ENABLED=0 go build -o "$work/berth" ./cmd/berth
	BERTH=$work/berth
fi
CGO_ENABLED=0 go build -o "$work/loggen" ./e2e/loggen
printf 'FROM scratch\nCOPY loggen /loggen\nENTRYPOINT ["/loggen"]\n' >"$work/Dockerfile"
docker build -q -t "$IMAGE" --label "$LABEL" "$work" >/dev/null

echo "starting $N quiet containers..."
for i in $(seq 1 "$N"); do
	if [ "$BACKLOG" -gt 0 ]; then
		docker run -d --network none --label "$LABEL" --name "quietscale-$i" "$IMAGE" -n "$BACKLOG" >/dev/null &
	else
		docker run -d --network none --label "$LABEL" --name "quietscale-$i" "$IMAGE" -n 3 -sleep-after 24h >/dev/null &
	fi
	if [ $((i % 8)) -eq 0 ]; then wait; fi
done
wait

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # clock ticks
HZ=$(getconf CLK_TCK)
DPID=$(pidof dockerd | awk '{print $1}')
PORT=$((20000 + RANDOM % 20000))
cat >"$work/berth.yaml" <<EOF
state_dir: $work/state
http_addr: 127.0.0.1:$PORT
initial_position: beginning
stdout: "true"
include: [label=berth.quietscale=1]
EOF
if [ "$BACKLOG" -gt 0 ]; then
	until [ -z "$(docker ps -q --filter "label=$LABEL")" ]; do sleep 1; done # all stopped
	sleep 5
fi
"$BERTH" --config "$work/berth.yaml" >/dev/null 2>"$work/berth.err" &
BPID=$!
t0=$(date +%s.%N)
d0=$(cpu "$DPID")
if [ "$BACKLOG" -gt 0 ]; then
	peak=0 gmax=0 prev=$d0
	until curl -sf "http://127.0.0.1:$PORT/status" >"$work/status.json" 2>/dev/null &&
		[ "$(jq "[(.containers // [])[] | select(.lines >= $BACKLOG)] | length" "$work/status.json")" -ge "$N" ]; do
		kill -0 "$BPID" || { cat "$work/berth.err"; exit 1; }
		g=$(jq '.goroutines // 0' "$work/status.json" 2>/dev/null || echo 0)
		[ "$g" -gt "$gmax" ] && gmax=$g
		sleep 1
		now=$(cpu "$DPID")
		[ $((now - prev)) -gt "$peak" ] && peak=$((now - prev))
		prev=$now
	done
	t1=$(date +%s.%N) d1=$(cpu "$DPID")
	echo "backfill: $N stopped containers x $BACKLOG lines read $(echo "$t1 - $t0" | bc) s after berth started"
	echo "  dockerd CPU: $(echo "scale=2; ($d1 - $d0) / $HZ" | bc) s in all, busiest second $((100 * peak / HZ))% of a core"
	echo "  berth goroutines at most $gmax (sampled each second)"
	exit 0
fi
until curl -sf "http://127.0.0.1:$PORT/status" >"$work/status.json" 2>/dev/null &&
	[ "$(jq '[(.containers // [])[] | select(.lines >= 3)] | length' "$work/status.json")" -ge "$N" ]; do
	kill -0 "$BPID" || { cat "$work/berth.err"; exit 1; }
	sleep 0.2
done
t1=$(date +%s.%N)
d1=$(cpu "$DPID")
echo "all $N containers attached and read $(echo "$t1 - $t0" | bc) s after berth started; dockerd CPU meanwhile $(echo "scale=2; ($d1 - $d0) / $HZ" | bc) s"

sleep "$WARM"
reqs() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^berth_deadline_expiries_total\{kind="idle"/ {s+=$2} END {print s+0}'; }
b0=$(cpu "$BPID") d0=$(cpu "$DPID") r0=$(reqs)
sleep "$WINDOW"
b1=$(cpu "$BPID") d1=$(cpu "$DPID") r1=$(reqs)
curl -sf "http://127.0.0.1:$PORT/status" >"$work/status.json"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$BPID/status")
echo "over ${WINDOW}s of silence after ${WARM}s:"
echo "  berth CPU:   $(echo "scale=2; 100 * ($b1 - $b0) / $HZ / $WINDOW" | bc)% of a core"
echo "  dockerd CPU: $(echo "scale=2; 100 * ($d1 - $d0) / $HZ / $WINDOW" | bc)% of a core"
echo "  re-attaches: $((r1 - r0)) ($(echo "scale=2; ($r1 - $r0) / $WINDOW" | bc)/s)"
echo "  berth RSS:   $((rss / 1024)) MiB; goroutines $(jq .goroutines "$work/status.json"); streams open $(jq .streams_open "$work/status.json")"
