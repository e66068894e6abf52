#!/usr/bin/env bash
# Side-by-side benchmark, in one run on this machine: Tessera KV write/read and ping (one audited
# call that does no work) on 3-node and 5-node clusters at concurrency 1 and 32, threshold
# signing (raw and SSH certificates, 3-of-5, concurrency 1 and 16), then `tessera-bench floor`
# (the least one read costs on this machine), and OpenBao's KV v2 and single-key SSH signing
# baseline from ../shared/bench/openbao.
# Every phase is bounded in time (DUR seconds) and count; all traffic stays on 127.0.0.1.
#
#   bench/bench.sh                 # needs ../shared/bench/openbao/setup.sh to have run for OpenBao
#   DUR=10 SKIP_OPENBAO=1 bench/bench.sh
#
# Tessera is measured as it is deployed: a release build (the first one compiles RocksDB for
# that profile, about 15 minutes here). PROFILE=dev measures the test build instead. The load
# goes to the Raft leader, as OpenBao's figures below are its leader phase.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
OUT=${OUT:-/tmp/tessera-bench}
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_tessera

run_tessera() {  # nodes regions base-port
  local n=$1 regions=$2 port=$3
  ( start_dev "$n" "$regions" "$port" "$OUT/cluster-$n" "$OUT/dev-$n.log"
    trap 'kill -TERM $DEV; wait $DEV || true' EXIT
    echo "== Tessera $n nodes ($regions), load to the leader $TESSERA_ADDR, $(uptime)"
    "$B" kv --duration "$DUR" --concurrency 1,32 --ops write,read,ping --format json >"$OUT/tessera-$n.json"
    if [[ $n == 5 ]]; then
      "$B" sign --duration "$DUR" --concurrency 1,16 --format json >"$OUT/tessera-sign-$n.json"
    fi )
}

run_tessera 3 a,b,c 7600
run_tessera 5 eu,us,ap 7700
# The floor of one read at concurrency 1 (what it cannot avoid here), for the threshold of each
# cluster above (2 of 3, 3 of 5), with the audit logs on the disk that held their data.
for t in 2 3; do
  "$B" floor --threshold "$t" --dir "$OUT" --format json >"$OUT/floor-t$t.json"
done

if [[ -z ${SKIP_OPENBAO:-} ]]; then
  OB=../shared/bench/openbao
  echo "== OpenBao 3 nodes, $(uptime)"
  (cd "$OB" && ./down.sh && ./up.sh && DUR="${DUR}s" ./bench.sh; ./down.sh) >"$OUT/openbao.log" 2>&1 || echo "OpenBao run failed: see $OUT/openbao.log"
fi

python3 - "$OUT" "${OPENBAO_PROD:-}" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
openbao = "OpenBao 3 nodes (TLS, file audit)" if sys.argv[2] else "OpenBao 3 nodes (no TLS, no audit)"
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
            print(f"| {openbao} | {op} | {c} | {j['summary']['requestsPerSec']:.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} |")
print()
for t in (2, 3):
    f = out / f"floor-t{t}.json"
    if f.exists():
        j = json.loads(f.read_text())
        parts = ", ".join(f"{p['piece']} {p['p50_us']:.0f}" for p in j["pieces"] if p["in_floor"])
        print(f"Floor of one read at t = {t}: {j['floor_us']:.0f} us ({parts}), so at most {j['max_reads_per_sec_at_1']:.0f} reads/s at concurrency 1")
PY
