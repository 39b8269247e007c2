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
        for command in ["demo", "ls", "sub", "pub", "serve", "call"] {
            assert!(stdout.contains(&format!("shmex {command} ")), "{command}");
        }
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
        (&["sub", "--help"], "PATTERN"),
        (&["help", "sub"], "--timeout-ms"),
        (&["pub", "-h"], "--wait-subscribers"),
        (&["help", "pub"], "published N, delivered D"),
        (&["serve", "--help"], "--prefix"),
        (&["help", "serve"], "--chunk-size"),
        (&["call", "x", "--help"], "--wait-server-ms"),
        (&["help", "call"], "--queue-depth"),
    ] {
        let out = shmex(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains(want), "{args:?}");
    }
}

#[test]
fn non_utf8_arguments_are_usage_errors() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["pub", "ex", "k"])
        .arg(std::ffi::OsStr::from_bytes(b"w\xffx"))
        .output()
        .expect("run shmex");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not valid UTF-8"));
}

/// Every case is refused while parsing, before joining any namespace.
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
        &["sub"],
        &["sub", "ex"],
        &["sub", "ex", "#", "extra"],
        &["sub", "ex", "#", "--count", "-1"],
        &["sub", "ex", "#", "--hex=1"],
        &["sub", "ex", "a.#.#x", "--max-ports", "0"],
        &["pub", "ex", "k"],
        &["pub", "ex", "a.*", "m"],
        &["pub", "ex", "k", "m", "--wait-ms", "10"],
        &["pub", "ex", "k", "m", "--wait-subscribers", "16"],
        &["pub", "ex", "k", "m", "--queue-depth", "3"],
        &["pub", "ex", "k", "-m"],
        &["pub", "ex", "k", "toolong", "--chunk-size", "4"],
        &["serve"],
        &["serve", "ex", "--prefix"],
        &["serve", "ex", "--prefix", "12345", "--chunk-size", "4"],
        &["call", "ex"],
        &["call", "ex", "m", "--timeout-ms", "0"],
        &["call", "ex", "m", "--tag", "x"],
        &["call", "ex", "m", "--namespace", "a/b"],
    ] {
        let out = shmex(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(text(&out.stderr).contains("Usage"), "{args:?}");
    }
}
