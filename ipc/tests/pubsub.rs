//! Publish-subscribe across processes: AMQP topic routing, the full-queue
//! policy (a slow subscriber misses, nobody waits) and unsubscribing.

mod common;

use common::{
    child_node, env_str, env_u64, finish_all, payload, report, wait_parent, wait_parent_eof, words,
    ChildProc, TestNs, TIMEOUT,
};
use shmex::{Limits, Pattern};

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    match role.as_str() {
        "subscriber" => subscriber(),
        "publisher" => publisher(),
        "slow_subscriber" => slow_subscriber(),
        "fast_subscriber" => fast_subscriber(),
        "leaver" => leaver(),
        "stayer" => stayer(),
        other => panic!("unknown role {other}"),
    }
}

/// Routing keys published, in order; each twice in a row (the second one
/// goes through the publisher's per-key match cache).
const KEYS: [&str; 9] = [
    "a", "a.b", "a.z", "a.b.z", "b.z", "z", "b.c", "a.b.c", "z.a",
];

/// Keys each pattern receives under AMQP topic semantics (`*` exactly one
/// word, `#` zero or more), written out by hand.
fn expected(pattern: &str) -> &'static [&'static str] {
    match pattern {
        "a.*" => &["a.b", "a.z"],
        "a.#" => &["a", "a.b", "a.z", "a.b.z", "a.b.c"],
        "#.z" => &["a.z", "a.b.z", "b.z", "z"],
        other => panic!("no expectation for {other}"),
    }
}

fn publication(key: &str, seq: usize) -> Vec<u8> {
    format!("{key}|{seq}").into_bytes()
}

/// Subscribes with PATTERN and TAG, waits for "go", then reports every
/// publication queued for it, in order.
fn subscriber() {
    let pattern = env_str("PATTERN");
    let tag = env_u64("TAG");
    let node = child_node(&format!("sub-{tag}"));
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let sub = ex.subscriber(&pattern, tag).expect("subscribe");
    assert_eq!((sub.pattern(), sub.tag()), (pattern.as_str(), tag));
    report("ready");
    wait_parent("go");
    let mut n = 0;
    while let Some(s) = sub.try_receive().expect("try_receive") {
        assert_eq!(s.tag(), tag, "subscription tag");
        let key = s.key().expect("a publication has a key").to_string();
        let text = String::from_utf8(s.to_vec()).expect("utf-8 payload");
        let (pkey, seq) = text.split_once('|').expect("key|seq payload");
        assert_eq!(pkey, key, "payload published under another key");
        report(format!("got {seq} {key}"));
        n += 1;
    }
    report(format!("count {n}"));
    report(format!("gaps {}", sub.gaps()));
}

/// Publishes every key of KEYS twice and reports what each publish did.
fn publisher() {
    let node = child_node("publisher");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let publisher = ex.publisher().expect("publisher");
    let mut seq = 0;
    for key in KEYS {
        for _ in 0..2 {
            let r = publisher
                .send(key, &publication(key, seq))
                .expect("publish");
            report(format!(
                "published {seq} {key} {} {}",
                r.delivered, r.missed
            ));
            seq += 1;
        }
    }
}

