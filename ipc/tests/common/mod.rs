//! Shared helpers of the cross-process integration tests.
//!
//! Every test file has one `#[test] #[ignore] fn child_entry()` that does
//! nothing unless `SHMEX_TEST_ROLE` is set. A test (the parent) re-executes
//! its own test binary on that entry ([`ChildProc::spawn`]) with the role, the
//! namespace and its parameters in the environment. Children report results
//! as lines `@@key value...` on stdout ([`report`]); the parent waits for
//! given lines ([`ChildProc::wait_for`]), talks back through the child's stdin
//! ([`ChildProc::send`], [`read_parent_line`]), and at the end checks the exit
//! status and the reported lines ([`ChildProc::finish`]). Every wait is
//! bounded by [`TIMEOUT`] (hang protection only): a child that does not answer
//! in time is killed and the test fails.
//!
//! Each test runs in its own namespace ([`TestNs`]) and ends by asserting that
//! none of its files is left under `/dev/shm` ([`TestNs::assert_clean`]).

#![allow(dead_code)]

use shmex::{Namespace, Node};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable naming the role a re-executed test binary plays.
pub const ROLE_VAR: &str = "SHMEX_TEST_ROLE";
/// Environment variable carrying the test's namespace to its children.
pub const NS_VAR: &str = "SHMEX_TEST_NS";
/// Folder of the segments.
pub const ROOT: &str = "/dev/shm";
/// Hang protection for every wait on another process. Never a speed bound.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the lines children report on stdout.
const MARK: &str = "@@";

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

/// A namespace of its own for one test.
pub struct TestNs {
    /// The namespace name, `t<pid>-<test>-<n>`.
    pub name: String,
}

impl TestNs {
    /// A fresh namespace for test `test` (short name: namespace names are
    /// limited to 64 bytes of `[A-Za-z0-9_-]`).
    pub fn new(test: &str) -> TestNs {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{}-{}", std::process::id(), test, n);
        let ns = TestNs { name };
        assert!(
            ns.files().is_empty(),
            "namespace {} is not fresh: {:?}",
            ns.name,
            ns.files()
        );
        ns
    }

    /// The namespace as the library describes it.
    pub fn namespace(&self) -> Namespace {
        Namespace::new(ROOT, self.name.clone())
    }

    /// Joins the namespace as node `name`.
    pub fn node(&self, name: &str) -> Node {
        join(&self.name, name)
    }

    /// The namespace's files under the root.
    pub fn files(&self) -> Vec<PathBuf> {
        self.namespace().segment_files()
    }

    /// Path of exchange `name`'s segment file.
    pub fn exchange_path(&self, name: &str) -> PathBuf {
        self.namespace().exchange_path(name)
    }

    /// Asserts that nothing of the namespace is left under the root. Call it
    /// after every node of the test (own and children's) is gone.
    pub fn assert_clean(self) {
        let left = self.files();
        assert!(
            left.is_empty(),
            "namespace {} left files behind in {ROOT}: {left:?}",
            self.name
        );
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // A failing test must not litter /dev/shm for the next run. A passing
        // one has already asserted there is nothing to remove.
        if std::thread::panicking() {
            for f in self.files() {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Joins namespace `ns` as node `name`.
pub fn join(ns: &str, name: &str) -> Node {
    Node::builder(name)
        .namespace(ns)
        .root(ROOT)
        .create()
        .unwrap_or_else(|e| panic!("node {name} cannot join namespace {ns}: {e}"))
}

// ---------------------------------------------------------------------------
// Parent side: child processes
// ---------------------------------------------------------------------------

/// What a child reported, in order: each line is `key rest...`.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every reported line, without the marker.
    pub lines: Vec<String>,
}

impl Report {
    /// The rest of every line reported under `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| strip_key(l, key).map(str::to_string))
            .collect()
    }

    /// The rest of the single line reported under `key`.
    pub fn one(&self, key: &str) -> String {
        let all = self.all(key);
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {key:?} line, report: {:?}",
            self.lines
        );
        all.into_iter().next().unwrap_or_default()
    }

    /// The single line under `key`, as a number.
    pub fn num(&self, key: &str) -> u64 {
        let v = self.one(key);
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{key} {v:?} is not a number: {e}"))
    }
}

fn strip_key<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    if line == key {
        return Some("");
    }
    line.strip_prefix(key)?.strip_prefix(' ')
}

