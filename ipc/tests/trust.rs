//! The trust boundary between users: each user's namespaces live in a
//! directory of their own (0700, checked on every open), sharing with
//! another user is an explicit share group (setgid 02770 directory, 0660
//! files), names follow one rule, nonsensical limits are refused, and a
//! truncated segment kills its mappers (the documented policy), not the
//! others.
//!
//! Tests that need a second user run a child of this test binary as uid and
//! gid 65534 through `setpriv` (or skip with a message when it is missing or
//! we are not root). Each test uses a root folder of its own and removes it.

use shmex::{Limits, Namespace, Node, NodeError, OpenError, Pattern, SegmentError};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Hang protection only.
const TIMEOUT: Duration = Duration::from_secs(30);
const OTHER: u32 = 65534;

/// A root folder and namespace name of its own.
struct Root {
    root: PathBuf,
    name: String,
}

impl Root {
    fn new(what: &str, mode: u32) -> Root {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ttrust-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let root = PathBuf::from("/dev/shm").join(format!("shmex-test-{name}"));
        std::fs::create_dir_all(&root).expect("create root folder");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap();
        Root { root, name }
    }

    fn node(&self) -> Result<Node, NodeError> {
        Node::builder("n")
            .namespace(&self.name)
            .root(&self.root)
            .create()
    }

    fn namespace(&self) -> Namespace {
        Namespace::new(&self.root, &self.name)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The message of `e`, which must name `path` and contain `what`.
#[track_caller]
fn assert_refused(e: &dyn std::fmt::Display, path: &Path, what: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()) && msg.contains(what),
        "expected an error naming {} and saying {what:?}, got: {msg}",
        path.display()
    );
}

#[test]
fn per_user_directory_is_private_and_checked() {
    let r = Root::new("dir", 0o755);
    let dir = r.namespace().dir();
    assert_eq!(
        dir,
        r.root
            .join(format!("shmex-{}", nix::unistd::geteuid().as_raw()))
    );
    {
        let node = r.node().expect("join");
        let m = std::fs::symlink_metadata(&dir).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o700);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert!(r.namespace().registry_path().starts_with(&dir));
        let _x = node
            .create_exchange("x", Pattern::PublishSubscribe, Limits::default())
            .unwrap();
        let m = std::fs::metadata(r.namespace().exchange_path("x")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }
    // The last node removed the namespace's files; the directory stays.
    assert!(r.namespace().segment_files().is_empty());

    // Wrong mode.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = r.node().expect_err("a 0755 directory is refused");
    assert_refused(&e, &dir, "mode 0755, must be 0700");
    std::fs::remove_dir(&dir).unwrap();

    // A symbolic link to a directory of ours.
    let elsewhere = r.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let e = r.node().expect_err("a symlinked directory is refused");
    assert_refused(&e, &dir, "a symbolic link, not a directory");
    std::fs::remove_file(&dir).unwrap();

    // A regular file.
    std::fs::write(&dir, b"").unwrap();
    let e = r.node().expect_err("a file is refused");
    assert_refused(&e, &dir, "not a directory");
    std::fs::remove_file(&dir).unwrap();

    // Another user's directory.
    if is_root() {
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(OTHER)), None).unwrap();
        let e = r.node().expect_err("a foreign directory is refused");
        assert_refused(&e, &dir, "owned by uid 65534");
        std::fs::remove_dir(&dir).unwrap();
    } else {
        println!("skipping the foreign directory case: not root");
    }
    // Nothing left but the folders the test made.
    assert!(r.namespace().segment_files().is_empty());
}

