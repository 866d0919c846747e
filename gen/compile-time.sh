#!/usr/bin/env bash
# Compile time of qmp-types (all modules, one module, the guest agent) against qapi-qmp's,
# measured in the same run: each a clean build of that crate alone (`cargo clean -p`), its
# dependencies already built, on one core (`taskset -c 0`, `-j 1`). Prints a Markdown table.
#
#   gen/compile-time.sh [ROUNDS]      (default 3 rounds; the median is reported)
#
# The builds run in a scratch project that depends on both crates (with the workspace's
# Cargo.lock, so the same versions): `cargo build -p qapi-qmp` inside the workspace, where
# qapi-qmp is only a dev-dependency, makes cargo panic.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds=${1:-3}
scratch="$root/target/compile-time"
mkdir -p "$scratch/src"
cat >"$scratch/Cargo.toml" <<TOML
[package]
name = "compile-time"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
qapi-qmp = "0.15"
qmp-types = { path = "$root/types" }

[features]
full = ["qmp-types/full"]
machine = ["qmp-types/machine"]
block-core = ["qmp-types/block-core"]
qga = ["qmp-types/qga"]
TOML
echo >"$scratch/src/lib.rs"
cp "$root/Cargo.lock" "$scratch/Cargo.lock"
cd "$scratch"
export CARGO_TARGET_DIR="$scratch/target"
cargo_() { taskset -c 0 cargo "$@" -j 1 --quiet; }

configs=(
    "qapi-qmp 0.15 (crates.io)|qapi-qmp|-p qapi-qmp"
    "qmp-types --features full|qmp-types|--features full"
    "qmp-types --features machine|qmp-types|--features machine"
    "qmp-types --features block-core|qmp-types|--features block-core"
    "qmp-types --features qga|qmp-types|--features qga"
)
# Dependencies first, so that only the crate itself is timed.
for c in "${configs[@]}"; do
    # shellcheck disable=SC2086
    cargo_ build ${c##*|}
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A result
for c in "${configs[@]}"; do
    name=${c%%|*} args=${c##*|} times=""
    pkg=${c#*|}
    pkg=${pkg%%|*}
    for _ in $(seq "$rounds"); do
        cargo clean --quiet -p "$pkg"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        cargo_ build $args
        end=$(date +%s.%N)
        times+="$(echo "$end - $start" | bc)"$'\n'
    done
    result[$name]=$(printf '%s' "$times" | median)
done
base=${result["qapi-qmp 0.15 (crates.io)"]}
echo "| build (clean, that crate only, 1 core) | seconds (median of $rounds) | vs qapi-qmp |"
echo "|---|---:|---:|"
for c in "${configs[@]}"; do
    name=${c%%|*}
    printf '| `%s` | %.1f | %.2fx |\n' "$name" "${result[$name]}" "$(echo "${result[$name]} / $base" | bc -l)"
done
