//! Payload sizes and the chunk pool across processes: a 1 MiB payload read in
//! place by another process, payloads over the chunk size, pool exhaustion.

mod common;

use common::{
    child_node, env_str, env_u64, payload, report, wait_parent, words, ChildProc, TestNs, TIMEOUT,
};
use shmex::{Limits, Pattern, SendError};

const MIB: usize = 1 << 20;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "big_writer" => big_writer(),
        "holder" => holder(),
        other => panic!("unknown role {other}"),
    }
}

/// Byte `i` of the known pattern with `seed`: not periodic over any short
/// length, so a shifted, truncated or partly stale copy shows.
fn pattern_byte(seed: u64, i: usize) -> u8 {
    let x = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i >> 12) as u8
}

/// Loans a whole 1 MiB chunk, writes the pattern in place and sends it.
fn big_writer() {
    let seed = env_u64("SEED");
    let node = child_node("writer");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let producer = ex.producer().expect("producer");
    let mut loan = producer.loan(MIB).expect("loan 1 MiB");
    assert_eq!(loan.len(), MIB);
    for (i, b) in loan.iter_mut().enumerate() {
        *b = pattern_byte(seed, i);
    }
    producer.send_loan(seed, loan).expect("send");
    report("sent");
}

#[test]
fn one_mib_payload_read_in_place_by_another_process() {
    const SEED: u64 = 0x5EED_1234;
    let ns = TestNs::new("big");
    let node = ns.node("reader");
    let limits = Limits::default()
        .chunk_size(MIB)
        .chunk_count(2)
        .queue_depth(2)
        .max_ports(2);
    let ex = node
        .create_exchange("big", Pattern::FanIn, limits)
        .expect("create");
    let consumer = ex.consumer().expect("consumer");
    let env = [("EXCHANGE", "big".to_string()), ("SEED", SEED.to_string())];
    let writer = ChildProc::spawn(&ns, "big_writer", &env).finish();
    assert_eq!(writer.one("sent"), "");

    let sample = consumer.receive_timeout(TIMEOUT).expect("the payload");
    assert_eq!(sample.tag(), SEED);
    assert_eq!(sample.len(), MIB);
    let bad: Vec<usize> = sample
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b != pattern_byte(SEED, i))
        .map(|(i, _)| i)
        .take(10)
        .collect();
    assert!(bad.is_empty(), "payload differs at offsets {bad:?}");
    // The writer is gone; its chunk is held by this sample only.
    assert_eq!(ex.chunks_free(), limits.chunk_count - 1);
    drop(sample);
    assert_eq!(
        ex.chunks_free(),
        limits.chunk_count,
        "pool not back to full"
    );
    drop((consumer, ex, node));
    ns.assert_clean();
}

/// Receives COUNT messages and holds them until the parent says "drop"; then
/// receives one more.
fn holder() {
    let count = env_u64("COUNT");
    let node = child_node("holder");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let consumer = ex.consumer().expect("consumer");
    report("ready");
    let held: Vec<_> = (0..count)
        .map(|_| consumer.receive_timeout(TIMEOUT).expect("message"))
        .collect();
    let seqs: Vec<String> = held.iter().map(|s| words(s)[0].to_string()).collect();
    report(format!("holding {}", seqs.join(" ")));
    wait_parent("drop");
    drop(held);
    report("dropped");
    let last = consumer.receive_timeout(TIMEOUT).expect("message");
    report(format!("last {}", words(&last)[0]));
}

#[test]
fn payload_too_large_and_pool_exhausted() {
    const CHUNKS: u32 = 4;
    const SIZE: usize = 256;
    let ns = TestNs::new("pool");
    let node = ns.node("parent");
    let limits = Limits::default()
        .chunk_size(SIZE)
        .chunk_count(CHUNKS)
        .queue_depth(8)
        .max_ports(4);
    let ex = node
        .create_exchange("small", Pattern::FanIn, limits)
        .expect("create");
    let env = [
        ("EXCHANGE", "small".to_string()),
        ("COUNT", CHUNKS.to_string()),
    ];
    let mut holder = ChildProc::spawn(&ns, "holder", &env);
    holder.wait_for("ready");
    let producer = ex.producer().expect("producer");

    // Over the chunk size: refused, whatever the way in; nothing is leaked.
    let big = vec![7u8; SIZE + 1];
    match producer.send(1, &big) {
        Err(SendError::PayloadTooLarge { len, max }) => assert_eq!((len, max), (SIZE + 1, SIZE)),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(matches!(
        producer.loan(SIZE + 1),
        Err(SendError::PayloadTooLarge { len, max }) if len == SIZE + 1 && max == SIZE
    ));
    let mut loan = producer.loan(SIZE).expect("a full-size loan");
    assert!(matches!(
        loan.set_len(SIZE + 1),
        Err(SendError::PayloadTooLarge { .. })
    ));
    drop(loan);
    assert_eq!(ex.chunks_free(), CHUNKS);

    // Fill the pool: the holder (another process) receives and keeps them.
    for seq in 0..u64::from(CHUNKS) {
        producer
            .send(seq, &payload(&[seq]))
            .expect("send within the pool");
    }
    assert_eq!(holder.wait_for("holding"), "0 1 2 3");
    assert_eq!(ex.chunks_free(), 0);
    match producer.send(99, &payload(&[99])) {
        Err(SendError::PoolExhausted { chunks }) => assert_eq!(chunks, CHUNKS),
        other => panic!("expected PoolExhausted, got {other:?}"),
    }
    assert!(matches!(
        producer.loan(1),
        Err(SendError::PoolExhausted { .. })
    ));

    // Once the other process lets go, the pool is whole again.
    holder.send("drop");
    holder.wait_for("dropped");
    assert_eq!(ex.chunks_free(), CHUNKS);
    producer
        .send(4, &payload(&[4]))
        .expect("send after the pool refilled");
    let holder = holder.finish();
    assert_eq!(holder.one("last"), "4");
    assert_eq!(ex.chunks_free(), CHUNKS, "chunks leaked");
    drop((producer, ex, node));
    ns.assert_clean();
}
