#!/usr/bin/env bash
# Side by side on one fake QEMU socket: the Rust adapters, the hand-written floor, the Rust
# `qapi` crate (blocking and tokio) and `qmp` crate (tokio), and the Python reference client
# `qemu.qmp` 0.0.6 (installed here into a virtualenv of its own), in interleaved rounds. Extra
# arguments go to `qmp-bench compare` (`--quick` for fewer rounds). Once the virtualenv
# exists, `qmp-bench instant` and `qmp-bench all` take the Python client too.
#
#   bash bench/compare.sh            # from the workspace root
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${QMP_BENCH_VENV:-target/bench-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'qemu.qmp==0.0.6'

features=--features=qapi
if [ "${QMP_BENCH_NO_QAPI:-}" = 1 ]; then
    features=
fi
cargo build -j 1 --release -p qmp-bench $features
bin=target/release/qmp-bench

dir=$(mktemp -d)
"$bin" serve "$dir/fake.sock" &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
    [ -S "$dir/fake.sock" ] && break
    sleep 0.05
done

"$bin" compare "$dir/fake.sock" "$venv/bin/python" "$@"
