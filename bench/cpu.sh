#!/usr/bin/env bash
# CPU time per KV operation on a local 3-node cluster: user + system time of every node and of
# the load generator, summed over the phase, divided by the operations done. On a shared 2-core
# machine throughput moves a lot from run to run with the host's load; the CPU an operation costs
# moves much less, so this is the figure to compare two builds by (`bench/bench.sh` gives the
# rates and latencies). LEADER_MS/OP is the leader's part alone (the load goes to it). Each phase
# runs alone (`tessera-bench kv --ops ...`), bounded in time; a read phase also pays for writing
# its 20 secrets first (about 1% of the phase's CPU).
#
#   bench/cpu.sh                        # release build, writes and reads at 1 and 32, 10 s each
#   DUR=8 PHASES="write:32" PROFILE=dev bench/cpu.sh
#   TESSERA_BIN=/tmp/tessera-a bench/cpu.sh   # a given binary as it is (A/B of two builds)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
PHASES=${PHASES:-write:1 read:1 write:32 read:32}
NODES=${NODES:-3}
PORT=${PORT:-7800}
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_tessera
dir=$(mktemp -d /tmp/tessera-cpu.XXXXXX)
DEV=
trap '[[ -n $DEV ]] && { kill -TERM $DEV; wait $DEV; }; rm -rf "$dir"' EXIT
start_dev "$NODES" a,b,c "$PORT" "$dir/cluster" "$dir/dev.log"
nodes=$(pgrep -P "$DEV" | tr '\n' ' ')
# The leader's process (the load goes to it): its share shows what one machine of a real
# deployment, where each node has its own cores, would spend per operation.
leader_toml=$(grep -l "api_addr = \"$TESSERA_ADDR\"" "$dir"/cluster/node*.toml)
leader=$(pgrep -f -- "--config $leader_toml\$")

# CPU seconds (user + system) of the given processes and their finished children.
cpu() {
  python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
print(total / tick)
PY
}

printf '%-6s %5s %8s %8s %10s %10s %11s\n' OP CONC OPS/S P50_MS CPU_MS/OP NODES_MS/OP LEADER_MS/OP
for phase in $PHASES; do
  op=${phase%%:*} conc=${phase##*:}
  before=$(cpu $nodes)
  lead_before=$(cpu $leader)
  # The load generator's own CPU comes from its rusage when it exits.
  load=$(python3 - "$B" "$op" "$conc" "$DUR" "$dir/out.json" <<'PY'
import os, subprocess, sys
t, op, conc, dur, out = sys.argv[1:]
with open(out, "wb") as f:
    p = subprocess.Popen([t, "kv", "--ops", op, "--concurrency", conc,
                          "--duration", dur, "--keys", "20", "--format", "json"],
                         stdout=f, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
if status != 0:
    sys.exit("tessera-bench kv failed")
print(ru.ru_utime + ru.ru_stime)
PY
)
  after=$(cpu $nodes)
  lead_after=$(cpu $leader)
  python3 - "$dir/out.json" "$before" "$after" "$load" "$lead_before" "$lead_after" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))[-1]
nodes = float(sys.argv[3]) - float(sys.argv[2])
load = float(sys.argv[4])
lead = float(sys.argv[6]) - float(sys.argv[5])
ops = max(r["ops"], 1)
print(f"{r['op'][3:]:<6} {r['concurrency']:>5} {r['ops_per_sec']:>8.0f} {r['p50_ms']:>8.2f}"
      f" {(nodes + load) * 1000 / ops:>10.3f} {nodes * 1000 / ops:>10.3f}"
      f" {lead * 1000 / ops:>11.3f}")
PY
done
