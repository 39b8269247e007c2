//! Command-line surface: help, usage errors and their exit statuses.

use std::process::{Command, Output};

fn shmex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(args)
        .output()
        .expect("run shmex")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_goes_to_stdout() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = shmex(args);
        assert!(out.status.success(), "{args:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        assert!(stdout.contains("shmex demo") && stdout.contains("shmex ls"));
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn command_help() {
    for (args, want) in [
        (&["demo", "--help"][..], "publish-subscribe"),
        (&["help", "demo"], "fan-in"),
        (&["ls", "--help"], "--json"),
        (&["help", "ls"], "--root"),
    ] {
        let out = shmex(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains(want), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2_with_usage_on_stderr() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["help", "frobnicate"],
        &["ls", "--bogus"],
        &["ls", "--json=yes"],
        &["ls", "--namespace"],
        &["ls", "--namespace", "../etc"],
        &["demo", "--requests", "zero"],
        &["demo", "stray"],
    ] {
        let out = shmex(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(text(&out.stderr).contains("Usage"), "{args:?}");
    }
}
