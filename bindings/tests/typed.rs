//! Typed exchanges between C and Rust: a C program creates an exchange for
//! `struct point` (name, size, alignment and the layout hash of the Rust
//! `Point`), this Rust process joins it with `open_typed_exchange::<Point>`
//! and publishes a point that C reads in place; a Rust `Pixel` is refused,
//! and so is a C open as another type, both naming the two types.

mod common;

use common::{compile, CProc, TestNs};
use shmex_rs::{OpenError, TypeInfo};

/// The Rust side of the C program's `struct point`.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
    seq: u64,
}
shmex_rs::payload!(Point { x, y, seq });

/// Same size and alignment, another type.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Pixel {
    rgba: [u8; 8],
    id: u64,
}
shmex_rs::payload!(Pixel { rgba, id });

#[test]
fn c_creates_typed_exchange_rust_joins() {
    let ns = TestNs::new("typed");
    let point = TypeInfo::of::<Point>();
    let hash = point.hash.to_string();
    let mut c = CProc::spawn(&compile("tests/c/typed.c"), &[&ns.name, &hash]);
    c.wait_line("ready");
    assert_eq!(c.seen[0], "refusals ok");
    assert_eq!(c.seen[1], format!("type Point 16 8 {hash}"));

    let node = ns.node("rust-publisher");
    match node.open_typed_exchange::<Pixel>("points") {
        Err(OpenError::TypeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(*expected, TypeInfo::of::<Pixel>());
            assert_eq!(*found, point);
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let ex = node.open_typed_exchange::<Point>("points").expect("join");
    let publisher = ex.publisher().expect("publisher");
    let mut loan = publisher.loan_uninit().expect("loan").assume_init();
    *loan = Point {
        x: 1.5,
        y: -2.0,
        seq: 7,
    };
    assert_eq!(publisher.send_loan("points", loan).unwrap().delivered, 1);
    c.finish();
    assert!(c.seen.contains(&"got 1.5 -2 7".to_string()), "{:?}", c.seen);
    let refused = c
        .seen
        .iter()
        .find(|l| l.starts_with("refused "))
        .expect("refused line");
    assert!(refused.contains(&point.to_string()), "{refused}");
    assert!(refused.contains("Pixel (size 16, align 8"), "{refused}");
    drop((publisher, ex, node));
    ns.assert_clean();
}

/// The Rust side of the C program's `struct query`.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Query {
    a: u32,
    b: u32,
    seq: u64,
}
shmex_rs::payload!(Query { a, b, seq });

/// The Rust side of the C program's `struct answer`.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Answer {
    sum: u64,
    seq: u64,
}
shmex_rs::payload!(Answer { sum, seq });

/// A C program creates a typed request-response exchange (`Query ->
/// Answer`) and serves it; a Rust client asking for `Query -> Pixel` is
/// refused naming both sides, one with the matching types joins and is
/// answered; a C open with another response type is refused too.
#[test]
fn c_creates_typed_rpc_exchange_rust_joins() {
    let ns = TestNs::new("typed-rpc");
    let (query, answer) = (TypeInfo::of::<Query>(), TypeInfo::of::<Answer>());
    let args = [&ns.name, &query.hash.to_string(), &answer.hash.to_string()];
    let mut c = CProc::spawn(&compile("tests/c/typed_rpc.c"), &args.map(String::as_str));
    c.wait_line("ready");
    assert_eq!(c.seen[0], format!("response Answer 16 8 {}", answer.hash));

    let node = ns.node("rust-client");
    match node.open_typed_rpc_exchange::<Query, Pixel>("adder") {
        Err(e @ OpenError::TypeMismatch { .. }) => {
            let e = e.to_string();
            assert!(e.contains(&format!("carries {query} -> {answer}")), "{e}");
            assert!(e.contains(&format!("asked for {query} -> Pixel")), "{e}");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let ex = node
        .open_typed_rpc_exchange::<Query, Answer>("adder")
        .expect("join");
    let client = ex.client().expect("client");
    client
        .send(
            4,
            &Query {
                a: 20,
                b: 22,
                seq: 3,
            },
        )
        .expect("send");
    let r = client.receive_timeout(common::timeout()).expect("answer");
    assert_eq!((r.untyped().tag(), *r), (4, Answer { sum: 42, seq: 3 }));
    drop(r);
    client
        .send(5, &Query { a: 0, b: 0, seq: 0 })
        .expect("goodbye");
    c.finish();
    assert!(c.seen.contains(&"served 20 22".to_string()), "{:?}", c.seen);
    let refused = c
        .seen
        .iter()
        .find(|l| l.starts_with("refused "))
        .expect("refused line");
    assert!(
        refused.contains(&format!("{query} -> {answer}")),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("{query} -> Other (size 16")),
        "{refused}"
    );
    drop((client, ex, node));
    ns.assert_clean();
}
