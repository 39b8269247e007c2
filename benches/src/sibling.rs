//! Builds the workspace's other artefacts the running benchmark needs (the
//! `bench-peer` binary, the C library), with the same profile and into the
//! same target folder as the running binary, so that a fresh clone's first
//! `cargo run --release -p shmex-benches --bin compare` works on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>/<profile>` of the running binary (criterion benches live in
/// `.../deps`).
pub fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path unknown: {e}"))?;
    let mut dir = exe.parent().ok_or("own path has no folder")?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The workspace the running binary was built from.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Runs `cargo build --quiet ARGS` on the manifest `manifest` with the
/// running binary's profile and target folder; cargo rebuilds only what
/// changed. `expected` is the artefact the build must leave: when cargo is
/// not on the PATH, an artefact built before is used as it is.
pub fn cargo_build(manifest: &Path, args: &[&str], expected: &Path) -> Result<(), String> {
    let profile_dir = profile_dir()?;
    let target_dir = profile_dir
        .parent()
        .ok_or("no target folder above the binary")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("profile folder without a name")?
        .to_string();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--quiet"])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let what = format!("cargo build {}", args.join(" "));
    match build.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "{what} failed ({}): {}",
                out.status,
                tail(&out.stderr)
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && expected.exists() => {}
        Err(e) => return Err(format!("cannot run {what}: {e}")),
    }
    if !expected.exists() {
        return Err(format!("{} missing after {what}", expected.display()));
    }
    Ok(())
}

/// The `bench-peer` executable: `SHMEX_BENCH_PEER` when set, else built
/// (when missing or stale) next to the running binary.
pub fn bench_peer() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SHMEX_BENCH_PEER") {
        return Ok(PathBuf::from(p));
    }
    let peer = profile_dir()?.join("bench-peer");
    cargo_build(
        &workspace_dir().join("benches/Cargo.toml"),
        &["-p", "shmex-benches", "--bin", "bench-peer"],
        &peer,
    )?;
    Ok(peer)
}

/// Last lines of a tool's output, on one line, for a note.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
