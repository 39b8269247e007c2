//! Typed exchanges across processes: a struct published by one process is
//! read in place by another (the same bytes of the segment file, no copy);
//! a process asking for another type is refused with both types named; an
//! untyped handle still opens a typed exchange; an over-aligned type is
//! refused at creation.

mod common;

use common::{child_node, env_str, mapping_offset, report, ChildProc, TestNs};
use shmex::{Limits, OpenError, Pattern, TypeInfo};

/// The payload of these tests.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
    seq: u64,
}
shmex::payload!(Point { x, y, seq });

/// Same size and alignment as `Point`, another layout.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Pixel {
    rgba: [u8; 8],
    id: u64,
}
shmex::payload!(Pixel { rgba, id });

/// Aligned to more than a chunk guarantees.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line {
    bytes: [u8; 64],
}
shmex::payload!(Line);

const POINTS: u64 = 100;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let node = child_node(&role);
    let name = env_str("EXCHANGE");
    match role.as_str() {
        "publisher" => {
            let ex = node.open_typed_exchange::<Point>(&name).expect("open");
            let publisher = ex.publisher().expect("publisher");
            let mut loan = publisher.loan_uninit().expect("loan").assume_init();
            *loan = Point {
                x: 1.5,
                y: -2.0,
                seq: 7,
            };
            let at = mapping_offset(&node_path(&node, &name), &*loan as *const Point as usize);
            report(format!("offset {}", at.expect("loan inside the segment")));
            let sent = publisher.send_loan("points", loan).expect("publish");
            report(format!("delivered {}", sent.delivered));
        }
        "producer" => {
            let ex = node.open_typed_exchange::<Point>(&name).expect("open");
            let producer = ex.producer().expect("producer");
            for seq in 0..POINTS {
                let p = Point {
                    x: seq as f32,
                    y: 0.5,
                    seq,
                };
                loop {
                    match producer.send(3, &p) {
                        Ok(()) => break,
                        Err(shmex::SendError::QueueFull) => std::thread::yield_now(),
                        Err(e) => panic!("send {seq}: {e}"),
                    }
                }
            }
            report("sent");
        }
        "slices" => {
            let ex = node.open_typed_exchange::<Point>(&name).expect("open");
            let producer = ex.producer().expect("producer");
            for n in [0usize, 1, 5, 200] {
                let mut loan = producer.loan_slice_uninit(n).expect("loan");
                for (i, p) in loan.iter_mut().enumerate() {
                    p.write(Point {
                        x: i as f32,
                        y: n as f32,
                        seq: i as u64,
                    });
                }
                producer
                    .send_slice_loan(n as u64, loan.assume_init())
                    .expect("send");
            }
            let too_many = producer.loan_slice_uninit(usize::MAX / 2);
            report(format!(
                "too_many {}",
                matches!(too_many, Err(shmex::SendError::PayloadTooLarge { .. }))
            ));
        }
        "wrong" => match node.open_typed_exchange::<Pixel>(&name) {
            Err(e @ OpenError::TypeMismatch { .. }) => report(format!("refused {e}")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => report("opened"),
        },
        "bytes" => {
            let ex = node.open_exchange(&name).expect("untyped open");
            report(format!("type {}", ex.payload_type()));
            let sub = ex.subscriber("points", 0).expect("subscriber");
            report("subscribed");
            let s = sub.receive_timeout(common::TIMEOUT).expect("receive");
            let p: &Point = s.as_pod().expect("a Point's bytes");
            report(format!("got {} {} {}", p.x, p.y, p.seq));
        }
        "open_or_create" => open_or_create_child(&node, &name),
        other => panic!("unknown role {other}"),
    }
}

fn node_path(node: &shmex::Node, name: &str) -> std::path::PathBuf {
    node.namespace().exchange_path(name)
}

