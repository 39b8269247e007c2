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
