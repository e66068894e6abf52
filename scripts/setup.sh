# Shared by scripts/dev and scripts/test (sourced, not run): makes sure what the build and the
# tests need is on this machine. It installs what is missing where it can (as root, or with
# sudo) and otherwise prints the one command that would, then stops.
#
# Debian/Ubuntu package names; on another system the message names what to install.

set -euo pipefail

# The Debian packages in "$@" that are not installed.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# Installs the Debian packages in "$@" that are missing, or says how.
need_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: this needs ${missing[*]} (Debian package names); install them, then run this again" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "setup: missing ${missing[*]}; run this, then run this script again:" >&2
      echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), then run this again" >&2
    exit 1
  fi
}

# clang and libclang-dev: bindgen generates RocksDB's bindings at build time.
need_build_tools() {
  need_rust
  need_packages clang libclang-dev
}

# What the tests use as independent verifiers: promtool checks /metrics, a real sshd and
# ssh-keygen check threshold-signed certificates, PyJWT checks threshold-signed JWTs, and
# libfaketime gives one node a wrong clock; and cargo-nextest runs them.
need_test_tools() {
  need_build_tools
  need_packages prometheus openssh-server openssh-client python3-pip faketime
  if ! python3 -c "import jwt, cryptography" >/dev/null 2>&1; then
    echo "setup: installing PyJWT" >&2
    python3 -m pip install -q pyjwt cryptography 2>/dev/null \
      || python3 -m pip install -q --break-system-packages pyjwt cryptography
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
}
