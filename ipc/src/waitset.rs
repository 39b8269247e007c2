//! Blocking: spin briefly, then sleep on the node's wait word.
//!
//! Every port of a node shares the node's wait word (in the registry), and
//! every sender wakes the receiving port's node. So one thread can block on
//! any set of its node's ports, across exchanges: a [`WaitSet`].

use crate::error::{RecvError, WaitError};
use crate::exchange::PortCore;
use crate::registry::NodeInner;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spins for the node's spin budget, then sleeps until `ready()` or the
/// deadline. Returns whether `ready()` became true.
pub(crate) fn wait_until(
    node: &NodeInner,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if ready() {
        return true;
    }
    let start = Instant::now();
    // A budget too large to represent spins until the deadline.
    let spin_until = start.checked_add(node.spin);
    let mut i = 0u32;
    // A zero spin budget sleeps at once.
    while !node.spin.is_zero() {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        i += 1;
        if i.is_multiple_of(4) {
            let now = Instant::now();
            if spin_until.is_some_and(|s| now >= s) || deadline.is_some_and(|d| now >= d) {
                break;
            }
        }
    }
    let Some(slot) = node.own_slot() else {
        return false;
    };
    let word = &slot.wait.0;
    loop {
        let token = word.prepare();
        node.before_sleep_check();
        if ready() {
            word.finish();
            return true;
        }
        let remaining = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    word.finish();
                    return false;
                }
                Some(d - now)
            }
            None => None,
        };
        crate::sys::futex_wait(&word.seq, token, remaining);
        word.finish();
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

/// Readiness reported by a shared word (a ring's tail or published
/// sequence) that the receive then did not find, more times in a row than
/// this, makes a waiter back off: sleep up to [`PHANTOM_SLEEP`] per round
/// instead of spinning.
const PHANTOM_SPINS: u32 = 64;
/// Longest back-off sleep of a waiter that keeps finding phantom readiness.
const PHANTOM_SLEEP: Duration = Duration::from_millis(1);
/// How often a waiter that keeps finding phantom readiness asks for a
/// reclaim pass (which voids a dead producer's claimed slot and rebuilds
/// the task queues).
const PHANTOM_RECOVER: Duration = Duration::from_millis(100);

/// Counts wake-ups whose readiness the receive did not confirm: a slot a
/// producer claimed but has not published (or never will: it died), or
/// shared words that are corrupt. Readiness comes from words other
/// processes write, so a waiter never trusts it to make progress: after
/// [`PHANTOM_SPINS`] such wake-ups in a row it sleeps a little each round,
/// and every [`PHANTOM_RECOVER`] it tells the caller to start recovery.
#[derive(Default)]
pub(crate) struct Phantom {
    count: u32,
    since: Option<Instant>,
}

impl Phantom {
    /// Records one unconfirmed wake-up; sleeps (never past `deadline`) once
    /// they keep coming. Returns true when the caller should start a
    /// reclaim pass.
    pub(crate) fn step(&mut self, deadline: Option<Instant>) -> bool {
        self.count = self.count.saturating_add(1);
        if self.count < PHANTOM_SPINS {
            std::hint::spin_loop();
            return false;
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let nap = deadline.map_or(PHANTOM_SLEEP, |d| {
            d.saturating_duration_since(now).min(PHANTOM_SLEEP)
        });
        std::thread::sleep(nap);
        if now.saturating_duration_since(since) >= PHANTOM_RECOVER {
            self.since = Some(now);
            return true;
        }
        false
    }
}

/// True once `deadline` (if any) has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The earlier of `deadline` and `slice` from now: how long a blocked call
/// that must also look at something every `slice` may sleep.
pub(crate) fn until_next_check(deadline: Option<Instant>, slice: Duration) -> Option<Instant> {
    match (deadline, self::deadline(slice)) {
        (Some(d), Some(s)) => Some(d.min(s)),
        (d, s) => d.or(s),
    }
}

/// Something a thread can wait on: every port type.
pub trait Waitable {
    /// True when a receive would return something now (or once, after owned
    /// values of the port were dropped on other threads: a call on the port
    /// then carries out their releases).
    fn has_pending(&self) -> bool;
    #[doc(hidden)]
    fn wait_node(&self) -> WaitNode;
}

/// Opaque: the node whose wait word a port uses.
#[doc(hidden)]
pub struct WaitNode(pub(crate) Arc<NodeInner>);

impl std::fmt::Debug for WaitNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WaitNode").field(&self.0.index).finish()
    }
}