#[test]
fn root_folder_is_checked() {
    let r = Root::new("root", 0o777);
    let e = r
        .node()
        .expect_err("a world-writable root without sticky bit");
    assert_refused(&e, &r.root, "writable by others without the sticky bit");
    std::fs::set_permissions(&r.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(r.node().expect("a sticky world-writable root is fine"));
    let link = r.root.with_extension("link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&r.root, &link).unwrap();
    let e = Node::builder("n")
        .namespace(&r.name)
        .root(&link)
        .create()
        .expect_err("a symlinked root is refused");
    std::fs::remove_file(&link).unwrap();
    assert_refused(&e, &link, "a symbolic link");
}

// ---------------------------------------------------------------------------
// A second user
// ---------------------------------------------------------------------------

/// A child of this test binary running as uid/gid 65534, or `None` (with a
/// message) when that cannot be arranged here.
fn spawn_other(role: &str, r: &Root, env: &[(&str, &str)]) -> Option<Other> {
    spawn_child(role, r, env, true)
}

/// A child of this test binary playing `role`, as uid 65534 when
/// `as_other` (else as ourselves).
fn spawn_child(role: &str, r: &Root, env: &[(&str, &str)], as_other: bool) -> Option<Other> {
    if !as_other {
        return Some(Other::start(
            Command::new(std::env::current_exe().unwrap()),
            role,
            r,
            env,
        ));
    }
    if !is_root() {
        println!("skipping: needs root to run a child as uid {OTHER}");
        return None;
    }
    let setpriv_ok = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !setpriv_ok {
        println!("skipping: setpriv is not available to run a child as uid {OTHER}");
        return None;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={OTHER}"),
        &format!("--regid={OTHER}"),
        "--clear-groups",
    ])
    .arg(&exe);
    Some(Other::start(cmd, role, r, env))
}

impl Other {
    fn start(mut cmd: Command, role: &str, r: &Root, env: &[(&str, &str)]) -> Other {
        cmd.args(["--ignored", "--exact", "child_entry", "--nocapture"])
            .env("SHMEX_TEST_ROLE", role)
            .env("SHMEX_TEST_ROOT", &r.root)
            .env("SHMEX_TEST_NS", &r.name)
            .env_remove("SHMEX_SHARE_GROUP")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn setpriv");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(l) = line.strip_prefix("@@") {
                    let _ = tx.send(l.to_string());
                }
            }
        });
        Other { child, lines }
    }
}

struct Other {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Other {
    /// The child's next report; kills it and fails at the timeout.
    fn next(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the uid {OTHER} child did not report within {TIMEOUT:?}");
            }
        }
    }

    /// Lets the child go (closes its stdin) and waits for its success.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let (tx, rx) = mpsc::channel();
        let mut child = self.child;
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(s)) => assert!(s.success(), "the uid {OTHER} child failed: {s}"),
            _ => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("the uid {OTHER} child did not exit within {TIMEOUT:?}");
            }
        }
    }
}

