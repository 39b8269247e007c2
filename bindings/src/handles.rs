//! The handle table: every object C holds sits in a slot of one table, and a
//! handle names it.
//!
//! A handle is a pointer-sized number that C sees as an opaque pointer
//! (`shmex_client *`, ...) and that is never dereferenced:
//!
//! - an object in a slot (node, exchange, port, watch, wait set):
//!   `generation << 32 | slot`;
//! - a child of a port (sample, loan, request, stream, delivery, dead
//!   letter): `1 << 63 | stamp << 32 | child << 16 | slot`, where `slot` is
//!   its port's.
//!
//! A slot answers only while its generation (bumped on every release) and
//! its kind match; a child only while its stamp (drawn from its slot's
//! counter) matches. So a released, forged or mistyped handle is
//! `SHMEX_E_STALE_HANDLE`, never a dangling pointer.
//!
//! Slots live in pages that are allocated once and never freed, each behind
//! its own mutex, so a call finds its slot without a global lock and takes
//! exactly one lock (the slot's). Only creating and releasing objects take
//! the allocator's lock.
//!
//! # Families
//!
//! The Rust types borrow: a `Sample<'a>`, `Loan<'a>`, `Request<'a>`,
//! `ResponseStream<'a>` or `Delivery<'a>` borrows the port it came from. A
//! port's slot therefore holds a [`Family`]: the port and everything
//! borrowed from it (its *children*), behind the slot's mutex.
//!
//! - The port is boxed once and never moves, so references to it stay valid
//!   while the family lives; children are made from a reference extended
//!   to `'static` ([`Locked::port`]) and stored only in the same family.
//! - A family drops its children before its port.
//! - Releasing the port while it has children (or belongs to a wait set) is
//!   `SHMEX_E_BUSY`, so no child outlives what it borrows.
//! - Every operation on the port or a child holds the slot's lock, so the
//!   port's `RefCell`s and single-consumer rings see one thread at a time
//!   even when C hands handles between threads.
//!
//! Lock order: a wait set's slot, then its members' slots in slot order
//! ([`lock_ports`]); the allocator's lock is never held with a slot's.

use crate::error::{Error, Result, SHMEX_E_BUSY, SHMEX_E_NULL, SHMEX_E_STALE_HANDLE};
use shmex_rs::{
    Client, Consumer, DeadLetter, Delivery, Exchange, Loan, Node, Producer, Publisher, Request,
    ResponseStream, Sample, Server, Submitter, Subscriber, WaitSet, Waitable, Watch, Worker,
};
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// What a handle names; checked on every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Node,
    Exchange,
    Client,
    Server,
    Publisher,
    Subscriber,
    Producer,
    Consumer,
    Submitter,
    Worker,
    Watch,
    Sample,
    Loan,
    Request,
    Stream,
    Delivery,
    DeadLetter,
    WaitSet,
}

impl Kind {
    /// The C type's name, for messages.
    pub(crate) fn c_name(self) -> &'static str {
        match self {
            Kind::Node => "shmex_node",
            Kind::Exchange => "shmex_exchange",
            Kind::Client => "shmex_client",
            Kind::Server => "shmex_server",
            Kind::Publisher => "shmex_publisher",
            Kind::Subscriber => "shmex_subscriber",
            Kind::Producer => "shmex_producer",
            Kind::Consumer => "shmex_consumer",
            Kind::Submitter => "shmex_submitter",
            Kind::Worker => "shmex_worker",
            Kind::Watch => "shmex_watch",
            Kind::Sample => "shmex_sample",
            Kind::Loan => "shmex_loan",
            Kind::Request => "shmex_request",
            Kind::Stream => "shmex_stream",
            Kind::Delivery => "shmex_delivery",
            Kind::DeadLetter => "shmex_dead_letter",
            Kind::WaitSet => "shmex_waitset",
        }
    }
}

