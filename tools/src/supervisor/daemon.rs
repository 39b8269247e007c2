//! The supervisor's main loop.
//!
//! State: the nodes it watches (one pidfd each, keyed by registry slot and
//! identified by pid + start time), the exits it has seen but not yet seen
//! reclaimed, and the static exchanges it holds open.
//!
//! One *step* is: a reclaim pass ([`Node::reclaim_dead`]), its report, a scan
//! of the registry ([`shmex::list_nodes`]) that settles the pending exits
//! (reclaimed by someone else, left cleanly, or still waiting: an exchange
//! busy because a live port stayed inside an operation) and updates the watches and
//! the hang states. A step runs when a pidfd becomes readable (at once: the
//! wait is `ppoll` on every pidfd) and every tick; each tick also checks the
//! static exchanges.

use super::config::{Config, StaticExchange};
use super::log::{human_duration, micros, plural, Event, Log, NodeRef};
use super::sys::{self, Pidfd, Signals};
use super::Options;
use crate::json::Json;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use shmex::{Exchange, ExchangeEvent, Namespace, Node, OpenError, Reclaimed, Watch};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Joins the namespace, brings the static exchanges up and supervises until
/// SIGTERM or SIGINT. `Err` for what stops it at start.
pub fn run(opts: Options, config: Config) -> Result<(), String> {
    // Before the node starts its heartbeat thread, so that it inherits the
    // blocked stop signals and they always reach the main thread's wait.
    let signals =
        sys::install_stop_handler().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let ns = opts.namespace.clone();
    let node = Node::builder("supervisor")
        .namespace(&ns.name)
        .root(&ns.root)
        .create()
        .map_err(|e| {
            format!(
                "cannot join namespace {:?} in {}: {e}",
                ns.name,
                ns.root.display()
            )
        })?;
    let mut sup = Supervisor {
        self_id: node.id(),
        node,
        ns,
        hung_after_ms: u64::try_from(opts.hung_after.as_millis()).unwrap_or(u64::MAX),
        kill_hung: opts.kill_hung,
        tick: opts.tick,
        log: Log::new(opts.json),
        watched: BTreeMap::new(),
        exits: Vec::new(),
        statics: Vec::new(),
        pidfd_ok: true,
        need_step: false,
        retry: None,
        last_error: None,
        last_busy: Vec::new(),
        lock_holder: None,
        reported: Vec::new(),
    };
    sup.start(config)?;
    let signal = sup.supervise(&signals);
    sup.log.emit(
        Event::new("stop", format!("stopping on {}", signal.as_str()))
            .field("signal", Json::str(signal.as_str())),
    );
    // Static exchanges first, then the node (persistent exchanges stay up).
    sup.statics.clear();
    Ok(())
}

/// A node whose process the supervisor watches.
struct Watched {
    node: NodeRef,
    /// `None` when pidfds are unavailable: its exit is then found by the
    /// reclaim pass of some tick.
    pidfd: Option<Pidfd>,
    /// When it was reported hung (and not yet alive again).
    hung: Option<Instant>,
}

/// A process exit seen (pidfd readable, or pid reused) and not yet seen
/// reclaimed.
struct Exit {
    node: NodeRef,
    seen: Instant,
    /// Whether its `dead` event was printed.
    announced: bool,
}

/// A static exchange of the config.
struct Static {
    def: StaticExchange,
    /// The open handle and a watch on its name, made right after it was
    /// brought up; `None` after a failed attempt (retried every tick).
    held: Option<(Exchange, Watch)>,
    /// Why it is being brought up again, while `held` is `None`.
    reason: &'static str,
    /// The last error bringing it up, printed once.
    failing: Option<String>,
}

/// Longest wait of a step for the namespace's control lock. A process that
/// stopped or hangs while holding it must not stop the supervisor from
/// scanning, reporting hangs (and killing with `--kill-hung`): the pass is
/// retried at the next step instead.
const LOCK_WAIT: Duration = Duration::from_millis(20);

/// First delay before a step retries pending exits (an exchange a pass
/// found busy, or a process whose exit the pidfd reported a moment before
/// `/proc` shows it).
const FIRST_RETRY: Duration = Duration::from_micros(200);

