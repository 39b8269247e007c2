//! The parent's side of the demo processes: spawning children (this binary,
//! re-executed with the hidden child command), relaying their output, waiting
//! for conditions in shared memory, and reaping them with a deadline.
//!
//! Every child's stdout is piped through a relay thread that prints each line
//! as it arrives (on our stdout, or stderr under `--json`) and keeps the
//! `result:` lines for the summary; `json:` lines (a child's figures for
//! `--json`) are kept and not printed. Hang
//! protection: every wait has the scenario's deadline; past it, or as soon
//! as one child fails, the remaining children are killed and reaped (a
//! reaped child no longer counts as a live holder of any segment, so the
//! parent's handles remove them when dropped).
//!
//! Children run in process groups of their own, so a Ctrl-C at the terminal
//! stops only the parent. Orphaned children then finish their part or give
//! up at their own timeout, and the last of them to leave the namespace
//! removes its files: an interrupted demo still leaves nothing behind, a few
//! seconds later. (Had the signal reached every process at once, nobody
//! would be left to clean up.)

use super::{ChildArgs, JSON_PREFIX, RESULT_PREFIX};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the parent polls a condition or the children's exit status.
/// Polling only observes; no correctness depends on its period.
const POLL: Duration = Duration::from_millis(1);

/// One spawned child.
struct Running {
    label: String,
    child: Child,
    status: Option<ExitStatus>,
    relay: Option<JoinHandle<()>>,
}

/// What the relays keep of the children's output: `result:` lines, and
/// `json:` objects with the label of the child that printed each.
type Results = Arc<Mutex<Vec<String>>>;
type JsonLines = Arc<Mutex<Vec<(String, String)>>>;

/// The children of one scenario.
pub struct Children {
    namespace: shmex::Namespace,
    deadline: Instant,
    results: Results,
    json: JsonLines,
    running: Vec<Running>,
}

impl Children {
    /// No children yet; every wait ends at `now + timeout`.
    pub fn new(
        namespace: &shmex::Namespace,
        timeout: Duration,
        results: Results,
        json: JsonLines,
    ) -> Children {
        Children {
            namespace: namespace.clone(),
            deadline: Instant::now() + timeout,
            results,
            json,
            running: Vec::new(),
        }
    }

    /// Starts a child with `args`, joined to the demo's namespace through
    /// `SHMEX_NAMESPACE` / `SHMEX_ROOT`. Returns its pid.
    pub fn spawn(&mut self, args: &ChildArgs) -> Result<u32, String> {
        let label = args.role.label();
        let mut child = Command::new(self_exe()?)
            .args(args.to_argv())
            .env("SHMEX_NAMESPACE", &self.namespace.name)
            .env("SHMEX_ROOT", &self.namespace.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let relay = child.stdout.take().map(|out| {
            let (results, json) = (self.results.clone(), self.json.clone());
            let label = label.clone();
            std::thread::spawn(move || relay(out, &label, &results, &json))
        });
        let pid = child.id();
        self.running.push(Running {
            label,
            child,
            status: None,
            relay,
        });
        Ok(pid)
    }

    /// Kills child `pid` with SIGKILL on purpose (a simulated crash) and
    /// reaps it; [`finish`](Self::finish) then no longer waits for it nor
    /// counts it as a failure. Returns its exit status.
    pub fn kill(&mut self, pid: u32) -> Result<ExitStatus, String> {
        let r = self
            .running
            .iter_mut()
            .find(|r| r.child.id() == pid && r.status.is_none())
            .ok_or_else(|| format!("no running child with pid {pid}"))?;
        r.child
            .kill()
            .map_err(|e| format!("cannot kill {}: {e}", r.label))?;
        let status = r
            .child
            .wait()
            .map_err(|e| format!("cannot reap {}: {e}", r.label))?;
        r.status = Some(status);
        // Its output ends with it: relay all of it before the parent goes on.
        if let Some(h) = r.relay.take() {
            let _ = h.join();
        }
        Ok(status)
    }

    /// Polls `ready` until it holds. Fails when a child exits first (the
    /// condition would then never hold) or at the deadline.
    pub fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        loop {
            if ready() {
                return Ok(());
            }
            for r in self.running.iter_mut().filter(|r| r.status.is_none()) {
                if let Some(status) = r.child.try_wait().map_err(|e| e.to_string())? {
                    r.status = Some(status);
                    return Err(format!(
                        "{} exited ({status}) while waiting for {what}",
                        r.label
                    ));
                }
            }
            if Instant::now() >= self.deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for every child to exit. Succeeds when all exited with status
    /// 0; otherwise names each failure. On a failure or at the deadline the
    /// remaining children are killed.
    pub fn finish(mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        loop {
            let mut pending = 0;
            for r in &mut self.running {
                if r.status.is_some() {
                    continue;
                }
                match r.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            errors.push(format!("{} failed ({status})", r.label));
                        }
                        r.status = Some(status);
                    }
                    Ok(None) => pending += 1,
                    Err(e) => errors.push(format!("{}: {e}", r.label)),
                }
            }
            if pending == 0 {
                break;
            }
            if !errors.is_empty() {
                errors.push(self.kill_remaining("after the failure"));
                break;
            }
            if Instant::now() >= self.deadline {
                errors.push(self.kill_remaining("timed out"));
                break;
            }
            std::thread::sleep(POLL);
        }
        self.join_relays();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Kills and reaps every child still running; says which.
    fn kill_remaining(&mut self, why: &str) -> String {
        let mut killed = Vec::new();
        for r in &mut self.running {
            if r.status.is_none() {
                let _ = r.child.kill();
                r.status = r.child.wait().ok();
                killed.push(r.label.clone());
            }
        }
        format!("{why}: killed {}", killed.join(", "))
    }

    fn join_relays(&mut self) {
        for r in &mut self.running {
            if let Some(h) = r.relay.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Children {
    /// On an early return (a failed spawn or wait), leave no child behind.
    fn drop(&mut self) {
        if self.running.iter().any(|r| r.status.is_none()) {
            self.kill_remaining("aborted");
        }
        self.join_relays();
    }
}

/// This executable. On Linux `/proc/self/exe`, which still runs this very
/// program when its file has been replaced (by a rebuild) since it started:
/// parent and children then always run the same code.
fn self_exe() -> Result<PathBuf, String> {
    let proc = Path::new("/proc/self/exe");
    if proc.exists() {
        return Ok(proc.to_path_buf());
    }
    std::env::current_exe().map_err(|e| format!("cannot find the shmex executable: {e}"))
}

/// Copies a child's output to ours line by line, keeping its result lines,
/// and keeping (not printing) its JSON lines.
fn relay(
    out: std::process::ChildStdout,
    label: &str,
    results: &Mutex<Vec<String>>,
    json: &Mutex<Vec<(String, String)>>,
) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let text = line.split_once("] ").map_or("", |(_, text)| text);
        if let Some(object) = text.strip_prefix(JSON_PREFIX) {
            if let Ok(mut j) = json.lock() {
                j.push((label.to_string(), object.to_string()));
            }
            continue;
        }
        if let Some(result) = text.strip_prefix(RESULT_PREFIX) {
            if let Ok(mut r) = results.lock() {
                r.push(result.to_string());
            }
        }
        // Keep draining the child even if our own output is closed.
        super::print_line(format_args!("{line}"));
    }
}