#[test]
fn pubsub_amqp_routing_across_processes() {
    let ns = TestNs::new("topics");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("topics", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let patterns = ["a.*", "a.#", "#.z"];
    let mut subs: Vec<ChildProc> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let env = [
                ("EXCHANGE", "topics".to_string()),
                ("PATTERN", p.to_string()),
                ("TAG", (100 + i).to_string()),
            ];
            ChildProc::spawn(&ns, "subscriber", &env)
        })
        .collect();
    for s in &mut subs {
        s.wait_for("ready");
    }
    let publisher =
        ChildProc::spawn(&ns, "publisher", &[("EXCHANGE", "topics".to_string())]).finish();
    for s in &mut subs {
        s.send("go");
    }
    let reports = finish_all(subs);

    // What the publisher saw: delivered = number of patterns matching the key.
    let published = publisher.all("published");
    assert_eq!(published.len(), 2 * KEYS.len());
    for (seq, line) in published.iter().enumerate() {
        let key = KEYS[seq / 2];
        let want = patterns
            .iter()
            .filter(|p| expected(p).contains(&key))
            .count();
        assert_eq!(
            *line,
            format!("{seq} {key} {want} 0"),
            "delivered/missed of publish {seq} under {key:?}"
        );
    }
    // What each subscriber got: exactly its keys, in publish order.
    for (p, r) in patterns.iter().zip(&reports) {
        let want: Vec<String> = (0..2 * KEYS.len())
            .filter(|seq| expected(p).contains(&KEYS[seq / 2]))
            .map(|seq| format!("{seq} {}", KEYS[seq / 2]))
            .collect();
        assert_eq!(r.all("got"), want, "deliveries to {p:?}");
        assert_eq!(r.num("count"), want.len() as u64);
        assert_eq!(r.num("gaps"), 0);
    }
    assert_eq!(ex.chunks_free(), ex.limits().chunk_count, "chunks leaked");
    drop((ex, node));
    ns.assert_clean();
}

/// Subscribes to everything and reads nothing until "go"; then reports its
/// gap count and what its inbox held.
fn slow_subscriber() {
    let node = child_node("slow");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let sub = ex.subscriber("#", 1).expect("subscribe");
    report("ready");
    wait_parent("go");
    report(format!("gaps {}", sub.gaps()));
    while let Some(s) = sub.try_receive().expect("try_receive") {
        report(format!("got {}", words(&s)[0]));
    }
}

/// Subscribes to everything, and acknowledges each publication through the
/// fan-in exchange ACKS so the publisher can go in lock step with it.
fn fast_subscriber() {
    let total = env_u64("TOTAL");
    let node = child_node("fast");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let acks = node.open_exchange(&env_str("ACKS")).expect("open acks");
    let sub = ex.subscriber("feed.#", 2).expect("subscribe");
    let ack = acks.producer().expect("producer");
    report("ready");
    for expect in 0..total {
        let s = sub.receive_timeout(TIMEOUT).expect("publication");
        let seq = words(&s)[0];
        assert_eq!(seq, expect, "publications out of order or lost");
        ack.send(seq, &s).expect("ack");
    }
    report(format!("received {total}"));
    report(format!("gaps {}", sub.gaps()));
    assert!(sub.try_receive().expect("try_receive").is_none());
}

#[test]
fn pubsub_full_queue_slow_subscriber_misses() {
    const DEPTH: u32 = 4;
    const TOTAL: u64 = 40;
    let ns = TestNs::new("slowsub");
    let node = ns.node("parent");
    let limits = Limits::default().queue_depth(DEPTH);
    let ex = node
        .create_exchange("feed", Pattern::PublishSubscribe, limits)
        .expect("create");
    let acks = node
        .create_exchange("acks", Pattern::FanIn, Limits::default())
        .expect("create acks");
    let consumer = acks.consumer().expect("consumer");
    let env = [
        ("EXCHANGE", "feed".to_string()),
        ("ACKS", "acks".to_string()),
        ("TOTAL", TOTAL.to_string()),
    ];
    let mut slow = ChildProc::spawn(&ns, "slow_subscriber", &env);
    let mut fast = ChildProc::spawn(&ns, "fast_subscriber", &env);
    slow.wait_for("ready");
    fast.wait_for("ready");

    let publisher = ex.publisher().expect("publisher");
    let mut missed = 0u64;
    for seq in 0..TOTAL {
        let r = publisher
            .send("feed.tick", &payload(&[seq]))
            .expect("publish");
        // The fast subscriber has taken every earlier publication (it acked
        // them), so only the slow one, once its inbox is full, can miss.
        let want = if seq < u64::from(DEPTH) {
            (2, 0)
        } else {
            (1, 1)
        };
        assert_eq!((r.delivered, r.missed), want, "publication {seq}");
        missed += u64::from(r.missed);
        let ack = consumer.receive_timeout(TIMEOUT).expect("ack");
        assert_eq!(ack.tag(), seq);
    }
    assert_eq!(missed, TOTAL - u64::from(DEPTH));

    let fast = fast.finish();
    assert_eq!(fast.num("received"), TOTAL);
    assert_eq!(fast.num("gaps"), 0);
    slow.send("go");
    let slow = slow.finish();
    assert_eq!(slow.num("gaps"), missed);
    let want: Vec<String> = (0..u64::from(DEPTH)).map(|s| s.to_string()).collect();
    assert_eq!(slow.all("got"), want, "the slow subscriber kept the oldest");
    assert_eq!(ex.chunks_free(), limits.chunk_count, "chunks leaked");
    drop((publisher, consumer, acks, ex, node));
    ns.assert_clean();
}

