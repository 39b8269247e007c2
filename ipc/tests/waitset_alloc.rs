//! A wait set's steady state allocates nothing: a parent waits with
//! `WaitSet::wait_into` on a subscriber that a child process publishes to,
//! one message at a time, and a counting global allocator sees no
//! allocation inside any wait after the first few wake-ups. Also: an empty
//! set waits until its timeout (as `poll(2)` does), and refuses to wait
//! forever.

mod common;

use common::{child_node, env_u64, report, ChildProc, TestNs};
use shmex::{Limits, Pattern, WaitError, WaitSet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Counts the allocations of each thread (a thread-local count, so the
/// test harness's other threads do not disturb it).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no count any more.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Messages the child publishes, one at a time.
const MESSAGES: u64 = 300;
/// Wake-ups not counted: the first waits may set things up lazily.
const WARM_UP: u64 = 10;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "publisher" => publisher(),
        other => panic!("unknown role {other}"),
    }
}

/// Publishes `N` messages, pausing after each so that the parent's wait
/// goes to sleep between them (and is woken, not just spinning).
fn publisher() {
    let node = child_node("publisher");
    let ex = node.open_exchange("ps").expect("open ps");
    let publisher = ex.publisher().expect("publisher");
    for i in 0..env_u64("N") {
        publisher.send("tick", &i.to_le_bytes()).expect("publish");
        std::thread::sleep(Duration::from_micros(300));
    }
    report("done");
}

#[test]
fn waiting_allocates_nothing_per_wake_up() {
    let ns = TestNs::new("waitset-alloc");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("ps", Pattern::PublishSubscribe, Limits::default())
        .expect("create ps");
    let sub = ex.subscriber("tick", 0).expect("subscriber");
    let mut set = WaitSet::new();
    let index = set.add(&sub).expect("add");
    let publisher = ChildProc::spawn(&ns, "publisher", &[("N", MESSAGES.to_string())]);

    let mut ready = Vec::new();
    let (mut received, mut wake_ups, mut counted) = (0u64, 0u64, 0u64);
    while received < MESSAGES {
        let before = allocations();
        set.wait_into(Some(common::TIMEOUT), &mut ready)
            .expect("a message in time");
        let spent = allocations() - before;
        wake_ups += 1;
        if wake_ups > WARM_UP {
            counted += spent;
        }
        assert_eq!(ready, [index]);
        while let Some(s) = sub.try_receive().expect("receive") {
            assert_eq!(u64::from_le_bytes(s[..].try_into().unwrap()), received);
            received += 1;
        }
    }
    assert!(wake_ups > WARM_UP, "only {wake_ups} wake-ups");
    assert_eq!(counted, 0, "allocations in {} wake-ups", wake_ups - WARM_UP);
    publisher.finish();
    drop(set);
    drop((sub, ex, node));
    ns.assert_clean();
}

#[test]
fn empty_set_sleeps_until_the_timeout() {
    let set = WaitSet::new();
    let mut ready = vec![7];
    let timeout = Duration::from_millis(50);
    let start = Instant::now();
    assert!(matches!(
        set.wait_into(Some(timeout), &mut ready),
        Err(WaitError::Timeout)
    ));
    assert!(
        start.elapsed() >= timeout,
        "returned after {:?}",
        start.elapsed()
    );
    assert!(ready.is_empty());
    assert!(matches!(set.wait(None), Err(WaitError::Empty)));
}