/// A re-executed copy of the test binary playing one role.
pub struct ChildProc {
    /// Label used in failure messages.
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout_log: Arc<Mutex<String>>,
    stderr_log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl ChildProc {
    /// Starts `role` of the current test binary in namespace `ns`, with extra
    /// environment `env`.
    pub fn spawn(ns: &TestNs, role: &str, env: &[(&str, String)]) -> ChildProc {
        Self::spawn_in(&ns.name, role, env)
    }

    /// As [`spawn`](Self::spawn), with the namespace given by name.
    pub fn spawn_in(ns: &str, role: &str, env: &[(&str, String)]) -> ChildProc {
        Self::spawn_under(&[], ns, role, env)
    }

    /// As [`spawn_in`](Self::spawn_in), run through the command `wrapper`
    /// (e.g. `unshare --pid --fork`; empty: none). [`pid`](Self::pid) is
    /// then the wrapper's.
    pub fn spawn_under(
        wrapper: &[&str],
        ns: &str,
        role: &str,
        env: &[(&str, String)],
    ) -> ChildProc {
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args([
            "child_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, role)
        .env(NS_VAR, ns)
        .env_remove("SHMEX_NAMESPACE")
        .env_remove("SHMEX_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let label = if env.is_empty() {
            role.to_string()
        } else {
            let params: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{role}[{}]", params.join(","))
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn child {label}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let out_log = stdout_log.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = out_log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                // libtest may print "test child_entry ... " on the same line
                // before the first output: look for the marker anywhere.
                if let Some(pos) = line.find(MARK) {
                    let _ = tx.send(line[pos + MARK.len()..].trim_end().to_string());
                }
            }
        });
        let err_log = stderr_log.clone();
        let err_reader = std::thread::spawn(move || {
            let mut buf = String::new();
            let mut stderr = stderr;
            let _ = stderr.read_to_string(&mut buf);
            if let Ok(mut log) = err_log.lock() {
                log.push_str(&buf);
            }
        });
        ChildProc {
            label,
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            stdout_log,
            stderr_log,
            readers: vec![out_reader, err_reader],
            status: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most [`TIMEOUT`]) for the child to report a line under `key`
    /// and returns its rest. Lines before it are kept for the final report.
    pub fn wait_for(&mut self, key: &str) -> String {
        self.wait_for_within(key, TIMEOUT)
    }

    /// As [`wait_for`](Self::wait_for), killing the child after `timeout`.
    pub fn wait_for_within(&mut self, key: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let rest = strip_key(&line, key).map(str::to_string);
                    self.seen.push(line);
                    if let Some(rest) = rest {
                        return rest;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    let diag = self.diagnostics();
                    panic!(
                        "child {} did not report {key:?} within {timeout:?}\n{diag}",
                        self.label
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_exit(TIMEOUT);
                    let diag = self.diagnostics();
                    panic!(
                        "child {} ended without reporting {key:?}\n{diag}",
                        self.label
                    );
                }
            }
        }
    }

    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of child {} is closed", self.label));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to child {}: {e}", self.label));
    }

    /// Closes the child's stdin (children waiting for end of input go on).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Waits for the child to exit, at most `timeout`; kills it after.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return self.status;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn diagnostics(&mut self) -> String {
        if self.status.is_some() {
            self.join_readers();
        }
        let out = self
            .stdout_log
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let err = self
            .stderr_log
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        format!(
            "--- status: {:?}\n--- stdout of {}:\n{out}--- stderr:\n{err}",
            self.status, self.label
        )
    }

    /// Closes stdin, waits for the child to exit (at most [`TIMEOUT`]),
    /// asserts it exited 0 and returns everything it reported.
    pub fn finish(self) -> Report {
        self.finish_within(TIMEOUT)
    }

    /// As [`finish`](Self::finish), killing the child after `timeout`.
    pub fn finish_within(self, timeout: Duration) -> Report {
        self.try_finish_within(timeout)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// As [`finish_within`](Self::finish_within), returning a failure (with
    /// the child's output) instead of panicking.
    pub fn try_finish_within(mut self, timeout: Duration) -> Result<Report, String> {
        self.close_stdin();
        let status = self.wait_exit(timeout);
        self.join_readers();
        if !status.is_some_and(|s| s.success()) {
            let diag = self.diagnostics();
            return Err(match status {
                Some(s) => format!("child {} failed ({s})\n{diag}", self.label),
                None => format!(
                    "child {} did not exit within {timeout:?} and was killed\n{diag}",
                    self.label
                ),
            });
        }
        Ok(Report {
            lines: std::mem::take(&mut self.seen),
        })
    }

    /// Kills the child with SIGKILL and returns its exit status.
    pub fn kill_and_reap(mut self) -> ExitStatus {
        self.kill();
        self.join_readers();
        self.status
            .unwrap_or_else(|| panic!("child {} could not be reaped", self.label))
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // A test that failed half way must not leave children running.
        self.kill();
    }
}