/// Receives one publication, unsubscribes when told, then stays alive (node
/// and exchange open) until the parent closes stdin.
fn leaver() {
    let node = child_node("leaver");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let sub = ex.subscriber("x.#", 1).expect("subscribe");
    report("ready");
    let s = sub.receive_timeout(TIMEOUT).expect("publication");
    report(format!("got {}", String::from_utf8_lossy(&s)));
    drop(s);
    wait_parent("unsubscribe");
    sub.unsubscribe();
    report("unsubscribed");
    wait_parent_eof();
    drop(ex);
}

/// Receives two publications.
fn stayer() {
    let node = child_node("stayer");
    let ex = node.open_exchange(&env_str("EXCHANGE")).expect("open");
    let sub = ex.subscriber("x.#", 2).expect("subscribe");
    report("ready");
    for _ in 0..2 {
        let s = sub.receive_timeout(TIMEOUT).expect("publication");
        report(format!("got {}", String::from_utf8_lossy(&s)));
    }
}

#[test]
fn pubsub_unsubscribe_stops_delivery() {
    let ns = TestNs::new("unsub");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("news", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let env = [("EXCHANGE", "news".to_string())];
    let mut leaver = ChildProc::spawn(&ns, "leaver", &env);
    let mut stayer = ChildProc::spawn(&ns, "stayer", &env);
    leaver.wait_for("ready");
    stayer.wait_for("ready");
    let publisher = ex.publisher().expect("publisher");
    assert_eq!(ex.ports(), 3);

    let r = publisher.send("x.1", b"first").expect("publish");
    assert_eq!((r.delivered, r.missed), (2, 0));
    assert_eq!(leaver.wait_for("got"), "first");
    leaver.send("unsubscribe");
    leaver.wait_for("unsubscribed");
    assert_eq!(ex.ports(), 2);
    let r = publisher.send("x.2", b"second").expect("publish");
    assert_eq!((r.delivered, r.missed), (1, 0));

    let stayer = stayer.finish();
    assert_eq!(stayer.all("got"), ["first", "second"]);
    let leaver = leaver.finish();
    assert_eq!(leaver.all("got"), ["first"]);
    assert_eq!(ex.chunks_free(), ex.limits().chunk_count, "chunks leaked");
    drop((publisher, ex, node));
    ns.assert_clean();
}

#[test]
fn invalid_routing_keys_are_errors_and_lose_no_chunk() {
    let ns = TestNs::new("badkey");
    let node = ns.node("publisher");
    let ex = node
        .create_exchange("keys", Pattern::PublishSubscribe, Limits::default())
        .expect("create");
    let _sub = ex.subscriber("#", 1).expect("subscribe");
    let publisher = ex.publisher().expect("publisher");
    for key in ["x".repeat(193), "a.*".to_string(), "#".to_string()] {
        match publisher.send(&key, b"payload") {
            Err(shmex::SendError::InvalidKey { key: k, .. }) => assert_eq!(k, key),
            other => panic!("key {key:?}: expected InvalidKey, got {other:?}"),
        }
    }
    assert_eq!(ex.chunks_free(), ex.limits().chunk_count);
    let longest = "y".repeat(192);
    assert_eq!(
        publisher
            .send(&longest, b"ok")
            .expect("192-byte key")
            .delivered,
        1
    );
    drop((publisher, _sub, ex, node));
    ns.assert_clean();
}
