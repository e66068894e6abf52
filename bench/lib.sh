# Shared by the bench/ scripts (sourced, run from the repository root): the tessera and
# tessera-bench binaries built for $PROFILE, and a `tessera dev` cluster started in the background
# and ready for load.

# Builds tessera and tessera-bench (release unless PROFILE=dev: the release build is what is
# deployed) and sets T and B. TESSERA_BIN=path uses that node binary as it is instead (to compare
# two builds, A/B); TESSERA_BENCH_BIN likewise for the load generator.
build_tessera() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  local profile=debug flag=()
  if [[ ${PROFILE:-release} == release ]]; then
    profile=release flag=(--release)
  fi
  if [[ -z ${TESSERA_BIN:-} || -z ${TESSERA_BENCH_BIN:-} ]]; then
    cargo build "${flag[@]}" --bin tessera --bin tessera-bench >/dev/null
  fi
  T=${TESSERA_BIN:-$CARGO_TARGET_DIR/$profile/tessera}
  B=${TESSERA_BENCH_BIN:-$CARGO_TARGET_DIR/$profile/tessera-bench}
}

# start_dev NODES REGIONS BASE-PORT DIR LOG: starts the cluster, sets DEV to its pid, waits
# until it is up, then sources its env.sh and points TESSERA_ADDR at the Raft leader.
start_dev() {
  local n=$1 regions=$2 port=$3 dir=$4 log=$5
  rm -rf "$dir"
  "$T" dev --nodes "$n" --regions "$regions" --dir "$dir" --base-port "$port" >"$log" 2>&1 &
  DEV=$!
  for _ in $(seq 1 120); do
    [[ -f $dir/env.sh ]] && grep -q "Ctrl-C" "$log" && break
    sleep 0.5
  done
  # shellcheck disable=SC1091
  source "$dir/env.sh"
  TESSERA_ADDR=$("$T" status --format json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next(n["address"] for n in s["nodes"] if n["id"] == s["leader"]))')
  export TESSERA_ADDR
}
