//! `shmex demo` end to end: real child processes, all three patterns, their
//! figures in the output, and nothing left in /dev/shm.

use shmex::Namespace;
use std::path::PathBuf;
use std::process::Command;

fn shm_namespace(name: &str) -> Namespace {
    Namespace {
        root: PathBuf::from("/dev/shm"),
        name: name.to_string(),
    }
}

/// Files under /dev/shm of namespace `name`, found without the library.
fn files_of(name: &str) -> Vec<String> {
    let prefix = format!("shmex.{name}.");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn demo_runs_all_patterns_and_cleans_up() {
    let ns = format!("tdemo-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["demo", "--namespace", &ns])
        .env_remove("SHMEX_ROOT")
        .output()
        .expect("run shmex demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let has_line = |parts: &[&str]| stdout.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    // Every role speaks, prefixed with its name.
    for parts in [
        &["[server] got request 1: ping"][..],
        &["[client] got response 1: pong 1"],
        &["[publisher] published sensors.temp", "3 subscribers"],
        &["[sub sensors.*] got sensors.humidity"],
        &["[sub sensors.#] got sensors: all sensors ok"],
        &["[sub #.temp] got engine.temp: 88 C"],
        &["[consumer] producer-1: 20000 messages, all in order"],
        &["[consumer] producer-3: 20000 messages, all in order"],
        &["[producer-2] sent 20000 messages and done"],
    ] {
        assert!(has_line(parts), "no line with {parts:?} in:\n{stdout}");
    }
    // The three figures, each in a child's result line and in the summary.
    for parts in [
        &["request-response: round trip median", "requests"][..],
        &["publish-subscribe: round trip median", "ping-pongs"],
        &["fan-in: 60000 messages from 3 producers", "msg/s"],
    ] {
        let count = stdout
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count();
        assert_eq!(count, 2, "{parts:?} in:\n{stdout}");
    }
    assert!(stdout.contains("[demo] all patterns ok"), "{stdout}");
    assert!(shm_namespace(&ns).segment_files().is_empty());
    assert_eq!(files_of(&ns), Vec::<String>::new());
}

#[test]
fn demo_refuses_a_namespace_in_use() {
    let ns = format!("tdemo-busy-{}", std::process::id());
    {
        let _node = shmex::Node::builder("squatter")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
            .args(["demo", "--namespace", &ns])
            .env_remove("SHMEX_ROOT")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    }
    assert_eq!(files_of(&ns), Vec::<String>::new());
}
