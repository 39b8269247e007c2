//! `shmex soak` with a small count: every figure 0, nothing left behind.
//! (The full run is `cargo run --release -p shmex-tools -- soak --kills 1000`.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn soak_twenty_kills_reports_zeros_and_leaves_nothing() {
    let ns = format!("soak-test-{}", std::process::id());
    let root = std::env::var_os("SHMEX_ROOT").unwrap_or_else(|| "/dev/shm".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["soak", "--kills", "20", "--json", "--namespace", &ns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmex soak");
    // Hang protection only.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("shmex soak still running after 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed: {stdout}\n{stderr}");
    let line = stdout.trim();
    for figure in [
        "chunks_leaked",
        "acked_tasks_lost",
        "tasks_acked_twice",
        "tasks_delivered_to_no_one",
        "survivors_blocked",
        "messages_lost",
        "survivor_errors",
        "victim_failures",
        "files_left",
    ] {
        assert!(
            line.contains(&format!("\"{figure}\":0,")),
            "{figure} is not 0: {line}\n{stderr}"
        );
    }
    assert!(line.contains("\"kills\":20,"), "{line}");
    assert!(line.ends_with("\"ok\":true}"), "{line}");
    let left: Vec<_> = std::fs::read_dir(&root)
        .expect("read root")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("shmex.{ns}."))
        })
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