struct Supervisor {
    node: Node,
    ns: Namespace,
    self_id: u32,
    hung_after_ms: u64,
    kill_hung: bool,
    tick: Duration,
    log: Log,
    /// Watched nodes by registry slot.
    watched: BTreeMap<u32, Watched>,
    exits: Vec<Exit>,
    statics: Vec<Static>,
    /// False once `pidfd_open` proved unavailable (ENOSYS, EPERM).
    pidfd_ok: bool,
    /// Run a step without waiting (an exit was found outside `ppoll`).
    need_step: bool,
    /// While exits are pending: when to run the next step, and the delay
    /// that led there (doubling from [`FIRST_RETRY`] up to the tick).
    retry: Option<(Instant, Duration)>,
    /// The last `error` event, not repeated while it persists.
    last_error: Option<String>,
    /// The exchanges the last reclaim pass found busy.
    last_busy: Vec<String>,
    /// While the control lock is found held past [`LOCK_WAIT`]: its holder
    /// (as reported by the `lock_held` event, printed once per holder).
    lock_holder: Option<Option<u32>>,
    /// Nodes whose exit was reported (`reclaimed` or `left`) or that were
    /// reclaimed before the supervisor started, while their slot still
    /// shows them.
    reported: Vec<NodeRef>,
}

impl Supervisor {
    /// Start: one reclaim pass (the namespace as found, e.g. after a
    /// restart), the static exchanges, the `start` event, the first scan.
    fn start(&mut self, config: Config) -> Result<(), String> {
        if let Err(e) = Pidfd::open(std::process::id()) {
            self.pidfd_ok = false;
            self.error(format!(
                "pidfds unavailable ({e}): exits are found by the reclaim pass of each tick"
            ));
        }
        // Nodes reclaimed before this supervisor started are history.
        if let Ok(nodes) = shmex::list_nodes(&self.ns) {
            self.reported = nodes
                .iter()
                .filter(|n| n.state == "reclaimed")
                .map(NodeRef::from)
                .collect();
        }
        self.step();
        for def in config.exchanges {
            let (ex, watch, created) = bring_up(&self.node, &def).map_err(|e| {
                format!(
                    "cannot bring up static exchange {:?} ({}): {e}",
                    def.name, def.pattern
                )
            })?;
            let how = if created { "created" } else { "opened" };
            self.log.emit(
                exchange_event(
                    "exchange_up",
                    format!("exchange {} up: {how}", describe(&def)),
                    &def,
                )
                .field("created", Json::Bool(created)),
            );
            self.statics.push(Static {
                def,
                held: Some((ex, watch)),
                reason: "down",
                failing: None,
            });
        }
        let mut text = format!(
            "supervising namespace {} in {} as node supervisor (id {}, pid {}): {}, \
             hung after {} ms, tick {} ms",
            self.ns.name,
            self.ns.root.display(),
            self.self_id,
            std::process::id(),
            plural(self.statics.len() as u64, "static exchange"),
            self.hung_after_ms,
            self.tick.as_millis(),
        );
        if self.kill_hung {
            text.push_str(", killing hung nodes");
        }
        self.log.emit(
            Event::new("start", text)
                .field("namespace", Json::str(&self.ns.name))
                .field("root", Json::str(self.ns.root.display().to_string()))
                .field("node", Json::str(self.node.name()))
                .field("id", Json::Num(self.self_id.into()))
                .field("pid", Json::Num(std::process::id().into()))
                .field("exchanges", Json::Num(self.statics.len() as u64))
                .field("hung_after_ms", Json::Num(self.hung_after_ms))
                .field("tick_ms", Json::Num(micros(self.tick) / 1000))
                .field("kill_hung", Json::Bool(self.kill_hung))
                .field("pidfd", Json::Bool(self.pidfd_ok)),
        );
        Ok(())
    }

