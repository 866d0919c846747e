#!/usr/bin/env bash
# Compile time of qmp-types (all modules, one module, the guest agent) against qapi-qmp's,
# measured in the same run: each a clean build of that crate alone (`cargo clean -p`), its
# dependencies already built, on one core (`taskset -c 0`, `-j 1`). Prints a Markdown table:
# the wall-clock time and the CPU time (user + system) of each build, medians over the rounds.
# Each round builds every configuration in turn, so that a change in the machine's load
# during the run weighs on all of them alike; on a shared core the wall-clock time also
# counts the other processes' turns, the CPU time does not.
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
declare -A wall cpu
TIMEFORMAT='%R %U %S'
for _ in $(seq "$rounds"); do
    for c in "${configs[@]}"; do
        name=${c%%|*} args=${c##*|}
        pkg=${c#*|}
        pkg=${pkg%%|*}
        cargo clean --quiet -p "$pkg"
        # shellcheck disable=SC2086
        { time cargo_ build $args 2>"$scratch/build.log"; } 2>"$scratch/time.txt" || {
            cat "$scratch/build.log" >&2
            exit 1
        }
        read -r real user sys <"$scratch/time.txt"
        wall[$name]+="$real"$'\n'
        cpu[$name]+="$(echo "$user + $sys" | bc)"$'\n'
    done
done
declare -A wall_median cpu_median
for c in "${configs[@]}"; do
    name=${c%%|*}
    wall_median[$name]=$(printf '%s' "${wall[$name]}" | median)
    cpu_median[$name]=$(printf '%s' "${cpu[$name]}" | median)
done
base="qapi-qmp 0.15 (crates.io)"
echo "| build (clean, that crate only, 1 core) | seconds (median of $rounds) | vs qapi-qmp | CPU seconds (median) | vs qapi-qmp |"
echo "|---|---:|---:|---:|---:|"
for c in "${configs[@]}"; do
    name=${c%%|*}
    printf '| `%s` | %.1f | %.2fx | %.1f | %.2fx |\n' "$name" \
        "${wall_median[$name]}" "$(echo "${wall_median[$name]} / ${wall_median[$base]}" | bc -l)" \
        "${cpu_median[$name]}" "$(echo "${cpu_median[$name]} / ${cpu_median[$base]}" | bc -l)"
done
