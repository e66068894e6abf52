# Shared by the chaos/ scripts (sourced, run from the repository root): the tessera binary built
# for $PROFILE, and a `tessera dev` cluster started in the background and ready for load.

# Builds tessera (release unless PROFILE=dev: the release build is what is deployed) and sets T.
# TESSERA_BIN=path uses that binary as it is instead (to compare two builds, A/B).
build_tessera() {
  if [[ -n ${TESSERA_BIN:-} ]]; then
    T=$TESSERA_BIN
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  if [[ ${PROFILE:-release} == release ]]; then
    cargo build --release --bin tessera >/dev/null
    T="$CARGO_TARGET_DIR/release/tessera"
  else
    cargo build --bin tessera >/dev/null
    T="$CARGO_TARGET_DIR/debug/tessera"
  fi
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
