//! Watching an exchange: the article's `exchange_die`, and its return.
//!
//! Whoever creates an exchange, takes one down (a reclaim pass after its
//! creator died, [`Node::remove_exchange`](crate::Node::remove_exchange)) or
//! removes one (its last handle closed) moves the namespace's exchange epoch
//! and wakes every node. A [`Watch`] compares the epoch with the one it last
//! saw and, when it moved, looks at the exchange's file: present, initialised
//! and not down means up. Each incarnation of a name has its own identity, so
//! a watcher that looks only after the exchange went down and came back still
//! sees `Down` then `Up`.

use crate::error::{OpenError, WaitError};
use crate::layout::{ExchangeHeader, EX_DOWN, KIND_EXCHANGE};
use crate::registry::NodeInner;
use crate::segment::Segment;
use crate::waitset::{deadline, wait_until, WaitNode, Waitable};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A change in a watched exchange's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// The exchange went down: its creator died (a transient exchange), it
    /// was removed, or its last handle closed. Ports on it fail with
    /// `ExchangeDown`; drop them and the handle.
    Down,
    /// The exchange is up again (created anew): open it and register again.
    Up,
}

/// Watches one exchange by name. Events come in order and alternate: `Down`
/// after `Up` (or after a watch started on an exchange that was up), `Up`
/// after `Down`. A watch is also [`Waitable`], so it can join a
/// [`WaitSet`](crate::WaitSet) with the node's ports.
///
/// ```no_run
/// # fn f(node: &shmex::Node) -> Result<(), Box<dyn std::error::Error>> {
/// let watch = node.watch("orders")?;
/// loop {
///     let ex = node.open_exchange("orders")?;
///     let server = ex.server()?;
///     while let Ok(request) = server.receive() {
///         request.respond(b"done")?;
///     }
///     // ExchangeDown: wait until it is back, then register again.
///     while watch.wait(None)? != shmex::ExchangeEvent::Up {}
/// }
/// # }
/// ```
pub struct Watch {
    node: Arc<NodeInner>,
    name: String,
    path: PathBuf,
    /// The incarnation last reported up (`None`: last reported down).
    known: Cell<Option<u64>>,
    /// The namespace epoch at the last look.
    epoch: Cell<u32>,
}

impl Watch {
    pub(crate) fn new(node: &Arc<NodeInner>, name: &str) -> Result<Watch, OpenError> {
        crate::exchange::check_exchange_name(name)?;
        let path = node.namespace.exchange_path(name);
        let epoch = node.exchanges_epoch();
        Ok(Watch {
            node: node.clone(),
            name: name.to_string(),
            known: Cell::new(probe(&path, node.namespace.share_group)),
            path,
            epoch: Cell::new(epoch),
        })
    }

    /// The watched exchange's name.
    pub fn exchange(&self) -> &str {
        &self.name
    }

    /// Whether the exchange was up at the last look (creation of the watch
    /// or the last event).
    pub fn is_up(&self) -> bool {
        self.known.get().is_some()
    }

    /// The next event if one happened (never blocks).
    pub fn try_event(&self) -> Option<ExchangeEvent> {
        let epoch = self.node.exchanges_epoch();
        if epoch == self.epoch.get() {
            return None;
        }
        let now = probe(&self.path, self.node.namespace.share_group);
        match (self.known.get(), now) {
            (Some(a), Some(b)) if a == b => {
                self.epoch.set(epoch);
                None
            }
            (Some(_), Some(_)) => {
                // Down and up again since the last look: report both, the
                // `Up` on the next call (the epoch stays unseen).
                self.known.set(None);
                Some(ExchangeEvent::Down)
            }
            (Some(_), None) => {
                self.known.set(None);
                self.epoch.set(epoch);
                Some(ExchangeEvent::Down)
            }
            (None, Some(b)) => {
                self.known.set(Some(b));
                self.epoch.set(epoch);
                Some(ExchangeEvent::Up)
            }
            (None, None) => {
                self.epoch.set(epoch);
                None
            }
        }
    }

    /// Blocks until the next event, or the timeout passes (`None`: no
    /// timeout; [`WaitError::Timeout`] after).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<ExchangeEvent, WaitError> {
        let deadline = timeout.and_then(deadline);
        let forever = timeout.is_none() || deadline.is_none();
        loop {
            if let Some(e) = self.try_event() {
                return Ok(e);
            }
            wait_until(&self.node, deadline, || self.has_pending());
            // The deadline holds whatever the registry's epoch word says.
            if !forever && crate::waitset::expired(deadline) {
                return Err(WaitError::Timeout);
            }
        }
    }
}

impl Waitable for Watch {
    fn has_pending(&self) -> bool {
        self.node.exchanges_epoch() != self.epoch.get()
    }
    fn wait_node(&self) -> WaitNode {
        WaitNode(self.node.clone())
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("exchange", &self.name)
            .field("up", &self.is_up())
            .finish()
    }
}

/// The incarnation of the exchange at `path` if it is up.
fn probe(path: &std::path::Path, group: Option<u32>) -> Option<u64> {
    let seg = Segment::open_read_only(path, group).ok()??;
    if seg.is_uninitialised() || seg.check_header(KIND_EXCHANGE, "exchange").is_err() {
        return None;
    }
    let h = seg.get::<ExchangeHeader>(0)?;
    (crate::segment::load_acquire_read_only(&h.state.0) & EX_DOWN == 0)
        .then(|| h.incarnation.load(Ordering::Relaxed))
}
