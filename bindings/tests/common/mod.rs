//! Helpers of the cross-language tests: building the library and the C
//! programs, running them as real processes, and per-test namespaces.
//!
//! The C programs link `libshmex.a` of the test's own profile, built (or
//! found fresh) by `cargo build -p shmex-c` into the test's target dir. They
//! are compiled with `cc` into `<target>/<profile>/c-tests/`. A missing `cc`
//! fails the test with a message saying so.
//!
//! `SHMEX_VALGRIND=1` runs every C program under
//! `valgrind --error-exitcode=1 --leak-check=full` (valgrind must be
//! installed); timeouts grow accordingly.

#![allow(dead_code)]

use shmex_rs::{Namespace, Node};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Folder of the segments.
pub const ROOT: &str = "/dev/shm";

/// True when the C programs run under valgrind.
pub fn valgrind() -> bool {
    std::env::var_os("SHMEX_VALGRIND").is_some_and(|v| v == "1")
}

/// Hang protection for waits on C programs (never a speed bound).
pub fn timeout() -> Duration {
    if valgrind() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    }
}

/// The bindings crate's folder.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/<profile>` of this test binary (it lives in `.../deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf()
}

/// `libshmex.a` of this profile, built by cargo on first use in this test
/// binary (cargo does nothing when it is fresh).
pub fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let profile_dir = profile_dir();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile folder name")
            .to_string();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .args(["build", "-p", "shmex-c", "--target-dir"])
            .arg(&target_dir)
            .current_dir(crate_dir());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo.status().expect("run cargo build -p shmex-c");
        assert!(status.success(), "cargo build -p shmex-c failed");
        let lib = profile_dir.join("libshmex.a");
        assert!(lib.exists(), "{} missing after cargo build", lib.display());
        lib
    })
    .clone()
}

/// Compiles C program `source` (relative to the bindings folder, e.g.
/// "examples/rpc.c") once per test binary; returns the executable.
pub fn compile(source: &str) -> PathBuf {
    compile_with(source, &[])
}

/// [`compile`] with extra `cc` arguments (e.g. linker options); one set of
/// them per source in a test binary.
pub fn compile_with(source: &str, extra: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let lib = library();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(exe) = built.get(source) {
        return exe.clone();
    }
    let test = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let out_dir = profile_dir().join("c-tests").join(test);
    std::fs::create_dir_all(&out_dir).expect("create c-tests folder");
    let stem = Path::new(source).file_stem().expect("source file name");
    let exe = out_dir.join(stem);
    let result = Command::new("cc")
        .args([
            "-std=c11",
            "-D_GNU_SOURCE",
            "-O2",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join(source))
        .arg(&lib)
        .args(extra)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the C binding tests need a C compiler: `cc` was not found on PATH \
             (install one, e.g. `apt-get install gcc`)"
        ),
        Err(e) => panic!("cannot run cc: {e}"),
    };
    assert!(
        output.status.success(),
        "cc failed on {source}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(source.to_string(), exe.clone());
    exe
}

/// A namespace of one test, checked empty at the end.
pub struct TestNs {
    /// `c<pid>-<test>-<n>`.
    pub name: String,
}

impl TestNs {
    /// A fresh namespace for `test`.
    pub fn new(test: &str) -> TestNs {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = TestNs {
            name: format!("c{}-{test}-{n}", std::process::id()),
        };
        assert!(ns.files().is_empty(), "namespace {} is not fresh", ns.name);
        ns
    }

    /// Joins it as node `name`.
    pub fn node(&self, name: &str) -> Node {
        Node::builder(name)
            .namespace(&self.name)
            .root(ROOT)
            .create()
            .unwrap_or_else(|e| panic!("node {name} cannot join {}: {e}", self.name))
    }

    /// Its files under the root.
    pub fn files(&self) -> Vec<PathBuf> {
        Namespace::new(ROOT, self.name.clone()).segment_files()
    }

    /// Asserts that nothing of it is left in /dev/shm (after every node of
    /// the test, Rust or C, is gone).
    pub fn assert_clean(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.files().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            self.files().is_empty(),
            "namespace {} left files in {ROOT}: {:?}",
            self.name,
            self.files()
        );
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for f in self.files() {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// A running C program: its stdout arrives line by line.
pub struct CProc {
    child: Child,
    lines: Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
    what: String,
}

impl CProc {
    /// Starts `exe` with `args` (under valgrind when asked).
    pub fn spawn(exe: &Path, args: &[&str]) -> CProc {
        let mut cmd = if valgrind() {
            let mut c = Command::new("valgrind");
            c.args(["--error-exitcode=1", "--leak-check=full", "--quiet"])
                .arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let what = format!("{} {}", exe.display(), args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CProc {
            child,
            lines,
            seen: Vec::new(),
            what,
        }
    }

    /// Waits for a line equal to `line`; panics after the timeout.
    pub fn wait_line(&mut self, line: &str) {
        let deadline = Instant::now() + timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = l == line;
                    self.seen.push(l);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "{}: no line {line:?} in time; saw {:?}",
                        self.what, self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited before printing {line:?}; saw {:?}",
                        self.what, self.seen
                    )
                }
            }
        }
    }

    /// Waits for the exit; kills it and panics after the timeout.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a C program") {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push(l);
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: still running after {:?}", self.what, timeout());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the exit and asserts it succeeded.
    pub fn finish(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{} failed: {status}; stdout: {:?}",
            self.what,
            self.seen
        );
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Compiles `source` and runs it with `args` to a successful end.
pub fn run(source: &str, args: &[&str]) -> Vec<String> {
    let exe = compile(source);
    let mut p = CProc::spawn(&exe, args);
    p.finish();
    std::mem::take(&mut p.seen)
}
