#!/usr/bin/env bash
# Runs every test of the workspace: the public API against its checked-in
# listing (`.ci/public-api`; `SHMEX_BLESS=1 python3 .ci/public-api` accepts a
# deliberate change), unit and cross-process integration tests (release
# build, shared with the demo and benchmarks), then the loom models in their
# own target dir, bounded so they finish in a few minutes.
set -euo pipefail
cd "$(dirname "$0")"
python3 .ci/public-api
cargo test --release --workspace
# Off by default, so tested on its own.
cargo test --release -p shmex --features serde --test serialized
cargo test --release -p shmex --features serde --doc serialized
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" \
    cargo test --release -p shmex-loom --target-dir target/loom
