//! `shmex supervisor` end to end: the real binary watching a namespace of its
//! own (a fresh root folder under /dev/shm per test), with `shmex sub`
//! processes as the nodes that hang and die.
//!
//! Tests synchronise on the supervisor's JSON events and on the registry,
//! through polling loops with generous deadlines ([`DEADLINE`]); no sleep is
//! a bound. Every child is killed when its test ends (panicking or not), and
//! each test checks that its root folder is left empty.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait for anything expected to happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// A namespace no other test (or test run) uses, in a root folder of its own.
struct Ns {
    name: String,
    root: PathBuf,
}

impl Ns {
    fn new(what: &str) -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tsup-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let root = PathBuf::from("/dev/shm").join(format!("shmex-test-{name}"));
        std::fs::create_dir_all(&root).expect("create root folder");
        Ns { name, root }
    }

    fn namespace(&self) -> shmex::Namespace {
        shmex::Namespace::new(self.root.clone(), self.name.clone())
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// `shmex ARGS` run through `wrapper` (e.g. `unshare --pid --fork`).
    fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(env!("CARGO_BIN_EXE_shmex"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_shmex")),
        };
        c.args(args)
            .env("SHMEX_NAMESPACE", &self.name)
            .env("SHMEX_ROOT", &self.root)
            .stdin(Stdio::null());
        c
    }

    /// Runs `shmex ARGS` to the end: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.command(args).output().expect("run shmex");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `shmex ls --json`, parsed.
    fn ls(&self) -> json::Value {
        let (code, out, err) = self.run(&["ls", "--json"]);
        assert_eq!(code, Some(0), "ls failed: {err}");
        json::parse(out.trim_end()).unwrap_or_else(|e| panic!("bad ls JSON ({e}): {out}"))
    }

    /// Waits until the registry lists a live node with process `pid`.
    fn wait_node(&self, pid: u32) {
        let ns = self.namespace();
        wait_for(&format!("node of pid {pid} to join"), || {
            shmex::list_nodes(&ns)
                .unwrap_or_default()
                .iter()
                .any(|n| n.pid == pid && n.state == "alive")
        });
    }

    /// Waits until exchange `name` is listed.
    fn wait_exchange(&self, name: &str) {
        let ns = self.namespace();
        wait_for(&format!("exchange {name} to exist"), || {
            shmex::list_exchanges(&ns)
                .iter()
                .any(|e| e.as_ref().is_ok_and(|i| i.name == name))
        });
    }

    /// Waits until exchange `name` has `ports` ports attached.
    fn wait_ports(&self, name: &str, ports: u32) {
        let ns = self.namespace();
        wait_for(&format!("{ports} ports on exchange {name}"), || {
            shmex::list_exchanges(&ns)
                .iter()
                .any(|e| e.as_ref().is_ok_and(|i| i.name == name && i.ports == ports))
        });
    }

    /// Removes exchanges (persistent ones outlive every process) through a
    /// node of this test process, then leaves.
    fn remove_exchanges(&self, names: &[&str]) {
        let node = shmex::Node::builder("test-cleanup")
            .namespace(&self.name)
            .root(&self.root)
            .create()
            .expect("join namespace");
        for name in names {
            node.remove_exchange(name)
                .unwrap_or_else(|e| panic!("remove exchange {name}: {e}"));
        }
    }

    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(self.namespace().dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Checks that nothing is left once every process has exited. The
    /// last node leaving removes the namespace's files; give it a moment.
    #[track_caller]
    fn assert_clean(&self) {
        let start = Instant::now();
        while !self.files().is_empty() && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            self.files(),
            Vec::<String>::new(),
            "files left by {}",
            self.name
        );
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Polls `cond` until it holds; fails after [`DEADLINE`].
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running `shmex` child: stdout arrives line by line, stderr is
/// collected. Killed (and reaped) on drop if still running.
struct Proc {
    label: String,
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn start(ns: &Ns, args: &[&str]) -> Proc {
        Self::start_under(ns, &[], args)
    }

    /// As [`start`](Self::start), through `wrapper`; `pid` is the wrapper's.
    fn start_under(ns: &Ns, wrapper: &[&str], args: &[&str]) -> Proc {
        let mut child = ns
            .command_under(wrapper, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shmex");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Proc {
            label: format!("shmex {}", args.join(" ")),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("send signal");
    }

    /// SIGKILL, and reap it at once (a zombie still counts as running).
    fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap")
    }

    /// Reaps the child if it has exited.
    fn try_reap(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Reads JSON events until one satisfies `pred`; calls `also` between
    /// reads (to reap another child, for instance). Fails after
    /// [`DEADLINE`] or when stdout closes.
    #[track_caller]
    fn wait_event_with(
        &mut self,
        what: &str,
        pred: impl Fn(&json::Value) -> bool,
        mut also: impl FnMut(),
    ) -> json::Value {
        let start = Instant::now();
        loop {
            also();
            match self.lines.recv_timeout(Duration::from_millis(10)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let v = json::parse(&line)
                        .unwrap_or_else(|e| panic!("{}: bad JSON line ({e}): {line}", self.label));
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: stdout closed before {what}\n{}",
                        self.label,
                        self.transcript()
                    )
                }
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{}: no {what} within {DEADLINE:?}\n{}",
                    self.label,
                    self.transcript()
                );
            }
        }
    }

    #[track_caller]
    fn wait_event(&mut self, what: &str, pred: impl Fn(&json::Value) -> bool) -> json::Value {
        self.wait_event_with(what, pred, || {})
    }

    /// Waits for event `name` about process `pid`.
    #[track_caller]
    fn wait_node_event(&mut self, name: &str, pid: u32) -> json::Value {
        self.wait_event(&format!("{name:?} event for pid {pid}"), |v| {
            v.get("event").str() == name && v.get("pid").num() == f64::from(pid)
        })
    }

    fn transcript(&self) -> String {
        format!("--- stdout so far ---\n{}\n", self.seen.join("\n"))
    }

    /// SIGTERM, then waits for the exit; returns (status, remaining stdout
    /// lines, stderr).
    #[track_caller]
    fn terminate(mut self) -> (ExitStatus, Vec<String>, String) {
        self.signal(Signal::SIGTERM);
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.try_reap() {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.kill9();
                panic!("{} ignored SIGTERM\n{}", self.label, self.transcript());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, rest, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_reap().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A config file outside the namespace's root (which must end up empty).
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(ns: &Ns, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("{}.toml", ns.name));
        std::fs::write(&path, text).expect("write config");
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn supervisor(ns: &Ns, extra: &[&str]) -> Proc {
    let mut args = vec!["supervisor", "--json"];
    args.extend_from_slice(extra);
    let mut sup = Proc::start(ns, &args);
    let start = sup.wait_event("start event", |v| v.get("event").str() == "start");
    assert_eq!(start.get("namespace").str(), ns.name);
    assert_eq!(start.get("pid").num(), f64::from(sup.pid()));
    sup
}

/// Stops the supervisor with SIGTERM and checks it exits 0 with a `stop`
/// event and nothing on stderr.
#[track_caller]
fn stop(sup: Proc) {
    let label = sup.label.clone();
    let (status, rest, stderr) = sup.terminate();
    assert_eq!(status.code(), Some(0), "{label}: {status}\n{stderr}");
    assert!(
        rest.iter().any(|l| l.contains(r#""event":"stop""#)),
        "{label}: no stop event in {rest:?}"
    );
    assert_eq!(stderr, "", "{label}");
}

/// The entry of `list` whose `key` is `value`.
fn find<'a>(list: &'a json::Value, key: &str, value: &str) -> Option<&'a json::Value> {
    list.array().iter().find(|e| e.get(key).str() == value)
}

#[test]
fn help_mentions_supervisor() {
    let ns = Ns::new("help");
    let (code, out, _) = ns.run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("shmex supervisor "), "{out}");
    for args in [&["supervisor", "--help"][..], &["help", "supervisor"]] {
        let (code, out, err) = ns.run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        for want in [
            "--config",
            "--hung-after-ms",
            "--kill-hung",
            "--tick-ms",
            "--json",
        ] {
            assert!(out.contains(want), "{args:?} lacks {want}: {out}");
        }
    }
    for args in [
        &["supervisor", "--bogus"][..],
        &["supervisor", "--tick-ms", "0"],
        &["supervisor", "positional"],
    ] {
        let (code, _, err) = ns.run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage: shmex supervisor"), "{args:?}: {err}");
    }
    ns.assert_clean();
}

#[test]
fn bad_config_is_a_runtime_error_naming_the_problem() {
    let ns = Ns::new("badcfg");
    let cases = [
        (
            "[[exchange]]\nname = \"orders\"\npattern = \"gossip\"\n",
            "gossip",
        ),
        (
            "[[exchange]]\nname = \"orders\"\npattern = \"fan-in\"\ncolour = \"red\"\n",
            "colour",
        ),
        ("[[exchange]]\npattern = \"fan-in\"\n", "name"),
        (
            "[[exchange]]\nname = \"orders\"\npattern = \"fan-in\"\nqueue_depth = 3\n",
            "limits",
        ),
        (
            "[[exchange]]\nname = \"jobs\"\npattern = \"tasks\"\nack_timeout_ms = 0\n",
            "ack_timeout",
        ),
        (
            "[[exchange]]\nname = \"logs\"\npattern = \"fan-in\"\npermissions = \"0660\"\n",
            "SHMEX_SHARE_GROUP",
        ),
    ];
    for (text, problem) in cases {
        let config = ConfigFile::new(&ns, text);
        let (code, out, err) = ns.run(&["supervisor", "--config", config.path()]);
        assert_eq!(code, Some(1), "{text}: {err}");
        assert!(err.contains(config.path()), "{text}: file not named: {err}");
        assert!(err.contains(problem), "{text}: {problem} not named: {err}");
        assert_eq!(out, "");
    }
    let missing = format!("/nonexistent/{}.toml", ns.name);
    let (code, _, err) = ns.run(&["supervisor", "--config", &missing]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&missing) && err.contains("cannot read"),
        "{err}"
    );
    ns.assert_clean();
}

#[test]
fn static_exchanges_come_up_and_stay_up() {
    let ns = Ns::new("static");
    let config = ConfigFile::new(
        &ns,
        r#"
        [[exchange]]
        name = "orders"
        pattern = "request-response"
        chunk_size = 512
        chunk_count = 32
        queue_depth = 16
        max_ports = 4

        [[exchange]]
        name = "events"
        pattern = "publish-subscribe"
        permissions = "0600"
        "#,
    );
    let mut sup = Proc::start(&ns, &["supervisor", "--json", "--config", config.path()]);
    let start = sup.wait_event("start event", |v| v.get("event").str() == "start");
    assert_eq!(start.get("exchanges").num(), 2.0);
    let mut up = Vec::new();
    for line in &sup.seen {
        let v = json::parse(line).unwrap();
        if v.get("event").str() == "exchange_up" {
            assert!(v.get("created").bool(), "{v:?}");
            assert!(v.get("persistent").bool(), "{v:?}");
            up.push(v.get("exchange").str().to_string());
        }
    }
    assert_eq!(up, ["orders", "events"]);

    let ls = ns.ls();
    let exchanges = ls.get("exchanges");
    let orders = find(exchanges, "name", "orders").expect("orders listed");
    assert_eq!(orders.get("pattern").str(), "request-response");
    assert_eq!(orders.get("chunk_size").num(), 512.0);
    assert_eq!(orders.get("chunks_total").num(), 32.0);
    let events = find(exchanges, "name", "events").expect("events listed");
    assert_eq!(events.get("pattern").str(), "publish-subscribe");
    let mode = std::fs::metadata(ns.namespace().exchange_path("events"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);

    // Removed behind its back: the supervisor brings it back.
    {
        let node = shmex::Node::builder("remover")
            .namespace(&ns.name)
            .root(&ns.root)
            .create()
            .unwrap();
        node.remove_exchange("orders").unwrap();
    }
    let v = sup.wait_event("exchange_recreated event", |v| {
        v.get("event").str() == "exchange_recreated"
    });
    assert_eq!(v.get("exchange").str(), "orders");
    ns.wait_exchange("orders");

    stop(sup);
    // Persistent: both outlive the supervisor.
    let ls = ns.ls();
    assert!(
        find(ls.get("exchanges"), "name", "orders").is_some(),
        "{ls:?}"
    );
    assert!(
        find(ls.get("exchanges"), "name", "events").is_some(),
        "{ls:?}"
    );
    ns.remove_exchanges(&["orders", "events"]);
    ns.assert_clean();
}

#[test]
fn crashed_node_is_reclaimed() {
    let ns = Ns::new("crash");
    let mut sup = supervisor(&ns, &[]);
    // The first subscriber creates the exchange (transient: it goes down
    // when its creator dies), the second is the one that crashes.
    let mut creator = Proc::start(&ns, &["sub", "news", "#"]);
    ns.wait_ports("news", 1);
    ns.wait_node(creator.pid());
    let mut victim = Proc::start(&ns, &["sub", "news", "#"]);
    ns.wait_node(victim.pid());
    ns.wait_ports("news", 2);

    let pid = victim.pid();
    victim.kill9();
    let v = sup.wait_node_event("reclaimed", pid);
    assert_eq!(v.get("node").str(), format!("sub-{pid}"));
    if v.get("by").str() == "supervisor" {
        assert!(v.get("ports").num() >= 1.0, "{v:?}");
        assert!(v.get("reclaim_us").is_num(), "{v:?}");
    } else {
        assert_eq!(v.get("by").str(), "other", "{v:?}");
    }
    let ls = ns.ls();
    if let Some(n) = find(ls.get("nodes"), "name", &format!("sub-{pid}")) {
        assert_eq!(n.get("state").str(), "reclaimed", "{ls:?}");
    }
    // The other subscriber is unaffected.
    assert!(creator.try_reap().is_none(), "the creator died too");
    let ex = find(ls.get("exchanges"), "name", "news").expect("news still up");
    assert_eq!(ex.get("ports").num(), 1.0, "{ls:?}");

    // The creator's death takes its transient exchange down.
    let pid = creator.pid();
    creator.kill9();
    sup.wait_node_event("reclaimed", pid);
    stop(sup);
    ns.assert_clean();
}

#[test]
fn stopped_node_is_reported_hung_then_alive() {
    let ns = Ns::new("hung");
    let mut sup = supervisor(&ns, &["--hung-after-ms", "300"]);
    let mut sub = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_node(sub.pid());
    let pid = sub.pid();

    sub.signal(Signal::SIGSTOP);
    let v = sup.wait_node_event("hung", pid);
    assert!(v.get("heartbeat_age_ms").num() > 300.0, "{v:?}");
    assert!(
        v.get("killed").is_null(),
        "killed without --kill-hung: {v:?}"
    );
    sub.signal(Signal::SIGCONT);
    let v = sup.wait_node_event("alive", pid);
    assert!(v.get("heartbeat_age_ms").num() <= 300.0, "{v:?}");
    assert!(sub.try_reap().is_none(), "the stopped process died");

    sub.kill9();
    sup.wait_node_event("reclaimed", pid);
    stop(sup);
    ns.assert_clean();
}

#[test]
fn hung_node_is_killed_with_kill_hung() {
    let ns = Ns::new("killhung");
    let mut sup = supervisor(&ns, &["--hung-after-ms", "300", "--kill-hung"]);
    let mut sub = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_node(sub.pid());
    let pid = sub.pid();

    sub.signal(Signal::SIGSTOP);
    let v = sup.wait_node_event("hung", pid);
    assert!(v.get("killed").bool(), "{v:?}");
    // Reap it as it dies, so that it stops counting as running.
    let mut status = None;
    let v = sup.wait_event_with(
        &format!("reclaimed event for pid {pid}"),
        |v| v.get("event").str() == "reclaimed" && v.get("pid").num() == f64::from(pid),
        || {
            if status.is_none() {
                status = sub.try_reap();
            }
        },
    );
    assert!(matches!(v.get("by").str(), "supervisor" | "other"), "{v:?}");
    let status = status
        .or_else(|| sub.try_reap())
        .expect("killed process reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGKILL as i32)
    );
    stop(sup);
    ns.assert_clean();
}

#[test]
fn restarted_supervisor_takes_over() {
    let ns = Ns::new("restart");
    let mut first = supervisor(&ns, &[]);
    let mut sub = Proc::start(&ns, &["sub", "feed", "#"]);
    ns.wait_node(sub.pid());

    let first_pid = first.pid();
    first.kill9();
    drop(first);
    let mut second = supervisor(&ns, &[]);
    assert!(
        sub.try_reap().is_none(),
        "the subscriber died with the supervisor"
    );
    // The dead supervisor's node is reclaimed: by the new one at start (its
    // event may precede `start`), or by a heartbeat thread (its own node's join runs a pass too).
    let ns2 = ns.namespace();
    wait_for("the first supervisor's node to be reclaimed", || {
        shmex::list_nodes(&ns2)
            .unwrap_or_default()
            .iter()
            .all(|n| n.pid != first_pid || n.state == "reclaimed")
    });

    let pid = sub.pid();
    sub.kill9();
    let v = second.wait_node_event("reclaimed", pid);
    assert_eq!(v.get("node").str(), format!("sub-{pid}"));
    stop(second);
    ns.assert_clean();
}

/// The namespace's control lock (the registry's `flock`) held by the test
/// while it runs `f`: a stand-in for a node that stopped inside a control
/// operation (creating an exchange, attaching a port).
fn with_control_lock_held<T>(ns: &Ns, f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    let registry = std::fs::File::open(ns.namespace().registry_path()).expect("open registry");
    // SAFETY: flock on a descriptor that stays open for the call.
    let r = unsafe { nix::libc::flock(registry.as_raw_fd(), nix::libc::LOCK_EX) };
    assert_eq!(r, 0, "flock");
    let out = f();
    drop(registry); // releases the lock
    out
}

/// Before: the supervisor blocked in `flock` for as long as a stopped node
/// held the control lock (a node stopped while subscribing), reporting
/// nothing, not even the hang. Now each step waits a few milliseconds for
/// the lock, reports its holder once, and goes on watching.
#[test]
fn held_control_lock_does_not_stop_the_supervisor() {
    let ns = Ns::new("lockheld");
    let mut sup = supervisor(&ns, &["--hung-after-ms", "300"]);
    // `hung` creates the (transient) exchange, so that `dies` dying does
    // not take it down under `hung`.
    let mut hung = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_ports("ticks", 1);
    let mut dies = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_ports("ticks", 2);
    let (hung_pid, dead_pid) = (hung.pid(), dies.pid());
    with_control_lock_held(&ns, || {
        dies.kill9();
        let v = sup.wait_event("lock_held event", |v| v.get("event").str() == "lock_held");
        assert_eq!(v.get("pid").num(), f64::from(std::process::id()), "{v:?}");
        sup.wait_node_event("dead", dead_pid);
        hung.signal(Signal::SIGSTOP);
        sup.wait_node_event("hung", hung_pid);
    });
    // Lock released: the dead node is reclaimed.
    sup.wait_node_event("reclaimed", dead_pid);
    hung.signal(Signal::SIGCONT);
    sup.wait_node_event("alive", hung_pid);
    hung.kill9();
    sup.wait_node_event("reclaimed", hung_pid);
    stop(sup);
    ns.assert_clean();
}

/// Before: a node that joined after the supervisor's last scan and was
/// reclaimed by another process's pass was never reported. Here the
/// supervisor scans only at start and on exits (a 60 s tick); the late
/// node dies and the test reclaims it; the next exit's step must report it.
#[test]
fn node_reclaimed_by_another_pass_is_reported_even_unwatched() {
    let ns = Ns::new("unwatched");
    let mut early = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_node(early.pid());
    let mut sup = supervisor(&ns, &["--tick-ms", "60000"]);
    let mut late = Proc::start(&ns, &["sub", "ticks", "#"]);
    ns.wait_ports("ticks", 2);
    let late_pid = late.pid();
    late.kill9();
    let node = shmex::Node::builder("reclaimer")
        .namespace(&ns.name)
        .root(&ns.root)
        .create()
        .expect("join");
    let ns2 = ns.namespace();
    wait_for("the late node to be reclaimed", || {
        let _ = node.reclaim_dead();
        shmex::list_nodes(&ns2)
            .unwrap_or_default()
            .iter()
            .any(|n| n.pid == late_pid && n.state == "reclaimed")
    });
    drop(node);
    let early_pid = early.pid();
    early.kill9();
    sup.wait_node_event("reclaimed", early_pid);
    let v = sup.wait_node_event("reclaimed", late_pid);
    assert_eq!(v.get("by").str(), "other", "{v:?}");
    stop(sup);
    ns.assert_clean();
}

/// A node in a PID namespace of its own (a container sharing the folder)
/// registers a pid that means nothing here. Before, the supervisor opened
/// the pidfd of whatever process had that pid here, found another start
/// time and reported the node dead while it ran (and never reclaimed it
/// once dead). Now it watches such a node by its liveness lock: no event
/// while it runs, `dead` and `reclaimed` once it was killed.
#[test]
fn node_in_another_pid_namespace_is_watched_by_its_lock() {
    let pidns = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !pidns {
        eprintln!("SKIPPED: `unshare --pid --fork` is not available here");
        return;
    }
    let ns = Ns::new("pidns");
    let mut sup = supervisor(&ns, &[]);
    let mut sub = Proc::start_under(
        &ns,
        &["unshare", "--pid", "--fork", "--kill-child"],
        &["sub", "ticks", "#"],
    );
    ns.wait_ports("ticks", 1);
    let ns2 = ns.namespace();
    let inner_pid = shmex::list_nodes(&ns2)
        .expect("list")
        .iter()
        .find(|n| n.name.starts_with("sub-"))
        .expect("listed")
        .pid;
    assert!(
        inner_pid <= 2,
        "not in a PID namespace of its own: {inner_pid}"
    );
    // Several ticks (50 ms each) pass: the node must stay alive and unreported.
    std::thread::sleep(Duration::from_millis(300));
    let bogus = sup
        .lines
        .try_iter()
        .find(|l| l.contains(r#""event":"dead""#));
    assert!(bogus.is_none(), "a running node reported dead: {bogus:?}");
    assert!(
        shmex::list_nodes(&ns2)
            .expect("list")
            .iter()
            .any(|n| n.pid == inner_pid && n.state == "alive"),
        "not alive"
    );
    sub.kill9();
    let v = sup.wait_event("reclaimed event for the contained node", |v| {
        v.get("event").str() == "reclaimed" && v.get("pid").num() == f64::from(inner_pid)
    });
    assert_eq!(v.get("node").str(), format!("sub-{inner_pid}"), "{v:?}");
    stop(sup);
    ns.assert_clean();
}

/// Just enough JSON to read the supervisor's events and `ls --json`.
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    const NULL: Value = Value::Null;

    impl Value {
        /// Field `key` of an object; `Null` when absent.
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Object(fields) => fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(&NULL, |(_, v)| v),
                _ => &NULL,
            }
        }
        /// The string, or "" for anything else.
        pub fn str(&self) -> &str {
            match self {
                Value::Str(s) => s,
                _ => "",
            }
        }
        /// The number, or NaN for anything else.
        pub fn num(&self) -> f64 {
            match self {
                Value::Num(n) => *n,
                _ => f64::NAN,
            }
        }
        pub fn is_num(&self) -> bool {
            matches!(self, Value::Num(_))
        }
        pub fn is_null(&self) -> bool {
            matches!(self, Value::Null)
        }
        /// The boolean, or false for anything else.
        pub fn bool(&self) -> bool {
            matches!(self, Value::Bool(true))
        }
        /// The items, or none for anything else.
        pub fn array(&self) -> &[Value] {
            match self {
                Value::Array(items) => items,
                _ => &[],
            }
        }
    }

    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) -> Result<(), String> {
            self.ws();
            if self.s.get(self.i) == Some(&b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", b as char, self.i))
            }
        }
        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.eat(b':')?;
                        fields.push((key, self.value()?));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(fields));
                            }
                            _ => return Err(format!("bad object at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::Str(self.string()?)),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(_) => {
                    let start = self.i;
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|b| b"+-.eE0123456789".contains(b))
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map(Value::Num)
                        .ok_or_else(|| format!("bad value at {start}"))
                }
                None => Err("unexpected end".into()),
            }
        }
        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }
        fn string(&mut self) -> Result<String, String> {
            if self.s.get(self.i) != Some(&b'"') {
                return Err(format!("expected string at {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                match self.s.get(self.i) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        self.i += 1;
                        return String::from_utf8(out).map_err(|e| e.to_string());
                    }
                    Some(b'\\') => {
                        let esc = *self.s.get(self.i + 1).ok_or("bad escape")?;
                        self.i += 2;
                        let c = match esc {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).ok_or("bad \\u")?;
                                self.i += 4;
                                let n = u32::from_str_radix(std::str::from_utf8(hex).unwrap(), 16)
                                    .map_err(|e| e.to_string())?;
                                char::from_u32(n).unwrap_or('\u{fffd}')
                            }
                            other => other as char,
                        };
                        let mut buf = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    Some(&b) => {
                        out.push(b);
                        self.i += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn parser_self_check() {
        let v = parse(r#"{"a":[1,-2.5e1,"x\"\u00e9"],"b":{},"c":true,"d":null}"#).unwrap();
        assert_eq!(v.get("a").array()[1].num(), -25.0);
        assert_eq!(v.get("a").array()[2].str(), "x\"é");
        assert!(v.get("c").bool());
        assert!(v.get("d").is_null() && v.get("zz").is_null());
        assert!(parse("{").is_err());
        assert!(parse("[1] x").is_err());
    }
}
