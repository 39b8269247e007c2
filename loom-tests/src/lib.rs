//! Loom models of shmex-core live in `tests/`; this crate has no code of its own.