    /// Waits for exits and ticks until a stop signal; returns it.
    fn supervise(&mut self, signals: &Signals) -> Signal {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            if let Some(signal) = sys::stop_requested() {
                return signal;
            }
            let wake = match self.retry {
                Some((at, _)) => at.min(next_tick),
                None => next_tick,
            };
            let timeout = if self.need_step {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            let (ids, fds): (Vec<u32>, Vec<BorrowedFd<'_>>) = self
                .watched
                .iter()
                .filter_map(|(&id, w)| w.pidfd.as_ref().map(|p| (id, p.as_fd())))
                .unzip();
            let ready: Vec<u32> = sys::wait(&fds, timeout, signals)
                .into_iter()
                .map(|i| ids[i])
                .collect();
            drop(fds);
            let seen = Instant::now();
            for id in &ready {
                if let Some(w) = self.watched.remove(id) {
                    self.exits.push(Exit {
                        node: w.node,
                        seen,
                        announced: false,
                    });
                    self.retry = None; // a fresh exit: retry quickly again
                }
            }
            let tick_due = seen >= next_tick;
            let retry_due = self.retry.is_some_and(|(at, _)| seen >= at);
            if !ready.is_empty() || std::mem::take(&mut self.need_step) || tick_due || retry_due {
                self.step();
            }
            if tick_due {
                self.check_statics();
                next_tick = Instant::now() + self.tick;
            }
        }
    }

    /// Reclaim pass, report, registry scan.
    fn step(&mut self) {
        let started = Instant::now();
        match self.node.reclaim_dead_within(LOCK_WAIT) {
            Ok(r) => {
                self.lock_holder = None;
                let done = Instant::now();
                self.report(&r, done - started, done);
            }
            Err(shmex::SegmentError::LockTimeout { holder, .. }) => self.lock_held(holder),
            Err(e) => self.error(format!("reclaim failed: {e}")),
        }
        match shmex::list_nodes(&self.ns) {
            Ok(nodes) => {
                self.settle_exits(&nodes);
                self.update_watches(&nodes);
            }
            Err(e) => self.error(format!("cannot read the registry: {e}")),
        }
        self.retry = if self.exits.is_empty() {
            None
        } else {
            let delay = match self.retry {
                None => FIRST_RETRY,
                Some((_, d)) => (d * 2).min(self.tick),
            };
            Some((Instant::now() + delay, delay))
        };
    }

    /// Prints what a reclaim pass did: `dead` (if not yet printed) and
    /// `reclaimed` for each node.
    fn report(&mut self, r: &Reclaimed, took: Duration, done: Instant) {
        for n in &r.nodes {
            let node = NodeRef::from(n);
            let exit = self
                .exits
                .iter()
                .position(|e| e.node.id == node.id && e.node.pid == node.pid)
                .map(|i| self.exits.swap_remove(i));
            if self
                .watched
                .get(&node.id)
                .is_some_and(|w| w.node.pid == node.pid)
            {
                self.watched.remove(&node.id);
            }
            if let Some(e) = &exit {
                if !e.announced {
                    self.announce_dead(&e.node);
                }
            }
            let detect = exit.map(|e| done.saturating_duration_since(e.seen));
            self.log.emit(reclaimed_event(Some(&node), r, took, detect));
            self.reported.push(node);
        }
        let leftovers =
            r.ports > 0 || r.chunks > 0 || r.requests_failed > 0 || !r.exchanges_down.is_empty();
        if r.nodes.is_empty() && leftovers {
            self.log.emit(reclaimed_event(None, r, took, None));
        }
        if r.busy != self.last_busy {
            if !r.busy.is_empty() {
                self.log.emit(
                    Event::new(
                        "busy",
                        format!(
                            "reclaim skipped busy exchanges {} (a live port is inside an \
                             operation); retrying every tick",
                            r.busy.join(", ")
                        ),
                    )
                    .field(
                        "exchanges",
                        Json::Array(r.busy.iter().map(Json::str).collect()),
                    ),
                );
            }
            self.last_busy = r.busy.clone();
        }
    }

    /// Settles the exits not reclaimed by the supervisor's own passes against
    /// the registry: reclaimed by another pass (the heartbeat thread of a
    /// peer or of this very node, another supervisor), left cleanly, or
    /// still pending.
    fn settle_exits(&mut self, nodes: &[shmex::NodeInfo]) {
        for mut e in std::mem::take(&mut self.exits) {
            let slot = nodes.iter().find(|n| NodeRef::from(*n).same(&e.node));
            match slot.map(|n| n.state) {
                Some("reclaimed") => {
                    if !e.announced {
                        self.announce_dead(&e.node);
                    }
                    self.log.emit(other_reclaimed_event(&e.node));
                    self.reported.push(e.node);
                }
                None if e.announced => self.log.emit(other_reclaimed_event(&e.node)),
                None => self.log.emit(
                    Event::new(
                        "left",
                        format!("node {} exited after leaving the namespace", e.node.label()),
                    )
                    .node(&e.node),
                ),
                // Its liveness lock is still held: not an exit after all
                // (a pid this process cannot see, from another PID
                // namespace); the scan watches it again.
                Some("alive" | "hung") => {}
                Some(_) => {
                    // "dead": a pass will reclaim it (busy exchanges, or a
                    // pass elsewhere holds the control lock).
                    if !e.announced {
                        self.announce_dead(&e.node);
                        e.announced = true;
                    }
                    self.exits.push(e);
                }
            }
        }
    }

    fn announce_dead(&self, node: &NodeRef) {
        self.log
            .emit(Event::new("dead", format!("node {} exited", node.label())).node(node));
    }

    /// Watches every running node (new ones get a pidfd), tracks hangs, and
    /// turns every node that stopped running into a pending exit: a watched
    /// one whose slot shows it dead or reclaimed (its pidfd not read yet,
    /// reclaimed by another pass) or was taken by another node, and one
    /// never watched that is found
    /// dead or reclaimed (it joined and died between two scans). So every
    /// exit gets its `reclaimed` (or `left`) event, whoever reclaimed it.
    fn update_watches(&mut self, nodes: &[shmex::NodeInfo]) {
        let mut current = Vec::new();
        for n in nodes {
            if n.id == self.self_id {
                continue;
            }
            let node = NodeRef::from(n);
            if self.exits.iter().any(|e| e.node.same(&node)) {
                continue;
            }
            if !(n.state == "alive" || n.state == "hung") {
                let watched = self.watched.get(&n.id).is_some_and(|w| w.node.same(&node));
                if watched {
                    self.watched.remove(&n.id);
                }
                if watched || !self.reported.iter().any(|r| r.same(&node)) {
                    self.exit_seen(node);
                }
                continue;
            }
            let known = self.watched.get(&n.id).is_some_and(|w| w.node.same(&node));
            if !known {
                if let Some(w) = self.watched.remove(&n.id) {
                    self.exit_seen(w.node);
                }
                let w = self.watch(node);
                self.watched.insert(n.id, w);
            }
            current.push(n.id);
            self.check_hang(n.id, n.heartbeat_age_ms);
        }
        // Slots now free: those nodes left cleanly (nothing to reclaim).
        self.watched.retain(|id, _| current.contains(id));
        self.reported
            .retain(|r| nodes.iter().any(|n| NodeRef::from(n).same(r)));
    }

    /// Records `node`'s exit (found outside `ppoll`): settled at the next
    /// step, which runs at once.
    fn exit_seen(&mut self, node: NodeRef) {
        self.exits.push(Exit {
            node,
            seen: Instant::now(),
            announced: false,
        });
        self.need_step = true;
    }

    /// Watches a running node: with a pidfd (checked to be the node's
    /// process) where its pid is ours to see, else by the tick's scans.
    fn watch(&mut self, node: NodeRef) -> Watched {
        if !self.pidfd_ok {
            return Watched {
                node,
                pidfd: None,
                hung: None,
            };
        }
        // The pid is a hint: liveness is the node's lock, which the registry
        // scan reads. A pid of another PID namespace (a container sharing
        // the folder) is not ours to open, or names another process here:
        // such a node is watched by the scans of each tick.
        let pidfd = match Pidfd::open(node.pid) {
            Ok(fd) => match sys::process_start_time(node.pid) {
                Some(t) if t != node.start_time => None,
                _ => Some(fd),
            },
            Err(Errno::ESRCH) => None,
            Err(e) => {
                if matches!(e, Errno::ENOSYS | Errno::EPERM) {
                    self.pidfd_ok = false;
                }
                self.error(format!(
                    "cannot open a pidfd for node {}: {e}; its exit will be found by \
                     the scan of a tick",
                    node.label()
                ));
                None
            }
        };
        Watched {
            node,
            pidfd,
            hung: None,
        }
    }

    /// Reports watched node `id` hung when its heartbeat is older than the
    /// limit (killing it with `--kill-hung`), alive again when it is not.
    fn check_hang(&mut self, id: u32, age_ms: u64) {
        let Some(w) = self.watched.get_mut(&id) else {
            return;
        };
        if age_ms > self.hung_after_ms {
            if w.hung.is_some() {
                return;
            }
            w.hung = Some(Instant::now());
            let mut text = format!(
                "node {} hung: no heartbeat for {}",
                w.node.label(),
                human_duration(Duration::from_millis(age_ms))
            );
            let mut fields = vec![("heartbeat_age_ms", Json::Num(age_ms))];
            if self.kill_hung {
                match kill(w) {
                    Ok(()) => {
                        text.push_str("; killed (SIGKILL)");
                        fields.push(("killed", Json::Bool(true)));
                    }
                    Err(e) => {
                        text.push_str(&format!("; cannot kill it: {e}"));
                        fields.push(("killed", Json::Bool(false)));
                        fields.push(("error", Json::str(e.to_string())));
                    }
                }
            }
            let mut event = Event::new("hung", text).node(&w.node);
            for (key, value) in fields {
                event = event.field(key, value);
            }
            self.log.emit(event);
        } else if let Some(since) = w.hung.take() {
            let hung_for = since.elapsed() + Duration::from_millis(self.hung_after_ms);
            self.log.emit(
                Event::new(
                    "alive",
                    format!(
                        "node {} alive again (heartbeat {} old, hung for about {})",
                        w.node.label(),
                        human_duration(Duration::from_millis(age_ms)),
                        human_duration(hung_for)
                    ),
                )
                .node(&w.node)
                .field("heartbeat_age_ms", Json::Num(age_ms))
                .field("hung_ms", Json::Num(micros(hung_for) / 1000)),
            );
        }
    }

    /// Brings back every static exchange that went down (removed, or taken
    /// down) or was replaced by another incarnation since it was brought up,
    /// and retries the ones whose last attempt failed.
    fn check_statics(&mut self) {
        for st in &mut self.statics {
            if let Some((_, watch)) = &st.held {
                let mut went_down = false;
                while let Some(event) = watch.try_event() {
                    went_down |= event == ExchangeEvent::Down;
                }
                if !went_down && watch.is_up() {
                    continue;
                }
                st.reason = if watch.is_up() { "replaced" } else { "down" };
            }
            // Close the stale handle before making the new one.
            st.held = None;
            let reason = st.reason;
            match bring_up(&self.node, &st.def) {
                Ok((ex, watch, created)) => {
                    st.held = Some((ex, watch));
                    st.failing = None;
                    let (what, how) = match (reason, created) {
                        ("replaced", _) => ("was replaced by another incarnation", "re-opened"),
                        (_, true) => ("went down", "re-created"),
                        (_, false) => ("went down", "re-opened (brought back by another process)"),
                    };
                    let event = exchange_event(
                        "exchange_recreated",
                        format!("exchange {} {what}: {how}", describe(&st.def)),
                        &st.def,
                    )
                    .field("created", Json::Bool(created))
                    .field("reason", Json::str(reason));
                    self.log.emit(event);
                }
                Err(e) => {
                    let msg = format!(
                        "static exchange {:?} is down and cannot be brought back: {e}",
                        st.def.name
                    );
                    if st.failing.as_ref() != Some(&msg) {
                        st.failing = Some(msg.clone());
                        self.log.emit(
                            Event::new("error", msg.clone()).field("message", Json::str(msg)),
                        );
                    }
                }
            }
        }
    }

    /// The control lock stayed held through a step's wait: prints a
    /// `lock_held` event naming the holder (once per holder). The holder's
    /// missing heartbeat gets it reported `hung` like any other node.
    fn lock_held(&mut self, holder: Option<u32>) {
        if self.lock_holder == Some(holder) {
            return;
        }
        self.lock_holder = Some(holder);
        let who = holder.map_or("a process not visible from here".to_string(), |p| {
            format!("pid {p}")
        });
        let mut event = Event::new(
            "lock_held",
            format!(
                "the namespace's control lock is held by {who}: reclaim passes wait \
                 (retried every step)"
            ),
        );
        if let Some(pid) = holder {
            event = event.field("pid", Json::Num(pid.into()));
        }
        self.log.emit(event);
    }

    /// Prints an `error` event, unless it repeats the previous one.
    fn error(&mut self, message: String) {
        if self.last_error.as_ref() == Some(&message) {
            return;
        }
        self.last_error = Some(message.clone());
        self.log
            .emit(Event::new("error", message.clone()).field("message", Json::str(message)));
    }
}

/// SIGKILL to a watched node's process, through its pidfd (never a later
/// process with the same pid), else by pid after re-checking its start time.
fn kill(w: &Watched) -> Result<(), Errno> {
    match &w.pidfd {
        Some(fd) => fd.send_signal(Signal::SIGKILL),
        None => {
            if sys::process_start_time(w.node.pid) != Some(w.node.start_time) {
                return Err(Errno::ESRCH);
            }
            let pid = i32::try_from(w.node.pid).map_err(|_| Errno::ESRCH)?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
        }
    }
}

/// Creates the exchange, or opens it (checking pattern and limits) when it
/// exists, and starts watching it. Returns whether it was created.
fn bring_up(node: &Node, def: &StaticExchange) -> Result<(Exchange, Watch, bool), OpenError> {
    let (ex, created) = match node.create_exchange(&def.name, def.pattern, def.limits) {
        Ok(ex) => (ex, true),
        Err(OpenError::AlreadyExists { .. }) => (
            node.open_or_create_exchange(&def.name, def.pattern, def.limits)?,
            false,
        ),
        Err(e) => return Err(e),
    };
    // Made after the exchange is up, so its own creation is no event; if it
    // went down in between, the watch starts down and the next tick sees it.
    let watch = node.watch(&def.name)?;
    Ok((ex, watch, created))
}

/// `orders (request-response, persistent)`.
fn describe(def: &StaticExchange) -> String {
    format!(
        "{} ({}, {})",
        def.name,
        def.pattern,
        if def.limits.persistent {
            "persistent"
        } else {
            "transient"
        }
    )
}

fn exchange_event(name: &'static str, text: String, def: &StaticExchange) -> Event {
    Event::new(name, text)
        .field("exchange", Json::str(&def.name))
        .field("pattern", Json::str(def.pattern.as_str()))
        .field("persistent", Json::Bool(def.limits.persistent))
}

/// `reclaimed` by this supervisor's pass `r`; `node` `None` for a pass that
/// reclaimed ports or exchanges without a node slot.
fn reclaimed_event(
    node: Option<&NodeRef>,
    r: &Reclaimed,
    took: Duration,
    detect: Option<Duration>,
) -> Event {
    let mut text = match node {
        Some(n) => format!("reclaimed node {}: ", n.label()),
        None => "reclaimed leftovers of dead processes: ".to_string(),
    };
    text.push_str(&format!(
        "{}, {}, {} failed in {}",
        plural(r.ports, "port"),
        plural(r.chunks, "chunk"),
        plural(r.requests_failed, "request"),
        human_duration(took)
    ));
    if let Some(d) = detect {
        text.push_str(&format!(", {} after its exit was seen", human_duration(d)));
    }
    if !r.exchanges_down.is_empty() {
        text.push_str(&format!(
            "; transient exchanges down: {}",
            r.exchanges_down.join(", ")
        ));
    }
    if r.nodes.len() > 1 {
        text.push_str(&format!(" (totals of a pass over {} nodes)", r.nodes.len()));
    }
    let mut event = Event::new("reclaimed", text);
    if let Some(n) = node {
        event = event.node(n);
    }
    event = event
        .field("by", Json::str("supervisor"))
        .field("ports", Json::Num(r.ports.into()))
        .field("chunks", Json::Num(r.chunks.into()))
        .field("requests_failed", Json::Num(r.requests_failed.into()))
        .field(
            "exchanges_down",
            Json::Array(r.exchanges_down.iter().map(Json::str).collect()),
        )
        .field("busy", Json::Array(r.busy.iter().map(Json::str).collect()))
        .field("pass_nodes", Json::Num(r.nodes.len() as u64))
        .field("reclaim_us", Json::Num(micros(took)));
    if let Some(d) = detect {
        event = event.field("detect_us", Json::Num(micros(d)));
    }
    event
}

/// `reclaimed` by a pass other than this supervisor's own: a peer's (or
/// this process's) heartbeat thread, a sender, another supervisor.
fn other_reclaimed_event(node: &NodeRef) -> Event {
    Event::new(
        "reclaimed",
        format!(
            "node {} was reclaimed by another pass (a heartbeat thread's or a peer's)",
            node.label()
        ),
    )
    .node(node)
    .field("by", Json::str("other"))
}
