//! Segments that are not what they claim: garbage magic, another kind,
//! another layout version or layout hash, truncated files, a file copied
//! under another name. Another process opening them gets an error naming
//! both sides, never a panic; a live segment corrupted in place is refused
//! until repaired.

mod common;

use common::{child_node, read_parent_line, report, ChildProc, TestNs};
use shmex::{layout_hash, list_exchanges, Limits, Pattern, LAYOUT_VERSION};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "opener" => opener(),
        other => panic!("unknown role {other}"),
    }
}

/// For each line of comma-separated exchange names from the parent, opens
/// each and reports the outcome (Debug and Display of the error), then
/// "done".
fn opener() {
    let node = child_node("opener");
    while let Some(line) = read_parent_line() {
        for name in line.split(',') {
            match node.open_exchange(name) {
                Ok(ex) => {
                    report(format!("ok {name} {}", ex.pattern()));
                }
                Err(e) => {
                    report(format!("debug {name} {e:?}"));
                    report(format!("display {name} {e}"));
                }
            }
        }
        report("done");
    }
}

/// The reported Debug and Display of opening `name`, or "Ok".
fn outcome(lines: &[String], name: &str) -> (String, String) {
    let find = |key: &str| {
        lines.iter().find_map(|l| {
            l.strip_prefix(&format!("{key} {name} "))
                .map(str::to_string)
        })
    };
    match (find("debug"), find("display"), find("ok")) {
        (Some(d), Some(s), None) => (d, s),
        (None, None, Some(p)) => ("Ok".into(), p),
        _ => panic!("no single outcome for {name}: {lines:?}"),
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    let f = opts.open(path).expect("create corrupted copy");
    f.write_all_at(bytes, 0).expect("write corrupted copy");
}

/// Header fields (little-endian): magic u64 @0, kind u32 @8, version u32 @12,
/// layout hash u64 @16, total size u64 @24, ready u32 @32.
const KIND_AT: usize = 8;
const VERSION_AT: u64 = 12;
const HASH_AT: usize = 16;

#[test]
fn corrupted_headers_are_refused_with_both_sides_named() {
    let ns = TestNs::new("corrupt");
    let node = ns.node("parent");
    let limits = Limits::default()
        .chunk_size(64)
        .chunk_count(4)
        .queue_depth(4)
        .max_ports(4);
    let ex = node
        .create_exchange("good", Pattern::PublishSubscribe, limits)
        .expect("create");
    let good_path = ns.exchange_path("good");
    let good = std::fs::read(&good_path).expect("read segment");
    assert_eq!(
        good.len(),
        limits.segment_size(Pattern::PublishSubscribe).unwrap()
    );

    // Corrupted copies, each under its own exchange name.
    let garbage = *b"GARBAGE!";
    let bad_version: u32 = 0xDEAD;
    let bad_hash: u64 = layout_hash() ^ 0x0123_4567_89AB_CDEF;
    let half = good.len() / 2;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = good.clone();
    b[..8].copy_from_slice(&garbage);
    cases.push(("bad-magic", b));
    let mut b = good.clone();
    b[KIND_AT..KIND_AT + 4].copy_from_slice(&1u32.to_le_bytes()); // the registry kind
    cases.push(("bad-kind", b));
    let mut b = good.clone();
    b[VERSION_AT as usize..VERSION_AT as usize + 4].copy_from_slice(&bad_version.to_le_bytes());
    cases.push(("bad-version", b));
    let mut b = good.clone();
    b[HASH_AT..HASH_AT + 8].copy_from_slice(&bad_hash.to_le_bytes());
    cases.push(("bad-hash", b));
    cases.push(("truncated", good[..half].to_vec()));
    cases.push(("tiny", good[..20].to_vec()));
    cases.push(("renamed", good.clone()));
    for (name, bytes) in &cases {
        write_file(&ns.exchange_path(name), bytes);
    }

    // Inspection without joining: the intact ones listed, every corrupted
    // one an error naming its file ("tiny" looks like a segment still being
    // created: skipped or an error, never listed as an exchange).
    let listed = list_exchanges(&ns.namespace());
    let ok: Vec<String> = listed
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|i| i.name.clone()))
        .collect();
    // "renamed" is intact apart from its file name; only opening checks that.
    assert_eq!(ok, ["good", "renamed"]);
    let errors: Vec<String> = listed
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    for name in [
        "bad-hash",
        "bad-kind",
        "bad-magic",
        "bad-version",
        "truncated",
    ] {
        let path = ns.exchange_path(name).display().to_string();
        assert_eq!(
            errors.iter().filter(|e| e.starts_with(&path)).count(),
            1,
            "listing of {name}: {errors:?}"
        );
    }
    assert!(errors.len() <= 6, "{errors:?}");

    // Another process opens each of them.
    let names: Vec<&str> = cases.iter().map(|(n, _)| *n).collect();
    let mut opener = ChildProc::spawn(&ns, "opener", &[]);
    opener.send(&format!("good,{}", names.join(",")));
    opener.wait_for("done");

    // Corrupt the live segment in place: refused; repaired: accepted again.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&good_path)
        .expect("open live segment");
    file.write_all_at(&bad_version.to_le_bytes(), VERSION_AT)
        .expect("corrupt");
    opener.send("good");
    opener.wait_for("done");
    file.write_all_at(&LAYOUT_VERSION.to_le_bytes(), VERSION_AT)
        .expect("repair");
    opener.send("good");
    opener.wait_for("done");
    let report = opener.finish();

    let path = |name: &str| ns.exchange_path(name).display().to_string();
    let goods: Vec<String> = report.all("ok good");
    assert_eq!(
        goods,
        ["publish-subscribe", "publish-subscribe"],
        "the intact segment opens"
    );
    let live_refusal = report
        .all("display good")
        .into_iter()
        .next()
        .expect("in-place corruption refused");
    assert_eq!(
        live_refusal,
        format!(
            "{}: layout version {bad_version}, this library speaks version {LAYOUT_VERSION}",
            path("good")
        )
    );

    let lines = &report.lines;
    let (debug, display) = outcome(lines, "bad-magic");
    assert!(debug.starts_with("Segment(NotShmex {"), "{debug}");
    assert_eq!(
        display,
        format!(
            "{} is not a shmex exchange segment (magic/kind {:#x})",
            path("bad-magic"),
            u64::from_le_bytes(garbage)
        )
    );
    let (debug, display) = outcome(lines, "bad-kind");
    assert!(debug.starts_with("Segment(NotShmex {"), "{debug}");
    assert_eq!(
        display,
        format!(
            "{} is not a shmex exchange segment (magic/kind 0x1)",
            path("bad-kind")
        )
    );
    let (debug, display) = outcome(lines, "bad-version");
    assert!(debug.starts_with("Segment(VersionMismatch {"), "{debug}");
    assert!(
        debug.contains(&format!("ours: {LAYOUT_VERSION}, theirs: {bad_version}")),
        "{debug}"
    );
    assert_eq!(
        display,
        format!(
            "{}: layout version {bad_version}, this library speaks version {LAYOUT_VERSION}",
            path("bad-version")
        )
    );
    let (debug, display) = outcome(lines, "bad-hash");
    assert!(debug.starts_with("Segment(LayoutMismatch {"), "{debug}");
    assert_eq!(
        display,
        format!(
            "{}: layout hash {bad_hash:#018x}, this library's is {:#018x}",
            path("bad-hash"),
            layout_hash()
        )
    );
    let (debug, display) = outcome(lines, "truncated");
    assert!(debug.starts_with("Segment(SizeMismatch {"), "{debug}");
    assert_eq!(
        display,
        format!(
            "{}: header size vs file size: expected {half}, found {}",
            path("truncated"),
            good.len()
        )
    );
    // Shorter than a segment header: indistinguishable from a creator that
    // died before writing one, so it is treated as absent (and removed).
    let (debug, _) = outcome(lines, "tiny");
    assert_eq!(debug, r#"NotFound { name: "tiny" }"#);
    assert!(!ns.exchange_path("tiny").exists());
    let (debug, display) = outcome(lines, "renamed");
    assert!(debug.starts_with("Segment(Corrupt {"), "{debug}");
    assert_eq!(
        display,
        format!(
            "{}: corrupt: header names exchange \"good\"",
            path("renamed")
        )
    );

    // Refused segments are left as they were, for inspection.
    for (name, bytes) in &cases {
        if *name != "tiny" {
            assert_eq!(&std::fs::read(ns.exchange_path(name)).unwrap(), bytes);
        }
    }
    for (name, _) in &cases {
        let _ = std::fs::remove_file(ns.exchange_path(name));
    }
    drop((file, ex, node));
    ns.assert_clean();
}