/// A child publishes a `Point` written in place; the parent's sample is the
/// same bytes of the segment file (equal file offsets in both mappings): no
/// copy on either side.
#[test]
fn typed_pubsub_is_zero_copy_across_processes() {
    let ns = TestNs::new("typed-zc");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("points", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    assert_eq!(ex.untyped().payload_type(), TypeInfo::of::<Point>());
    let sub = ex.subscriber("points", 0).expect("subscriber");
    let mut child = ChildProc::spawn(&ns, "publisher", &[("EXCHANGE", "points".into())]);
    let child_offset: u64 = child.wait_for("offset").parse().unwrap();
    let sample = sub.receive_timeout(common::TIMEOUT).expect("receive");
    assert_eq!(
        *sample,
        Point {
            x: 1.5,
            y: -2.0,
            seq: 7
        }
    );
    assert_eq!(sample.untyped().key(), Some("points"));
    let ours = mapping_offset(
        &ns.exchange_path("points"),
        &*sample as *const Point as usize,
    );
    assert_eq!(
        ours,
        Some(child_offset),
        "read in place where it was written"
    );
    drop(sample);
    assert_eq!(child.finish().num("delivered"), 1);
    drop(sub);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Fan-in of `Point`s from a child: every value arrives, in order.
#[test]
fn typed_fanin_across_processes() {
    let ns = TestNs::new("typed-fanin");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("fan", Pattern::FanIn, Limits::default())
        .expect("create");
    let consumer = ex.consumer().expect("consumer");
    let child = ChildProc::spawn(&ns, "producer", &[("EXCHANGE", "fan".into())]);
    for seq in 0..POINTS {
        let p = consumer.receive_timeout(common::TIMEOUT).expect("receive");
        assert_eq!(p.seq, seq);
        assert_eq!(p.x, seq as f32);
        assert_eq!(p.untyped().tag(), 3);
    }
    child.finish().one("sent");
    drop(consumer);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Variable-length arrays of `Point` from a child, each read in place as a
/// slice; a slice beyond the chunk size is refused.
#[test]
fn typed_slices_across_processes() {
    let ns = TestNs::new("typed-slices");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("fan", Pattern::FanIn, Limits::default())
        .expect("create");
    let consumer = ex.consumer().expect("consumer");
    let child = ChildProc::spawn(&ns, "slices", &[("EXCHANGE", "fan".into())]);
    for n in [0usize, 1, 5, 200] {
        let s = consumer
            .receive_slice_timeout(common::TIMEOUT)
            .expect("receive");
        assert_eq!(s.untyped().tag(), n as u64);
        assert_eq!(s.len(), n);
        for (i, p) in s.iter().enumerate() {
            assert_eq!((p.x, p.y, p.seq), (i as f32, n as f32, i as u64));
        }
    }
    assert_eq!(child.finish().one("too_many"), "true");
    drop(consumer);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A payload of the wrong length (sent by an untyped port) is an error for a
/// typed receiver, and its chunk goes back to the pool.
#[test]
fn wrong_length_payload_is_an_error_not_a_view() {
    let ns = TestNs::new("typed-len");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("fan", Pattern::FanIn, Limits::default())
        .expect("create");
    let consumer = ex.consumer().expect("consumer");
    let free = ex.untyped().chunks_free();
    let bytes = ex.untyped().producer().expect("untyped producer");
    bytes.send(0, b"abc").expect("send");
    assert!(matches!(
        consumer.try_receive(),
        Err(shmex::RecvError::Corrupt(_))
    ));
    bytes.send(0, &[0u8; 24]).expect("send");
    assert!(matches!(
        consumer.try_receive_slice(),
        Err(shmex::RecvError::Corrupt(_))
    ));
    bytes.send(0, &[0u8; 32]).expect("send");
    assert_eq!(consumer.try_receive_slice().unwrap().unwrap().len(), 2);
    drop(bytes);
    assert_eq!(ex.untyped().chunks_free(), free);
    drop(consumer);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A child asking for `Pixel` on a `Point` exchange is refused, the error
/// naming both types with their sizes and alignments; so is a typed open of
/// an untyped exchange.
#[test]
fn mismatching_type_is_refused_naming_both() {
    let ns = TestNs::new("typed-mismatch");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("points", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let child = ChildProc::spawn(&ns, "wrong", &[("EXCHANGE", "points".into())]);
    let refused = child.finish().one("refused");
    let point = TypeInfo::of::<Point>().to_string();
    let pixel = TypeInfo::of::<Pixel>().to_string();
    assert!(refused.contains(&point), "{refused}");
    assert!(refused.contains(&pixel), "{refused}");
    assert!(point.starts_with("Point (size 16, align 8"), "{point}");

    let bytes = node
        .create_exchange("raw", Pattern::PublishSubscribe, Limits::default())
        .expect("create untyped");
    match node.open_typed_exchange::<Point>("raw") {
        Err(OpenError::TypeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(*expected, TypeInfo::of::<Point>());
            assert!(found.is_bytes());
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    drop(bytes);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// An untyped handle (tools, C) opens a typed exchange, sees its type, and
/// reads its payloads as bytes; the listing shows the type too.
#[test]
fn untyped_open_of_typed_exchange_works() {
    let ns = TestNs::new("typed-bytes");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Point>("points", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let listed = shmex::list_exchanges(&ns.namespace());
    let info = listed[0].as_ref().expect("listed");
    assert_eq!(info.payload, TypeInfo::of::<Point>());
    let publisher = ex.publisher().expect("publisher");
    let mut child = ChildProc::spawn(&ns, "bytes", &[("EXCHANGE", "points".into())]);
    assert_eq!(child.wait_for("type"), TypeInfo::of::<Point>().to_string());
    child.wait_for("subscribed");
    let p = Point {
        x: 3.0,
        y: 4.0,
        seq: 9,
    };
    assert_eq!(publisher.send("points", &p).expect("publish").delivered, 1);
    assert_eq!(child.finish().one("got"), "3 4 9");
    drop(publisher);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A type aligned to 64 bytes is refused at creation (payloads are aligned
/// to 16), and nothing is left behind.
#[test]
fn over_aligned_type_is_refused_at_creation() {
    let ns = TestNs::new("typed-align");
    let node = ns.node("parent");
    match node.create_typed_exchange::<Line>("lines", Pattern::PublishSubscribe, Limits::default())
    {
        Err(OpenError::InvalidLimits { reason }) => {
            assert!(reason.contains("alignment 64"), "{reason}");
            assert!(reason.contains("at most 16"), "{reason}");
        }
        other => panic!("expected InvalidLimits, got {other:?}"),
    }
    assert_eq!(shmex::MAX_PAYLOAD_ALIGN, 16);
    // Up to the maximum is fine.
    let ex = node
        .create_typed_exchange::<u128>("wide", Pattern::FanIn, Limits::default())
        .expect("16-aligned payload");
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Open-or-create with a type checks it against the one recorded by another
/// process (the parent, which created the exchange through the same call);
/// the untyped open-or-create opens it as bytes; with `TypeInfo::bytes()`
/// it is refused as well.
#[test]
fn open_or_create_checks_the_type_across_processes() {
    let ns = TestNs::new("typed-ooc");
    let node = ns.node("parent");
    let limits = Limits::default();
    let ex = node
        .open_or_create_typed_exchange::<Point>("made", Pattern::PublishSubscribe, limits)
        .expect("created by open-or-create");
    assert_eq!(ex.untyped().payload_type(), TypeInfo::of::<Point>());
    let again = node
        .open_or_create_typed_exchange::<Point>("made", Pattern::PublishSubscribe, limits)
        .expect("opened by open-or-create");
    let raw = node
        .create_exchange("raw", Pattern::PublishSubscribe, limits)
        .expect("create untyped");
    let report = ChildProc::spawn(&ns, "open_or_create", &[("EXCHANGE", "made".into())]).finish();
    let point = TypeInfo::of::<Point>().to_string();
    assert_eq!(report.one("pixel"), format!("refused, found {point}"));
    assert_eq!(report.one("point"), format!("opened {point}"));
    assert_eq!(report.one("untyped"), format!("opened {point}"));
    let bytes = TypeInfo::bytes().to_string();
    assert_eq!(report.one("as bytes"), format!("refused, found {point}"));
    assert_eq!(report.one("raw point"), format!("refused, found {bytes}"));
    assert_eq!(report.one("raw untyped"), format!("opened {bytes}"));
    drop((ex, again, raw));
    drop(node);
    ns.assert_clean();
}

/// The child of `open_or_create_checks_the_type_across_processes`.
fn open_or_create_child(node: &shmex::Node, name: &str) {
    let (pattern, limits) = (Pattern::PublishSubscribe, Limits::default());
    let outcome = |r: Result<shmex::Exchange, OpenError>| match r {
        Ok(ex) => format!("opened {}", ex.payload_type()),
        Err(OpenError::TypeMismatch { found, .. }) => format!("refused, found {found}"),
        Err(e) => panic!("unexpected error {e}"),
    };
    let pixel = node.open_or_create_typed_exchange::<Pixel>(name, pattern, limits);
    report(format!(
        "pixel {}",
        outcome(pixel.map(|t| t.untyped().clone()))
    ));
    let point = node.open_or_create_typed_exchange::<Point>(name, pattern, limits);
    report(format!(
        "point {}",
        outcome(point.map(|t| t.untyped().clone()))
    ));
    let untyped = node.open_or_create_exchange(name, pattern, limits);
    report(format!("untyped {}", outcome(untyped)));
    let bytes = node.open_or_create_exchange_of(name, pattern, limits, &TypeInfo::bytes());
    report(format!("as bytes {}", outcome(bytes)));
    let raw = node.open_or_create_typed_exchange::<Point>("raw", pattern, limits);
    report(format!(
        "raw point {}",
        outcome(raw.map(|t| t.untyped().clone()))
    ));
    let raw = node.open_or_create_exchange("raw", pattern, limits);
    report(format!("raw untyped {}", outcome(raw)));
}
