//! Fan-in across processes: four producer processes, one consumer; each
//! producer's messages arrive in order, none lost, none duplicated.

mod common;

use common::{child_node, env_str, env_u64, payload, report, words, ChildProc, TestNs, TIMEOUT};
use shmex::{Limits, Pattern, SendError};
use std::collections::BTreeMap;

const PRODUCERS: u64 = 4;
const MESSAGES: u64 = 5000;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "producer" => producer(),
        other => panic!("unknown role {other}"),
    }
}

/// Sends MESSAGES messages (id, seq), retrying while the consumer's inbox is
/// full (a refused send is reported, never dropped).
fn producer() {
    let id = env_u64("ID");
    let node = child_node(&format!("producer-{id}"));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let producer = ex.producer().expect("producer");
    report(format!("port {}", producer.id()));
    let mut refused = 0u64;
    for seq in 0..MESSAGES {
        loop {
            match producer.send(id, &payload(&[id, seq])) {
                Ok(()) => break,
                Err(SendError::QueueFull) => {
                    refused += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("producer {id}: send {seq}: {e}"),
            }
        }
    }
    report(format!("sent {MESSAGES}"));
    report(format!("refused {refused}"));
}

#[test]
fn fanin_four_producers_one_consumer() {
    let ns = TestNs::new("fanin");
    let node = ns.node("consumer");
    let limits = Limits::default().queue_depth(64);
    let ex = node
        .create_exchange("logs", Pattern::FanIn, limits)
        .expect("create");
    // Without a consumer, producers are told so.
    {
        let p = ex.producer().expect("producer");
        assert!(matches!(p.send(0, b"x"), Err(SendError::NoConsumer)));
    }
    let consumer = ex.consumer().expect("consumer");
    assert!(matches!(
        ex.consumer(),
        Err(shmex::PortError::ConsumerExists { .. })
    ));
    let mut producers: Vec<ChildProc> = (0..PRODUCERS)
        .map(|id| {
            let env = [("ID", id.to_string()), ("EXCHANGE", "logs".to_string())];
            ChildProc::spawn(&ns, "producer", &env)
        })
        .collect();
    let ports: Vec<String> = producers.iter_mut().map(|p| p.wait_for("port")).collect();

    // next[id]: the sequence number expected next from producer id.
    let mut next = [0u64; PRODUCERS as usize];
    let mut sender_of: BTreeMap<u64, Option<shmex::SenderId>> = BTreeMap::new();
    for _ in 0..PRODUCERS * MESSAGES {
        let s = consumer
            .receive_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("consumer stalled after {next:?}: {e}"));
        let w = words(&s);
        assert_eq!(w.len(), 2, "payload of {} bytes", s.len());
        let (id, seq) = (w[0], w[1]);
        assert!(id < PRODUCERS, "unknown producer {id}");
        assert_eq!(s.tag(), id, "tag of producer {id}");
        assert_eq!(
            seq, next[id as usize],
            "producer {id}: got seq {seq}, expected {} (lost, duplicated or reordered)",
            next[id as usize]
        );
        next[id as usize] += 1;
        let sender = *sender_of.entry(id).or_insert(s.sender());
        assert_eq!(sender, s.sender(), "producer {id} changed port");
    }
    assert_eq!(next, [MESSAGES; PRODUCERS as usize]);
    for (id, p) in producers.into_iter().enumerate() {
        let r = p.finish();
        assert_eq!(r.num("sent"), MESSAGES);
        assert_eq!(
            sender_of[&(id as u64)].map(|s| s.to_string()).as_ref(),
            Some(&ports[id]),
            "Sample::sender vs Producer::id"
        );
    }
    // Every producer has exited: nothing more may arrive.
    assert!(consumer.try_receive().expect("try_receive").is_none());
    assert_eq!(ex.chunks_free(), limits.chunk_count, "chunks leaked");
    drop((consumer, ex, node));
    ns.assert_clean();
}