/// A port (or a watch): the owner of a family.
pub(crate) enum Port {
    Client(Client),
    Server(Server),
    Publisher(Publisher),
    Subscriber(Subscriber),
    Producer(Producer),
    Consumer(Consumer),
    Submitter(Submitter),
    Worker(Worker),
    Watch(Watch),
}

impl Port {
    /// The port as something a wait set can wait on; `None` for ports that
    /// only send.
    pub(crate) fn waitable(&self) -> Option<&dyn Waitable> {
        match self {
            Port::Client(p) => Some(p),
            Port::Server(p) => Some(p),
            Port::Subscriber(p) => Some(p),
            Port::Consumer(p) => Some(p),
            Port::Worker(p) => Some(p),
            Port::Watch(p) => Some(p),
            Port::Publisher(_) | Port::Producer(_) | Port::Submitter(_) => None,
        }
    }
}

/// Something borrowed from a family's port.
pub(crate) enum Child {
    /// A received sample, and its routing key once C asked for it (a copy
    /// with a NUL, so C gets a C string that lives as long as the sample).
    Sample(Sample<'static>, Option<CString>),
    Loan(Loan<'static>),
    Request(Request<'static>),
    Stream(ResponseStream<'static>),
    Delivery(Delivery<'static>),
    DeadLetter(DeadLetter<'static>),
}

impl Child {
    fn kind(&self) -> Kind {
        match self {
            Child::Sample(..) => Kind::Sample,
            Child::Loan(_) => Kind::Loan,
            Child::Request(_) => Kind::Request,
            Child::Stream(_) => Kind::Stream,
            Child::Delivery(_) => Kind::Delivery,
            Child::DeadLetter(_) => Kind::DeadLetter,
        }
    }
}

/// Live children one port may have at once (loans, samples, ...).
const MAX_CHILDREN: usize = 1 << 16;

/// A port and its children.
pub(crate) struct Family {
    /// Children by index: the stamp of their handle, and the child.
    children: Vec<Option<(u32, Child)>>,
    /// Empty entries of `children`.
    free: Vec<usize>,
    /// Wait sets this port belongs to.
    waitsets: usize,
    /// Children (by index) that belong to wait sets, once per wait set: a
    /// stream cannot end while a wait set holds it.
    joined: Vec<usize>,
    /// The port, owned (from `Box::leak`), freed in `drop` after the
    /// children. Never moves and is only ever borrowed shared.
    port: NonNull<Port>,
}

// SAFETY: a Family is only reached through its slot's Mutex, so one thread
// at a time uses the port and its children. They are not Send only because
// children hold `&Server`/`&Worker` and ports hold `RefCell`s and `Cell`s
// (not Sync): nothing in them is tied to a thread (no Rc, no thread-local
// kept between calls; the node's control lock marks its thread-local only
// for the duration of one call). Moving the family between threads under
// the lock is therefore sound.
unsafe impl Send for Family {}

impl Drop for Family {
    fn drop(&mut self) {
        // Children first: they borrow the port.
        self.children.clear();
        // SAFETY: `port` came from Box::leak in `Family::new` and is freed
        // only here; no child is left to borrow it.
        drop(unsafe { Box::from_raw(self.port.as_ptr()) });
    }
}

impl Family {
    fn new(port: Port) -> Family {
        Family {
            children: Vec::new(),
            free: Vec::new(),
            waitsets: 0,
            joined: Vec::new(),
            port: NonNull::from(Box::leak(Box::new(port))),
        }
    }

    fn live(&self) -> usize {
        self.children.len() - self.free.len()
    }
}

/// What a slot holds.
pub(crate) enum Object {
    Node(Node),
    Exchange(Exchange),
    /// A port or watch with its children.
    Port(Family),
    /// A wait set.
    WaitSet(WaitSetObject),
}

/// A wait set: its members, and the buffers its waits reuse so that a wait
/// allocates nothing once they have grown to the set's size.
#[derive(Default)]
pub(crate) struct WaitSetObject {
    /// The members, by index.
    members: Vec<Member>,
    /// The members' ports, each once, in slot order: the lock order.
    ports: Vec<Member>,
    /// The locks a wait holds; empty between waits.
    guards: Vec<Locked>,
    /// The members as one Rust wait set, filled during a wait only: its
    /// references borrow from the ports locked in `guards`.
    set: WaitSet<'static>,
    /// The indices the last wait found ready.
    ready: Vec<usize>,
}

// SAFETY: `guards` and `set` are emptied before every call that fills them
// returns (see `WaitSetObject::wait`), on the thread that filled them, so
// between calls the object holds only members, indices and empty buffers;
// it is reached only through its slot's Mutex.
unsafe impl Send for WaitSetObject {}

impl WaitSetObject {
    /// The members, by index.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// Appends member `m` (which [`join`]ed already); returns its index.
    pub(crate) fn push(&mut self, m: Member) -> usize {
        if let Err(k) = self.ports.binary_search_by_key(&m.slot, |p| p.slot) {
            self.ports.insert(k, m);
        }
        self.members.push(m);
        self.members.len() - 1
    }

    /// Locks the members' ports (in slot order, each once), waits on them
    /// with the Rust `WaitSet`, and unlocks them; returns the ready indices.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Result<&[usize]> {
        /// Empties the set, then unlocks the guards, however the wait ends.
        struct Reset<'x> {
            set: &'x mut WaitSet<'static>,
            guards: &'x mut Vec<Locked>,
        }
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.set.clear();
                self.guards.clear();
            }
        }
        let r = Reset {
            set: &mut self.set,
            guards: &mut self.guards,
        };
        r.set.clear();
        r.guards.clear();
        for &p in &self.ports {
            r.guards.push(lock_member(p)?);
        }
        for &m in &self.members {
            let waitable = waitable_in(r.guards, m)?;
            // SAFETY: `waitable` borrows the port (or a child) of a family
            // whose slot `guards` keeps locked; `Reset` empties `set` before
            // it unlocks them, and `set` is not used past this call.
            let waitable: &'static dyn Waitable = unsafe { std::mem::transmute(waitable) };
            r.set.add(waitable)?;
        }
        r.set.wait_into(timeout, &mut self.ready)?;
        drop(r);
        Ok(&self.ready)
    }
}

/// A wait set's member: a port's slot and generation, and for a stream
/// (a child of that port) its handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    slot: usize,
    generation: u32,
    stream: Option<usize>,
}

struct SlotState {
    /// Bumped on every release: handles of earlier objects go stale.
    generation: u32,
    /// Stamps of children's handles, counting across the slot's objects.
    stamps: u32,
    kind: Kind,
    object: Option<Object>,
}

struct Slot(Mutex<SlotState>);

const PAGE: usize = 1024;
const PAGES: usize = 64;
/// Objects alive at once (handles of children not included).
const MAX_SLOTS: usize = PAGE * PAGES;

/// Pages of slots, allocated on first use and never freed: a slot's address
/// is stable for the life of the process.
static DIRECTORY: [OnceLock<Box<[Slot]>>; PAGES] = [const { OnceLock::new() }; PAGES];

/// Free slots, and the next never used.
struct Allocator {
    free: Vec<usize>,
    next: usize,
}

static ALLOCATOR: Mutex<Allocator> = Mutex::new(Allocator {
    free: Vec::new(),
    next: 0,
});

fn slot(index: usize) -> Option<&'static Slot> {
    let page = DIRECTORY.get(index / PAGE)?.get()?;
    page.get(index % PAGE)
}

