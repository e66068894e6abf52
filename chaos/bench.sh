#!/usr/bin/env bash
# Side-by-side benchmark, in one run on this machine: Tessera KV write/read (3-node and 5-node
# clusters, concurrency 1 and 32) and threshold signing (raw and SSH certificates, 3-of-5,
# concurrency 1 and 16), and OpenBao's KV v2 and single-key SSH signing baseline from
# ../shared/bench/openbao.
# Every phase is bounded in time (DUR seconds) and count; all traffic stays on 127.0.0.1.
#
#   chaos/bench.sh                 # needs ../shared/bench/openbao/setup.sh to have run for OpenBao
#   DUR=10 SKIP_OPENBAO=1 chaos/bench.sh
#
# Tessera is measured as it is deployed: a release build (the first one compiles RocksDB for
# that profile, about 15 minutes here). PROFILE=dev measures the test build instead. The load
# goes to the Raft leader, as OpenBao's figures below are its leader phase.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
OUT=${OUT:-/tmp/tessera-bench}
mkdir -p "$OUT"
# shellcheck source=chaos/lib.sh
source chaos/lib.sh
build_tessera

run_tessera() {  # nodes regions base-port
  local n=$1 regions=$2 port=$3
  ( start_dev "$n" "$regions" "$port" "$OUT/cluster-$n" "$OUT/dev-$n.log"
    trap 'kill -TERM $DEV; wait $DEV || true' EXIT
    echo "== Tessera $n nodes ($regions), load to the leader $TESSERA_ADDR, $(uptime)"
    "$T" bench kv --duration "$DUR" --concurrency 1,32 --format json >"$OUT/tessera-$n.json"
    if [[ $n == 5 ]]; then
      "$T" bench sign --duration "$DUR" --concurrency 1,16 --format json >"$OUT/tessera-sign-$n.json"
    fi )
}

run_tessera 3 a,b,c 7600
run_tessera 5 eu,us,ap 7700

if [[ -z ${SKIP_OPENBAO:-} ]]; then
  OB=../shared/bench/openbao
  echo "== OpenBao 3 nodes, $(uptime)"
  (cd "$OB" && ./down.sh && ./up.sh && DUR="${DUR}s" ./bench.sh; ./down.sh) >"$OUT/openbao.log" 2>&1 || echo "OpenBao run failed: see $OUT/openbao.log"
fi

python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| system | op | concurrency | ops/s | p50 ms | p99 ms |")
print("| --- | --- | --- | --- | --- | --- |")
for n, name in ((3, "tessera-3"), (5, "tessera-5"), (5, "tessera-sign-5")):
    f = out / f"{name}.json"
    if f.exists():
        for r in json.loads(f.read_text()):
            print(f"| Tessera {n} nodes (mTLS) | {r['op']} | {r['concurrency']} | {r['ops_per_sec']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
res = pathlib.Path("/tmp/openbao-bench/results/bench")
for tag, op, concs in [("leader_kv_write", "kv_write", (1, 32)), ("leader_kv_read", "kv_read", (1, 32)), ("leader_ssh_sign", "ssh_sign", (1, 16))]:
    for c in concs:
        f = res / f"{tag}_c{c}.json"
        if f.exists():
            j = json.loads(f.read_text())
            p = j["latencyPercentilesSuccessful"]
            print(f"| OpenBao 3 nodes (no TLS) | {op} | {c} | {j['summary']['requestsPerSec']:.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} |")
PY
