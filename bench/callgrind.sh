#!/usr/bin/env bash
# Instruction counts (valgrind's callgrind), stable where wall-clock time is not:
#  - engine cost per message, collected inside the measured functions only
#    (`qmp-bench instructions MESSAGE MEASURE N`), as a ratio to the RawValue floor;
#  - client-side instructions per round trip against `qmp-bench serve` (another process),
#    from the difference between two runs of different lengths (setup cancels out), as a
#    ratio to the hand-written floor; every adapter's client, and with QMP_BENCH_PEERS=1
#    (a build with the `qapi` feature) the other Rust clients. System calls are not counted
#    here: `qmp-bench syscalls` counts them.
#
#   bash bench/callgrind.sh          # from the workspace root
set -euo pipefail
cd "$(dirname "$0")/.."
features=
clients="floor floor-epoll tokio-floor tokio-floor-task async-io-floor async-io-floor-spawned floor-validating blocking async async-concurrent async-smol-spawn tokio tokio-concurrent tokio-mt tokio-spawned"
if [ "${QMP_BENCH_PEERS:-}" = 1 ]; then
    features=--features=qapi
    clients="$clients qapi qapi-tokio qapi-tokio-concurrent qmp-crate qmp-crate-concurrent"
fi
cargo build -j 1 --release -p qmp-bench $features
bin=$PWD/target/release/qmp-bench
out=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

# Collected instructions of one run.
collected() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$@" 2>&1 >/dev/null |
        awk '/Collected :/ { print $4 }'
}

echo "| message | measure | instructions/message | ratio to RawValue |"
echo "|---|---|---:|---:|"
for message in empty-reply small-reply event schema 10mb-reply; do
    case $message in
        empty-reply | small-reply | event) n=2000 ;;
        schema) n=20 ;;
        *) n=2 ;;
    esac
    floor=
    for measure in raw-value value whole 4k-chunks byte-by-byte; do
        total=$(collected --collect-atstart=no --toggle-collect='*measured_*' \
            "$bin" instructions "$message" "$measure" "$n")
        per=$((total / n))
        floor=${floor:-$per}
        awk -v m="$message" -v s="$measure" -v p="$per" -v f="$floor" \
            'BEGIN { printf "| %s | %s | %.0f | %.2f× |\n", m, s, p, p / f }'
    done
done

"$bin" serve "$out/fake.sock" &
server=$!
for _ in $(seq 200); do
    [ -S "$out/fake.sock" ] && break
    sleep 0.05
done
echo
echo "| client | instructions/round trip (client process, user space) | ratio to the floor |"
echo "|---|---:|---:|"
floor=
for client in $clients; do
    short=$(collected "$bin" client "$client" "$out/fake.sock" 200)
    long=$(collected "$bin" client "$client" "$out/fake.sock" 1200)
    per=$(((long - short) / 1000))
    floor=${floor:-$per}
    awk -v c="$client" -v p="$per" -v f="$floor" \
        'BEGIN { printf "| %s | %.0f | %.2f× |\n", c, p, p / f }'
done