/// Entry point of the children; does nothing in a normal test run.
#[test]
#[ignore]
fn child_entry() {
    let Ok(role) = std::env::var("SHMEX_TEST_ROLE") else {
        return;
    };
    let root = std::env::var("SHMEX_TEST_ROOT").unwrap();
    let ns = std::env::var("SHMEX_TEST_NS").unwrap();
    let say = |s: &str| {
        println!("@@{s}");
        std::io::stdout().flush().unwrap();
    };
    let wait_parent = || {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    };
    // Joins as whatever the environment says (SHMEX_SHARE_GROUP or not).
    let node = match Node::builder("other").namespace(&ns).root(&root).create() {
        Ok(n) => n,
        Err(e) => {
            say(&format!("join-error {e}"));
            wait_parent();
            return;
        }
    };
    say(&format!(
        "joined {}",
        node.namespace().registry_path().display()
    ));
    match role.as_str() {
        "hold" => wait_parent(),
        "mapper" => {
            let x = node
                .create_exchange("x", Pattern::PublishSubscribe, Limits::default())
                .unwrap();
            let publisher = x.publisher().unwrap();
            let subscriber = x.subscriber("#", 1).unwrap();
            say("ready");
            wait_parent();
            // The parent truncated the segment: the next touch faults.
            for _ in 0..1000 {
                let _ = publisher.send("k", &[1u8; 1000]);
                while let Ok(Some(_)) = subscriber.try_receive() {}
            }
            say("survived");
        }
        "share" => {
            match node.open_exchange("x") {
                Ok(_) => say("opened x"),
                Err(e) => say(&format!("open-error {e}")),
            }
            let y = node.create_exchange("y", Pattern::PublishSubscribe, Limits::default());
            say(&format!(
                "created y {:?}",
                y.as_ref().map(|_| ()).map_err(|e| e.to_string())
            ));
            wait_parent();
            drop(y);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn another_user_cannot_squat_our_namespace() {
    let r = Root::new("squat", 0o1777);
    // uid 65534 joins "our" namespace name first, and stays.
    let Some(mut other) = spawn_other("hold", &r, &[]) else {
        return;
    };
    let line = other.next();
    let theirs = PathBuf::from(line.strip_prefix("joined ").expect(&line));
    // We join the same namespace name: our own directory, our own registry.
    let node = r.node().expect("join despite the other user");
    let ours = node.namespace().registry_path();
    assert_ne!(ours, theirs);
    assert_eq!(
        std::fs::metadata(&theirs).unwrap().uid(),
        OTHER,
        "the other user's registry"
    );

    // A file of that user's in our directory is refused: move their
    // registry into our directory under another namespace's name.
    let stolen = Namespace::new(&r.root, format!("{}-b", r.name)).registry_path();
    std::fs::rename(&theirs, &stolen).unwrap();
    let e = Node::builder("n")
        .namespace(format!("{}-b", r.name))
        .root(&r.root)
        .create()
        .expect_err("another user's registry is refused");
    assert!(
        matches!(
            &e,
            NodeError::Segment(SegmentError::ForeignOwner { owner, .. }) if *owner == OTHER
        ),
        "{e}"
    );
    std::fs::remove_file(&stolen).unwrap();
    other.finish();
    drop(node);
    assert!(r.namespace().segment_files().is_empty());
}

#[test]
fn share_group_admits_its_members() {
    let r = Root::new("share", 0o1777);
    if !is_root() {
        println!("skipping: needs root to share a group with uid {OTHER}");
        return;
    }
    let gid = OTHER.to_string();
    let node = Node::builder("n")
        .namespace(&r.name)
        .root(&r.root)
        .share_group(&gid)
        .create()
        .expect("join shared");
    let dir = node.namespace().dir();
    assert_eq!(dir, r.root.join(format!("shmex-g{OTHER}")));
    let m = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o2770, "setgid, rwx for the group");
    assert_eq!(m.gid(), OTHER);
    let _x = node
        .create_exchange("x", Pattern::PublishSubscribe, Limits::default())
        .unwrap();
    let xm = std::fs::metadata(node.namespace().exchange_path("x")).unwrap();
    assert_eq!((xm.mode() & 0o777, xm.gid()), (0o660, OTHER));

    // A member of the group joins, opens our exchange, creates one of its
    // own, which we open.
    let Some(mut other) = spawn_other("share", &r, &[("SHMEX_SHARE_GROUP", &gid)]) else {
        return;
    };
    assert!(other.next().starts_with("joined "));
    assert_eq!(other.next(), "opened x");
    assert_eq!(other.next(), "created y Ok(())");
    let ym = std::fs::metadata(node.namespace().exchange_path("y")).unwrap();
    assert_eq!(
        (ym.uid(), ym.gid(), ym.mode() & 0o777),
        (OTHER, OTHER, 0o660)
    );
    let y = node.open_exchange("y").expect("open the member's exchange");
    drop(y);

    // The same user without the share group stays in its private
    // directory: our namespace is not visible there.
    let Some(mut private) = spawn_other("share", &r, &[]) else {
        return;
    };
    assert!(private.next().starts_with("joined "));
    assert!(
        private.next().starts_with("open-error"),
        "a non-shared node sees the shared namespace"
    );
    private.next();
    private.finish();
    other.finish();
    drop(_x);
    drop(node);
    let mut other_ns = r.namespace();
    other_ns.share_group = Some(OTHER);
    assert!(other_ns.segment_files().is_empty());
}

// ---------------------------------------------------------------------------
// Names, environment, limits
// ---------------------------------------------------------------------------

#[test]
fn names_follow_one_rule() {
    let r = Root::new("names", 0o755);
    for good in [".hidden", "a.b", "x-_9", &"n".repeat(64)] {
        shmex::check_namespace_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        shmex::check_exchange_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
    let long = "n".repeat(65);
    for bad in [
        "", ".", "..", "a/b", "../x", "a\0b", "a b", "é", "a\nb", &long,
    ] {
        assert!(
            shmex::check_namespace_name(bad).is_err(),
            "namespace {bad:?}"
        );
        assert!(
            matches!(
                shmex::check_exchange_name(bad),
                Err(OpenError::InvalidName { .. })
            ),
            "exchange {bad:?}"
        );
        assert!(
            matches!(
                Node::builder("n").namespace(bad).root(&r.root).create(),
                Err(NodeError::InvalidName { .. })
            ),
            "namespace {bad:?} joined"
        );
    }
    for bad in [".", "..", "a/b", ""] {
        assert!(
            matches!(
                Node::builder(bad).namespace(&r.name).root(&r.root).create(),
                Err(NodeError::InvalidName { .. })
            ),
            "node name {bad:?}"
        );
    }
    let node = r.node().unwrap();
    let e = node
        .create_exchange("..", Pattern::PublishSubscribe, Limits::default())
        .expect_err("'..' refused");
    assert!(matches!(e, OpenError::InvalidName { .. }), "{e}");
    let x = node
        .create_exchange(".dot", Pattern::PublishSubscribe, Limits::default())
        .expect("a name starting with '.' is allowed");
    drop(x);
    drop(node);
    assert!(r.namespace().segment_files().is_empty());
}

#[test]
fn non_utf8_namespace_variable_is_an_error() {
    // In a child process: the environment is process-wide.
    if std::env::var_os("SHMEX_TEST_ENV_CHILD").is_some() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            std::env::var_os("SHMEX_NAMESPACE").unwrap().as_bytes(),
            b"ab\xff"
        );
        let e = Namespace::from_env().expect_err("non-UTF-8 accepted");
        assert!(
            matches!(
                e,
                NodeError::InvalidEnv {
                    var: "SHMEX_NAMESPACE",
                    ..
                }
            ),
            "{e}"
        );
        let e = Node::builder("n").create().expect_err("joined");
        assert!(matches!(e, NodeError::InvalidEnv { .. }), "{e}");
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "non_utf8_namespace_variable_is_an_error",
            "--nocapture",
        ])
        .env("SHMEX_TEST_ENV_CHILD", "1")
        .env("SHMEX_NAMESPACE", std::ffi::OsStr::from_bytes(b"ab\xff"))
        .env("SHMEX_ROOT", "/nonexistent-shmex-root")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn nonsensical_limits_are_refused() {
    let r = Root::new("limits", 0o755);
    let node = r.node().unwrap();
    let bad = |l: Limits, p: Pattern, what: &str| match node.create_exchange("x", p, l) {
        Err(OpenError::InvalidLimits { reason }) => {
            assert!(reason.contains(what), "{what}: {reason}")
        }
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    let d = Limits::default();
    bad(d.ack_timeout(Duration::ZERO), Pattern::Tasks, "ack_timeout");
    bad(d.chunk_size(0), Pattern::PublishSubscribe, "chunk_size");
    bad(d.chunk_count(0), Pattern::PublishSubscribe, "chunk_count");
    bad(d.queue_depth(0), Pattern::PublishSubscribe, "queue_depth");
    bad(d.max_ports(0), Pattern::PublishSubscribe, "max_ports");
    bad(d.max_deliveries(0), Pattern::Tasks, "max_deliveries");
    bad(
        d.chunk_size(1 << 30).chunk_count(1 << 10),
        Pattern::PublishSubscribe,
        "more than the",
    );
    bad(
        d.mode(0o660),
        Pattern::PublishSubscribe,
        "shared with a group",
    );
    let tasks = node
        .create_exchange("t", Pattern::Tasks, Limits::default())
        .unwrap();
    assert!(
        matches!(tasks.worker(0), Err(shmex::PortError::InvalidPrefetch)),
        "prefetch 0 accepted"
    );
    drop(tasks);
    drop(node);
    assert!(r.namespace().segment_files().is_empty());
}

// ---------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------

/// The policy (ARCHITECTURE.md, "Trust model"): processes of the same user
/// are trusted not to truncate segments (they could as well ptrace each
/// other). One that does kills the processes that have the segment mapped
/// with SIGBUS when they next touch it; processes that do not map it are
/// unaffected, and the namespace is cleaned up after the dead.
#[test]
fn truncation_kills_the_mappers_only() {
    let r = Root::new("trunc", 0o755);
    let mut mapper = spawn_child("mapper", &r, &[], false).expect("spawn the mapper");
    assert!(mapper.next().starts_with("joined "));
    assert_eq!(mapper.next(), "ready");
    let path = r.namespace().exchange_path("x");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    drop(mapper.child.stdin.take());
    let (tx, rx) = mpsc::channel();
    let mut child = mapper.child;
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(TIMEOUT) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("the mapper did not exit within {TIMEOUT:?}");
        }
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(nix::libc::SIGBUS),
        "the mapper was not killed by SIGBUS: {status}"
    );
    // We are unaffected: we join, the dead node is reclaimed, and the last
    // node out removes everything (the truncated file counts as a
    // segment nobody finished creating).
    let node = r.node().expect("join after the truncation");
    node.reclaim_dead().expect("reclaim");
    drop(node);
    assert!(
        r.namespace().segment_files().is_empty(),
        "{:?}",
        r.namespace().segment_files()
    );
}