fn lock(slot: &'static Slot) -> MutexGuard<'static, SlotState> {
    // A poisoned lock is taken over (see `error::ffi`).
    slot.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 31-bit counters (generations, stamps) that skip 0.
fn next_count(n: u32) -> u32 {
    match n.wrapping_add(1) & 0x7FFF_FFFF {
        0 => 1,
        n => n,
    }
}

const CHILD: usize = 1 << 63;

fn slot_handle(index: usize, generation: u32) -> usize {
    (generation as usize) << 32 | index
}

fn child_handle(index: usize, child: usize, stamp: u32) -> usize {
    CHILD | (stamp as usize) << 32 | child << 16 | index
}

/// The parts of a handle: slot, child (for child handles), generation or
/// stamp.
fn split(handle: usize) -> (usize, Option<usize>, u32) {
    let count = ((handle >> 32) & 0x7FFF_FFFF) as u32;
    if handle & CHILD != 0 {
        (handle & 0xFFFF, Some((handle >> 16) & 0xFFFF), count)
    } else {
        (handle & 0xFFFF_FFFF, None, count)
    }
}

fn null(kind: Kind) -> Error {
    Error::new(
        SHMEX_E_NULL,
        format!("the {} handle is NULL", kind.c_name()),
    )
}

fn stale(kind: Kind) -> Error {
    Error::new(
        SHMEX_E_STALE_HANDLE,
        format!(
            "the {} handle was released already (or is not a {})",
            kind.c_name(),
            kind.c_name()
        ),
    )
}

fn full() -> Error {
    Error::invalid(format!(
        "too many objects alive at once ({MAX_SLOTS} nodes, exchanges, ports and wait sets)"
    ))
}

/// Puts an object in a free slot; returns its handle (never 0).
pub(crate) fn insert(kind: Kind, object: Object) -> Result<usize> {
    let index = {
        let mut a = ALLOCATOR.lock().unwrap_or_else(PoisonError::into_inner);
        match a.free.pop() {
            Some(i) => i,
            None if a.next < MAX_SLOTS => {
                let i = a.next;
                DIRECTORY[i / PAGE].get_or_init(|| {
                    (0..PAGE)
                        .map(|_| {
                            Slot(Mutex::new(SlotState {
                                generation: 0,
                                stamps: 0,
                                kind,
                                object: None,
                            }))
                        })
                        .collect()
                });
                a.next += 1;
                i
            }
            None => return Err(full()),
        }
    };
    let mut s = lock(slot(index).expect("allocated slots exist"));
    s.generation = next_count(s.generation);
    s.kind = kind;
    s.object = Some(object);
    Ok(slot_handle(index, s.generation))
}

/// Registers a new port: a family of its own.
pub(crate) fn new_port(kind: Kind, port: Port) -> Result<usize> {
    insert(kind, Object::Port(Family::new(port)))
}

/// Locks the slot of object `handle`, of `kind` (`None`: any kind).
fn lock_object(
    handle: usize,
    kind: Option<Kind>,
) -> Result<(usize, MutexGuard<'static, SlotState>)> {
    if handle == 0 {
        return Err(kind.map_or_else(|| Error::null("the handle"), null));
    }
    let (index, child, generation) = split(handle);
    let s = match slot(index) {
        Some(s) if child.is_none() => lock(s),
        _ => return Err(stale_any(kind)),
    };
    if s.generation != generation || s.object.is_none() || kind.is_some_and(|k| k != s.kind) {
        return Err(stale_any(kind));
    }
    Ok((index, s))
}

fn stale_any(kind: Option<Kind>) -> Error {
    match kind {
        Some(k) => stale(k),
        None => Error::new(
            SHMEX_E_STALE_HANDLE,
            "the handle was released already (or was never one)",
        ),
    }
}

/// The kind of a live object handle (for functions that take several
/// kinds).
pub(crate) fn kind_of(handle: usize) -> Result<Kind> {
    // A child (live or not) is never what callers want: they want objects.
    lock_object(handle, None).map(|(_, s)| s.kind)
}

/// A clone of the node behind `handle`.
pub(crate) fn node(handle: usize) -> Result<Node> {
    let (_, s) = lock_object(handle, Some(Kind::Node))?;
    match &s.object {
        Some(Object::Node(n)) => Ok(n.clone()),
        _ => unreachable!("a Node slot holds a node"),
    }
}

/// A clone of the exchange behind `handle`.
pub(crate) fn exchange(handle: usize) -> Result<Exchange> {
    let (_, s) = lock_object(handle, Some(Kind::Exchange))?;
    match &s.object {
        Some(Object::Exchange(x)) => Ok(x.clone()),
        _ => unreachable!("an Exchange slot holds an exchange"),
    }
}

/// A locked port slot.
pub(crate) struct Locked {
    index: usize,
    state: MutexGuard<'static, SlotState>,
}

impl Locked {
    /// The family.
    pub(crate) fn family(&mut self) -> &mut Family {
        match &mut self.state.object {
            Some(Object::Port(f)) => f,
            _ => unreachable!("a port slot holds a family"),
        }
    }

    /// What member `m` (of this port) waits on: the port, or its stream;
    /// `None` when it cannot wait or the stream is gone.
    fn waitable(&self, m: Member) -> Option<&dyn Waitable> {
        let Some(stream) = m.stream else {
            return self.port().waitable();
        };
        let Some(Object::Port(f)) = &self.state.object else {
            unreachable!("a port slot holds a family")
        };
        let (index, Some(i), stamp) = split(stream) else {
            return None;
        };
        match f.children.get(i) {
            Some(Some((s, Child::Stream(st)))) if index == self.index && *s == stamp => Some(st),
            _ => None,
        }
    }

    /// The port, with its lifetime extended to `'static` so that what is
    /// borrowed from it can be stored as a child of this family.
    ///
    /// Use the reference only inside the current call, or to make children
    /// that are then [`adopt`](Self::adopt)ed by this same family.
    pub(crate) fn port(&self) -> &'static Port {
        let Some(Object::Port(f)) = &self.state.object else {
            unreachable!("a port slot holds a family")
        };
        // SAFETY: the Port was boxed in `Family::new` and is freed only when
        // the Family drops, after all its children (see its Drop). The only
        // references that outlive this call are held by children of this
        // family (stored through `adopt`), and a family is dropped only when
        // its port is released, which `release_port` refuses while children
        // remain. The Port is only ever borrowed shared.
        unsafe { &*f.port.as_ptr() }
    }

    /// Stores a child and gives it a handle.
    pub(crate) fn adopt(&mut self, child: Child) -> Result<usize> {
        self.state.stamps = next_count(self.state.stamps);
        let stamp = self.state.stamps;
        let index = self.index;
        let f = self.family();
        let i = match f.free.pop() {
            Some(i) => {
                f.children[i] = Some((stamp, child));
                i
            }
            None if f.children.len() < MAX_CHILDREN => {
                f.children.push(Some((stamp, child)));
                f.children.len() - 1
            }
            None => {
                return Err(Error::invalid(format!(
                    "a port may hold at most {MAX_CHILDREN} samples, loans and requests at once"
                )))
            }
        };
        Ok(child_handle(index, i, stamp))
    }

    /// Where child `handle` of `kind` lives in this family, if it does.
    fn find(&mut self, handle: usize, kind: Kind) -> Result<usize> {
        if handle == 0 {
            return Err(null(kind));
        }
        let (index, child, stamp) = split(handle);
        let Some(i) = child else {
            return Err(stale(kind));
        };
        if index != self.index {
            // Another port's child, or no child at all: only a loan may
            // come from elsewhere (see `consuming_loan`, which checked it).
            return Err(match kind {
                Kind::Loan => Error::invalid("the shmex_loan belongs to another port"),
                _ => stale(kind),
            });
        }
        match self.family().children.get(i) {
            Some(Some((s, c))) if *s == stamp && c.kind() == kind => Ok(i),
            _ => Err(stale(kind)),
        }
    }

    /// Checks that child `handle` of `kind` belongs to this family and lives.
    pub(crate) fn check(&mut self, handle: usize, kind: Kind) -> Result<()> {
        self.find(handle, kind).map(drop)
    }

    /// Consumes child `handle` of this family (e.g. a loan being sent): its
    /// handle goes stale and the child comes out. A loan of another port is
    /// `SHMEX_E_INVALID_ARGUMENT` and stays as it was (`consuming_loan`
    /// releases it); any other child of another port is stale here.
    pub(crate) fn claim(&mut self, handle: usize, kind: Kind) -> Result<Child> {
        let i = self.find(handle, kind)?;
        let f = self.family();
        let (_, child) = f.children[i].take().expect("found");
        f.free.push(i);
        Ok(child)
    }

    /// Runs `f` on child `handle` in place (it may use the family too, e.g.
    /// adopt a loan from a stream).
    pub(crate) fn with_child<R>(
        &mut self,
        handle: usize,
        kind: Kind,
        f: impl FnOnce(&mut Child, &mut Locked) -> Result<R>,
    ) -> Result<R> {
        let i = self.find(handle, kind)?;
        // Out of its entry for the call; the entry stays reserved (not on
        // the free list) meanwhile.
        let (stamp, mut child) = self.family().children[i].take().expect("found");
        let result = f(&mut child, self);
        self.family().children[i] = Some((stamp, child));
        result
    }
}

/// Locks the slot of port `handle` (of `kind`).
fn lock_port(handle: usize, kind: Kind) -> Result<Locked> {
    let (index, state) = lock_object(handle, Some(kind))?;
    Ok(Locked { index, state })
}

/// Runs `f` on port `handle` under its slot's lock.
pub(crate) fn with_port<R>(
    handle: usize,
    kind: Kind,
    f: impl FnOnce(&mut Locked) -> Result<R>,
) -> Result<R> {
    f(&mut lock_port(handle, kind)?)
}

/// Locks the port whose child `handle` is (whatever the port's kind).
fn lock_parent(handle: usize, kind: Kind) -> Result<Locked> {
    if handle == 0 {
        return Err(null(kind));
    }
    let (index, child, _) = split(handle);
    let state = match slot(index) {
        Some(s) if child.is_some() => lock(s),
        _ => return Err(stale(kind)),
    };
    if !matches!(state.object, Some(Object::Port(_))) {
        return Err(stale(kind));
    }
    Ok(Locked { index, state })
}

/// Runs `f` on child `handle` in place, under its port's lock.
pub(crate) fn with_child<R>(
    handle: usize,
    kind: Kind,
    f: impl FnOnce(&mut Child, &mut Locked) -> Result<R>,
) -> Result<R> {
    lock_parent(handle, kind)?.with_child(handle, kind, f)
}

/// Consumes child handles that must all belong to one port: checks them
/// all, then takes them out (so the handles are stale from now on) and runs
/// `f` on them under the port's lock.
pub(crate) fn consume<const N: usize, R>(
    handles: [(usize, Kind); N],
    f: impl FnOnce([Child; N], &mut Locked) -> Result<R>,
) -> Result<R> {
    let mut locked = lock_parent(handles[0].0, handles[0].1)?;
    for (i, &(h, kind)) in handles.iter().enumerate() {
        let child = locked.find(h, kind)?;
        if locked.family().joined.contains(&child) {
            return Err(Error::new(
                SHMEX_E_BUSY,
                format!(
                    "the {} belongs to a wait set: free the wait set first",
                    kind.c_name()
                ),
            ));
        }
        if handles[..i].iter().any(|&(other, _)| other == h) {
            return Err(Error::invalid("the same handle is passed twice"));
        }
    }
    let children = handles.map(|(h, kind)| locked.claim(h, kind).expect("checked above"));
    f(children, &mut locked)
}

/// Runs `send`, which claims loan `loan` ([`Locked::claim`]), so that a
/// loan passed to a send is consumed whatever the outcome: a handle that is
/// no live loan fails first (`SHMEX_E_NULL`, `SHMEX_E_STALE_HANDLE`), and a
/// loan that `send` did not claim (a bad port handle or argument, a loan of
/// another port) is released when it fails.
pub(crate) fn consuming_loan(loan: usize, send: impl FnOnce() -> Result<()>) -> Result<()> {
    with_child(loan, Kind::Loan, |_, _| Ok(()))?;
    let result = send();
    if result.is_err() {
        // Stale already when `send` claimed it: nothing happens then.
        let _ = release_child(loan, Kind::Loan);
    }
    result
}

/// Releases child `handle`: drops it under its port's lock.
pub(crate) fn release_child(handle: usize, kind: Kind) -> Result<()> {
    consume([(handle, kind)], |[child], _| {
        drop(child);
        Ok(())
    })
}

/// Empties slot `index` (locked as `state`): its handles go stale and it
/// returns to the allocator. The object is dropped after the slot's lock.
fn vacate(index: usize, mut state: MutexGuard<'static, SlotState>) {
    let object = state.object.take();
    state.generation = next_count(state.generation);
    drop(state);
    drop(object);
    ALLOCATOR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .free
        .push(index);
}

/// Releases port `handle`: `SHMEX_E_BUSY` while it has children or belongs
/// to a wait set; otherwise the port is dropped (it detaches from its
/// exchange).
pub(crate) fn release_port(handle: usize, kind: Kind) -> Result<()> {
    let mut locked = lock_port(handle, kind)?;
    let f = locked.family();
    let (live, waitsets) = (f.live(), f.waitsets);
    if live > 0 || waitsets > 0 {
        return Err(Error::new(
            SHMEX_E_BUSY,
            format!(
                "the {} still has {live} live samples/loans/requests/streams/deliveries \
                 and belongs to {waitsets} wait sets: release them first",
                kind.c_name(),
            ),
        ));
    }
    vacate(locked.index, locked.state);
    Ok(())
}

/// Releases a node or exchange handle.
pub(crate) fn release(handle: usize, kind: Kind) -> Result<()> {
    let (index, state) = lock_object(handle, Some(kind))?;
    vacate(index, state);
    Ok(())
}

/// Runs `f` on wait set `handle`, under its slot's lock.
pub(crate) fn with_waitset<R>(
    handle: usize,
    f: impl FnOnce(&mut WaitSetObject) -> Result<R>,
) -> Result<R> {
    let (_, mut s) = lock_object(handle, Some(Kind::WaitSet))?;
    match &mut s.object {
        Some(Object::WaitSet(w)) => f(w),
        _ => unreachable!("a WaitSet slot holds a wait set"),
    }
}

/// Releases wait set `handle`: its members can be released again.
pub(crate) fn release_waitset(handle: usize) -> Result<()> {
    let (index, mut state) = lock_object(handle, Some(Kind::WaitSet))?;
    let members = match &mut state.object {
        Some(Object::WaitSet(w)) => std::mem::take(&mut w.members),
        _ => unreachable!("a WaitSet slot holds a wait set"),
    };
    vacate(index, state);
    for m in members {
        if let Ok(mut locked) = lock_member(m) {
            let f = locked.family();
            match m.stream.map(split) {
                Some((_, Some(child), _)) => {
                    if let Some(k) = f.joined.iter().position(|&j| j == child) {
                        f.joined.swap_remove(k);
                    }
                }
                _ => f.waitsets -= 1,
            }
        }
    }
    Ok(())
}

/// The member for port `handle` (of any kind): its slot and generation.
pub(crate) fn member(handle: usize, kind: Kind) -> Result<Member> {
    let locked = lock_port(handle, kind)?;
    Ok(Member {
        slot: locked.index,
        generation: locked.state.generation,
        stream: None,
    })
}

/// The member for stream `handle`: its server's slot and generation, and
/// the stream's handle.
pub(crate) fn stream_member(handle: usize) -> Result<Member> {
    let mut locked = lock_parent(handle, Kind::Stream)?;
    locked.check(handle, Kind::Stream)?;
    Ok(Member {
        slot: locked.index,
        generation: locked.state.generation,
        stream: Some(handle),
    })
}

/// Records that member `m` joined a wait set: until the wait set is freed,
/// its port cannot be freed nor its stream ended (`SHMEX_E_BUSY`).
pub(crate) fn join(m: Member) -> Result<()> {
    let mut locked = lock_member(m)?;
    match m.stream {
        Some(stream) => {
            let child = locked.find(stream, Kind::Stream)?;
            locked.family().joined.push(child);
        }
        None => locked.family().waitsets += 1,
    }
    Ok(())
}

/// Locks the port slot of member `m`, if it still holds that port.
fn lock_member(m: Member) -> Result<Locked> {
    let s = lock(slot(m.slot).ok_or_else(|| stale_any(None))?);
    if s.generation != m.generation || !matches!(s.object, Some(Object::Port(_))) {
        return Err(stale_any(None));
    }
    Ok(Locked {
        index: m.slot,
        state: s,
    })
}

/// The locked ports of some wait set members, each port once (a server
/// and its streams share one lock).
pub(crate) struct LockedMembers(Vec<Locked>);

impl LockedMembers {
    /// What member `m` (one of those locked) waits on.
    pub(crate) fn waitable(&self, m: Member) -> Result<&dyn Waitable> {
        waitable_in(&self.0, m)
    }
}

/// What member `m` waits on, when `guards` hold its port.
fn waitable_in(guards: &[Locked], m: Member) -> Result<&dyn Waitable> {
    guards
        .iter()
        .find(|l| l.index == m.slot)
        .and_then(|l| l.waitable(m))
        .ok_or_else(|| stale_any(None))
}

/// Locks the ports of `members` in slot order (so two threads locking
/// overlapping sets cannot deadlock), each port once.
pub(crate) fn lock_ports(members: &[Member]) -> Result<LockedMembers> {
    let mut order = members.to_vec();
    order.sort_by_key(|m| m.slot);
    order.dedup_by_key(|m| m.slot);
    let guards = order.into_iter().map(lock_member).collect::<Result<_>>()?;
    Ok(LockedMembers(guards))
}

/// Converts a handle to the C pointer type.
pub(crate) fn to_ptr<T>(handle: usize) -> *mut T {
    handle as *mut T
}

/// The handle a C pointer carries.
pub(crate) fn of<T>(p: *const T) -> usize {
    p as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T>(r: Result<T>) -> std::ffi::c_int {
        r.err().map_or(0, |e| e.code)
    }

    #[test]
    fn released_handles_are_stale_and_slots_are_reused() {
        let a = insert(Kind::WaitSet, Object::WaitSet(WaitSetObject::default())).unwrap();
        assert_eq!(kind_of(a).unwrap(), Kind::WaitSet);
        assert_eq!(code(node(a)), SHMEX_E_STALE_HANDLE, "wrong kind");
        release_waitset(a).unwrap();
        assert_eq!(code(release_waitset(a)), SHMEX_E_STALE_HANDLE);
        let b = insert(Kind::WaitSet, Object::WaitSet(WaitSetObject::default())).unwrap();
        assert_ne!(a, b);
        assert_eq!(code(with_waitset(a, |_| Ok(()))), SHMEX_E_STALE_HANDLE);
        assert_eq!(code(with_waitset(b, |_| Ok(()))), 0);
        assert_eq!(code(with_waitset(0, |_| Ok(()))), SHMEX_E_NULL);
        for forged in [
            0xdead_beef_0000_0001,
            0x7fff_ffff_ffff_ffff,
            usize::MAX,
            CHILD | 5,
        ] {
            assert_eq!(code(with_waitset(forged, |_| Ok(()))), SHMEX_E_STALE_HANDLE);
            assert_eq!(code(kind_of(forged)), SHMEX_E_STALE_HANDLE);
            assert_eq!(
                code(with_child(forged, Kind::Sample, |_, _| Ok(()))),
                SHMEX_E_STALE_HANDLE
            );
        }
        release_waitset(b).unwrap();
    }

    #[test]
    fn handles_round_trip() {
        assert_eq!(split(slot_handle(7, 0x7FFF_FFFF)), (7, None, 0x7FFF_FFFF));
        assert_eq!(
            split(child_handle(65535, 65535, 3)),
            (65535, Some(65535), 3)
        );
        assert_eq!(next_count(0x7FFF_FFFF), 1);
    }
}