/// Finishes every child, in order, and returns their reports.
pub fn finish_all(children: Vec<ChildProc>) -> Vec<Report> {
    children.into_iter().map(ChildProc::finish).collect()
}

// ---------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------

/// The role this process plays, when it is a re-executed child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// The namespace the parent gave this child.
pub fn child_ns() -> String {
    std::env::var(NS_VAR).expect("SHMEX_TEST_NS is set for children")
}

/// Joins the parent's namespace as node `name`.
pub fn child_node(name: &str) -> Node {
    join(&child_ns(), name)
}

/// A parameter the parent passed.
pub fn env_str(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("parameter {name} is not set"))
}

/// A numeric parameter the parent passed.
pub fn env_u64(name: &str) -> u64 {
    let v = env_str(name);
    v.parse()
        .unwrap_or_else(|e| panic!("parameter {name}={v:?} is not a number: {e}"))
}

/// Reports one line to the parent.
pub fn report(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    // A leading newline keeps the line apart from libtest's own output.
    writeln!(out, "\n{MARK}{line}")
        .and_then(|()| out.flush())
        .expect("report to the parent");
}

/// The next line the parent sends, or `None` at end of input.
pub fn read_parent_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// Blocks until the parent sends `expected`.
pub fn wait_parent(expected: &str) {
    match read_parent_line() {
        Some(l) if l == expected => {}
        other => panic!("expected {expected:?} from the parent, got {other:?}"),
    }
}

/// Blocks until the parent closes our stdin.
pub fn wait_parent_eof() {
    while read_parent_line().is_some() {}
}

/// A flag set once the parent closes our stdin (read by a helper thread).
pub fn parent_eof_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        wait_parent_eof();
        f.store(true, Ordering::Release);
    });
    flag
}

/// Little-endian `u64` words of a payload.
pub fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}

/// Payload made of little-endian `u64` words.
pub fn payload(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------
// Added for the fault tests
// ---------------------------------------------------------------------------

impl ChildProc {
    /// Kills the child with SIGKILL, reaps it and returns its exit status
    /// with its output, for a child that may have failed before it was
    /// killed (its status then is not SIGKILL).
    pub fn kill_and_reap_verbose(mut self) -> (ExitStatus, String) {
        self.kill();
        let diag = self.diagnostics();
        let status = self
            .status
            .unwrap_or_else(|| panic!("child {} could not be reaped", self.label));
        (status, diag)
    }
}

/// Offset into file `path` of address `addr` of this process, if `addr`
/// lies in a mapping of that file (read from /proc/self/maps).
pub fn mapping_offset(path: &std::path::Path, addr: usize) -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let path = path.to_str()?;
    maps.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (range, _perms, offset) = (f.next()?, f.next()?, f.next()?);
        let (_dev, _inode) = (f.next()?, f.next()?);
        if f.next()? != path {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let offset = u64::from_str_radix(offset, 16).ok()?;
        (start..end)
            .contains(&addr)
            .then(|| (addr - start) as u64 + offset)
    })
}
