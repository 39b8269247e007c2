//! Records which shmex sources the benchmarks are built against: the git
//! commit of the workspace and whether `core/` or `ipc/` differ from it.

use std::path::Path;
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = Path::new(&manifest)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    for p in [
        "core/src",
        "ipc/src",
        ".git/HEAD",
        ".git/refs/heads",
        ".git/index",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let commit = match git(&root, &["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&root, &["status", "--porcelain", "--", "core", "ipc"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=SHMEX_BENCH_SOURCE={commit}");
}