/// A set of ports one thread waits on at once, like a mailbox: ports of any
/// exchanges, as long as they belong to one node.
///
/// ```no_run
/// # fn f(server: &shmex::Server, sub: &shmex::Subscriber) -> Result<(), shmex::WaitError> {
/// let mut set = shmex::WaitSet::new();
/// let s = set.add(server)?;
/// let p = set.add(sub)?;
/// for ready in set.wait(None)? {
///     if ready == s { /* server.try_receive() */ }
///     if ready == p { /* sub.try_receive() */ }
/// }
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct WaitSet<'a> {
    node: Option<Arc<NodeInner>>,
    ports: Vec<&'a dyn Waitable>,
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("node", &self.node.as_ref().map(|n| n.index))
            .field("ports", &self.ports.len())
            .finish()
    }
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> Self {
        WaitSet {
            node: None,
            ports: Vec::new(),
        }
    }

    /// Adds a port; returns its index in the set. Fails when the port belongs
    /// to another node than the ports already added.
    pub fn add(&mut self, port: &'a dyn Waitable) -> Result<usize, WaitError> {
        let node = port.wait_node().0;
        match &self.node {
            Some(n) if !Arc::ptr_eq(n, &node) => return Err(WaitError::ForeignPort),
            Some(_) => {}
            None => self.node = Some(node),
        }
        self.ports.push(port);
        Ok(self.ports.len() - 1)
    }

    /// Removes every port, keeping the buffer: a set refilled with at most
    /// as many ports as before allocates nothing. Its node is forgotten
    /// too, so ports of any node can join it again.
    pub fn clear(&mut self) {
        self.node = None;
        self.ports.clear();
    }

    /// Indices of the ports with something to receive now (never blocks).
    /// Allocates the returned `Vec`; [`ready_into`](Self::ready_into) reuses
    /// a buffer instead.
    pub fn ready(&self) -> Vec<usize> {
        let mut ready = Vec::new();
        self.ready_into(&mut ready);
        ready
    }

    /// Like [`ready`](Self::ready), into `ready` (cleared first): once its
    /// capacity has grown to the set's size, it never allocates.
    pub fn ready_into(&self, ready: &mut Vec<usize>) {
        ready.clear();
        ready.extend((0..self.ports.len()).filter(|&i| self.ports[i].has_pending()));
    }

    /// Blocks until at least one port has something to receive, or the
    /// timeout passes (`None`: no timeout). Returns the ready indices.
    /// Allocates the returned `Vec`; [`wait_into`](Self::wait_into), the
    /// same wait into a reused buffer, does not.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<usize>, WaitError> {
        let mut ready = Vec::new();
        self.wait_into(timeout, &mut ready)?;
        Ok(ready)
    }

    /// Blocks until at least one port has something to receive, or the
    /// timeout passes (`None`: no timeout); the ready indices go to `ready`
    /// (cleared first; left empty on an error). Once `ready`'s capacity
    /// has grown to the set's size, a wait allocates nothing, so an event
    /// loop can keep one buffer for all its wake-ups:
    ///
    /// ```no_run
    /// # fn f(server: &shmex::Server) -> Result<(), shmex::WaitError> {
    /// let mut set = shmex::WaitSet::new();
    /// set.add(server)?;
    /// let mut ready = Vec::with_capacity(1);
    /// loop {
    ///     set.wait_into(None, &mut ready)?;
    ///     for &i in &ready { /* receive on port i */ }
    /// }
    /// # }
    /// ```
    ///
    /// An empty set waits like `poll(2)` with no descriptors: with a
    /// timeout it sleeps until the deadline, then returns
    /// [`WaitError::Timeout`]. Without a timeout it returns
    /// [`WaitError::Empty`] at once rather than block the thread forever:
    /// the set cannot gain a port while it waits, so nothing could ever
    /// wake it.
    pub fn wait_into(
        &self,
        timeout: Option<Duration>,
        ready: &mut Vec<usize>,
    ) -> Result<(), WaitError> {
        ready.clear();
        let deadline = timeout.and_then(deadline);
        let forever = timeout.is_none() || deadline.is_none();
        let Some(node) = &self.node else {
            let Some(deadline) = deadline.filter(|_| !forever) else {
                return Err(WaitError::Empty);
            };
            // Sleeps until the deadline (`sleep` may wake early: loop).
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left);
            }
            return Err(WaitError::Timeout);
        };
        let mut phantom = Phantom::default();
        loop {
            let woke = wait_until(node, deadline, || {
                self.ports.iter().any(|p| p.has_pending())
            });
            if woke {
                self.ready_into(ready);
                if !ready.is_empty() {
                    return Ok(());
                }
            }
            // The deadline holds whatever the shared words say.
            if !forever && expired(deadline) {
                return Err(WaitError::Timeout);
            }
            if woke {
                phantom.step(deadline);
            }
        }
    }
}

/// Receives with the port's blocking policy: spin, then sleep.
pub(crate) fn blocking<T>(
    core: &PortCore,
    timeout: Option<Duration>,
    mut try_receive: impl FnMut() -> Result<Option<T>, RecvError>,
) -> Result<T, RecvError> {
    let deadline = timeout.and_then(deadline);
    let forever = timeout.is_none() || deadline.is_none();
    let mut phantom = Phantom::default();
    loop {
        if let Some(x) = try_receive()? {
            return Ok(x);
        }
        let woke = wait_until(&core.ex.node, deadline, || core.has_pending());
        // Checked after every wait, woken or not: the inbox may say something
        // is pending that the receive never finds (a dead producer's claimed
        // slot, corrupt words), and the deadline must hold all the same.
        if !forever && expired(deadline) {
            return Err(RecvError::Timeout);
        }
        if woke && phantom.step(deadline) {
            core.ex.reclaim_now();
        }
    }
}

macro_rules! waitable {
    ($t:ty) => {
        impl Waitable for $t {
            fn has_pending(&self) -> bool {
                self.core.has_pending()
            }
            fn wait_node(&self) -> WaitNode {
                WaitNode(self.core.ex.node.clone())
            }
        }
    };
}
pub(crate) use waitable;
