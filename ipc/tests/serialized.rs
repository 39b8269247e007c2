//! Serde payloads (feature `serde`): a value that is not `Pod` (a string, a
//! vector, an enum with data) crosses processes by publish-subscribe and
//! by request-response, serialized into the chunk and deserialized out of
//! it; a value whose encoding exceeds the chunk is refused and nothing is
//! sent; bytes from another process that are no encoding of the type asked
//! for give an error, never a panic.

#![cfg(feature = "serde")]

mod common;

use common::{child_node, env_str, report, ChildProc, TestNs};
use serde::{Deserialize, Serialize};
use shmex::{Limits, Pattern, SerialError, Submit};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Status {
    New,
    Paid { cents: u64 },
    Cancelled(String),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    customer: String,
    items: Vec<(String, u32)>,
    status: Status,
    note: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Receipt {
    order: u64,
    lines: Vec<String>,
    status: Status,
}

fn order(n: u32) -> Order {
    Order {
        customer: format!("customer ü{n}"),
        items: (0..n).map(|i| (format!("item {i}"), i * 7)).collect(),
        status: match n % 3 {
            0 => Status::New,
            1 => Status::Paid {
                cents: u64::from(n) * 1_000_000_007,
            },
            _ => Status::Cancelled(format!("reason {n}")),
        },
        note: n.is_multiple_of(2).then(|| "fragile".to_string()),
    }
}

fn receipt(tag: u64, o: &Order) -> Receipt {
    Receipt {
        order: tag,
        lines: o.items.iter().map(|(s, q)| format!("{q} x {s}")).collect(),
        status: o.status.clone(),
    }
}

const ORDERS: u32 = 20;

/// Payloads that are not one encoding of an `Order`, each with why.
fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    let mut valid = [0u8; 256];
    let len = postcard::to_slice(&order(4), &mut valid).unwrap().len();
    let valid = &valid[..len];
    let mut trailing = valid.to_vec();
    trailing.push(0);
    let mut bad_utf8 = vec![2, 0xff, 0xfe];
    bad_utf8.extend_from_slice(&valid[1..]);
    vec![
        ("empty", vec![]),
        ("truncated", valid[..len - 1].to_vec()),
        ("trailing", trailing),
        ("bad-utf8", bad_utf8),
        // A string length of 2^63 and a vector of 2^32 items in 10 bytes:
        // nothing so large may be allocated up front.
        (
            "huge-string",
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        ("huge-vec", vec![0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ("bad-variant", vec![0, 0, 9, 0]),
        ("bad-option", vec![0, 0, 0, 7]),
        ("bad-varint", vec![0xff; 11]),
    ]
}

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let node = child_node(&role);
    let name = env_str("EXCHANGE");
    let ex = node.open_exchange(&name).expect("open");
    match role.as_str() {
        "publisher" => {
            let publisher = ex.publisher().expect("publisher");
            for n in 0..ORDERS {
                let sent = publisher
                    .send_serialized("orders.new", &order(n))
                    .expect("send_serialized");
                assert_eq!(sent.delivered, 1);
            }
            report("sent");
        }
        "client" => {
            let client = ex.client().expect("client");
            for n in 0..ORDERS {
                client
                    .send_serialized(u64::from(n), &order(n))
                    .expect("send_serialized");
                let response = client.receive_timeout(common::TIMEOUT).expect("response");
                assert_eq!(response.tag(), u64::from(n));
                let got: Receipt = response.deserialize().expect("deserialize");
                assert_eq!(got, receipt(u64::from(n), &order(n)));
            }
            report("received");
        }
        "garbage" => {
            let publisher = ex.publisher().expect("publisher");
            for (what, bytes) in garbage() {
                publisher.send(what, &bytes).expect("publish");
            }
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..500 {
                let len = (next() % 64) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                publisher.send("random", &bytes).expect("publish");
            }
            report("sent");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Orders with strings, vectors, options and enums published by a child
/// arrive equal, each payload exactly its encoding's length; an owned
/// sample deserializes as well.
#[test]
fn serialized_values_cross_pubsub() {
    let ns = TestNs::new("serde-pubsub");
    let node = ns.node("parent");
    let limits = Limits::default().chunk_count(ORDERS * 2);
    let ex = node
        .create_exchange("orders", Pattern::PublishSubscribe, limits)
        .expect("create");
    let sub = ex.subscriber("orders.#", 0).expect("subscriber");
    let child = ChildProc::spawn(&ns, "publisher", &[("EXCHANGE", "orders".into())]);
    for n in 0..ORDERS {
        let sample = sub.receive_timeout(common::TIMEOUT).expect("receive");
        let mut expected = [0u8; 4096];
        let encoded = postcard::to_slice(&order(n), &mut expected).unwrap();
        assert_eq!(&sample[..], &encoded[..], "the payload is the encoding");
        let got: Order = if n % 2 == 0 {
            sample.deserialize().expect("deserialize")
        } else {
            sample
                .into_owned()
                .deserialize()
                .expect("deserialize owned")
        };
        assert_eq!(got, order(n));
    }
    child.finish().one("sent");
    drop(sub);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A child client sends orders; this server deserializes each request (in
/// place through `Request`'s `Deref`) and answers with a serialized
/// receipt, which the child checks.
#[test]
fn serialized_values_cross_request_response() {
    let ns = TestNs::new("serde-rpc");
    let node = ns.node("parent");
    let ex = node
        .create_exchange("shop", Pattern::RequestResponse, Limits::default())
        .expect("create");
    let server = ex.server().expect("server");
    let child = ChildProc::spawn(&ns, "client", &[("EXCHANGE", "shop".into())]);
    for n in 0..ORDERS {
        let request = server.receive_timeout(common::TIMEOUT).expect("request");
        let got: Order = request.deserialize().expect("deserialize");
        assert_eq!(got, order(n));
        let tag = request.tag();
        request
            .respond_serialized(&receipt(tag, &got))
            .expect("respond_serialized");
    }
    child.finish().one("received");
    drop(server);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Payloads published raw by a child, none of them one encoding of an
/// `Order`: each gives a decode or trailing-bytes error (no panic, no huge
/// allocation); 500 random payloads give an error or a value, never a
/// panic.
#[test]
fn garbage_from_another_process_is_an_error() {
    let ns = TestNs::new("serde-garbage");
    let node = ns.node("parent");
    let limits = Limits::default().queue_depth(1024).chunk_count(1024);
    let ex = node
        .create_exchange("junk", Pattern::PublishSubscribe, limits)
        .expect("create");
    let sub = ex.subscriber("#", 0).expect("subscriber");
    let child = ChildProc::spawn(&ns, "garbage", &[("EXCHANGE", "junk".into())]);
    for (what, _) in garbage() {
        let sample = sub.receive_timeout(common::TIMEOUT).expect("receive");
        assert_eq!(sample.key(), Some(what));
        match sample.deserialize::<Order>() {
            Err(SerialError::TrailingBytes { len, used, .. }) if what == "trailing" => {
                assert_eq!(used + 1, len)
            }
            Err(SerialError::Decode { len, type_name, .. }) if what != "trailing" => {
                assert_eq!(len, sample.len());
                assert!(type_name.ends_with("Order"), "{type_name}");
            }
            other => panic!("{what}: {other:?}"),
        }
        // Through the umbrella error as well.
        let e: shmex::Error = sample.deserialize::<Order>().unwrap_err().into();
        assert!(matches!(e, shmex::Error::Serial(_)));
    }
    let mut values = 0;
    for _ in 0..500 {
        let sample = sub.receive_timeout(common::TIMEOUT).expect("receive");
        values += usize::from(sample.deserialize::<Order>().is_ok());
        values += usize::from(sample.deserialize::<Receipt>().is_ok());
        values += usize::from(sample.deserialize::<Vec<Status>>().is_ok());
    }
    assert!(values < 1500, "random bytes are rarely a value");
    child.finish().one("sent");
    drop(sub);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

fn refused<T>(r: Result<T, SerialError>) -> bool {
    matches!(r, Err(SerialError::TooLarge { max: 64 }))
}

/// A value whose encoding exceeds the chunk size is refused by every
/// sender with `TooLarge`: nothing is delivered, no chunk stays loaned, a
/// loan keeps its length; the largest value that fits is sent.
#[test]
fn too_large_value_is_refused() {
    let ns = TestNs::new("serde-large");
    let node = ns.node("parent");
    let limits = Limits::default().chunk_size(64).chunk_count(2);
    let too_large = "x".repeat(64); // 1 length byte + 64
    let fits = "x".repeat(63);

    let ps = node
        .create_exchange("ps", Pattern::PublishSubscribe, limits)
        .expect("create");
    let sub = ps.subscriber("#", 0).expect("subscriber");
    let publisher = ps.publisher().expect("publisher");
    // More refusals than chunks: a refused send returns its chunk.
    for _ in 0..3 {
        assert!(refused(publisher.send_serialized("k", &too_large)));
    }
    assert!(sub.try_receive().expect("try_receive").is_none());
    let mut loan = publisher.loan(5).expect("loan");
    assert!(refused(loan.write_serialized(&too_large)));
    assert_eq!(loan.len(), 5, "a refused write keeps the length");
    loan.write_serialized(&fits).expect("fits");
    assert_eq!(loan.len(), 64);
    let mut owned = publisher.loan(3).expect("loan").into_owned();
    assert!(refused(owned.write_serialized(&too_large)));
    assert_eq!(owned.len(), 3);
    owned.write_serialized(&fits).expect("fits");
    assert_eq!(owned.len(), 64);
    drop(owned);
    publisher.send_loan("k", loan).expect("publish");
    let got: String = sub.receive().expect("receive").deserialize().expect("de");
    assert_eq!(got, fits);
    let e: shmex::Error = publisher
        .send_serialized("k", &too_large)
        .unwrap_err()
        .into();
    assert!(matches!(e, shmex::Error::Serial(_)), "{e:?}");

    let fan = node
        .create_exchange("fan", Pattern::FanIn, limits)
        .expect("create");
    let consumer = fan.consumer().expect("consumer");
    let producer = fan.producer().expect("producer");
    for _ in 0..3 {
        assert!(refused(producer.send_serialized(1, &too_large)));
    }
    producer.send_serialized(2, &fits).expect("fits");
    let sample = consumer.receive().expect("receive");
    assert_eq!(sample.deserialize::<String>().expect("de"), fits);
    drop(sample);

    let tasks = node
        .create_exchange("tasks", Pattern::Tasks, limits)
        .expect("create");
    let worker = tasks.worker(2).expect("worker");
    let submitter = tasks.submitter().expect("submitter");
    for _ in 0..3 {
        assert!(refused(
            submitter.send_serialized(Submit::new().tag(1), &too_large)
        ));
    }
    submitter
        .send_serialized(Submit::new().priority(1).tag(2), &fits)
        .expect("fits");
    let task = worker.receive().expect("receive");
    assert_eq!(task.deserialize::<String>().expect("de"), fits);
    let task = task.into_owned();
    assert_eq!(task.deserialize::<String>().expect("de owned"), fits);
    task.ack();

    let rpc = node
        .create_exchange("rpc", Pattern::RequestResponse, limits)
        .expect("create");
    let server = rpc.server().expect("server");
    let client = rpc.client().expect("client");
    for _ in 0..3 {
        assert!(refused(client.send_serialized(1, &too_large)));
    }
    client.send_serialized(2, &fits).expect("fits");
    let request = server.receive().expect("request");
    assert_eq!(request.deserialize::<String>().expect("de"), fits);
    assert!(refused(request.respond_serialized(&too_large)));
    // The dropped request was answered with a failure.
    assert!(matches!(
        client.receive(),
        Err(shmex::RecvError::RequestFailed { tag: 2, .. })
    ));

    drop((sub, publisher, ps, consumer, producer, fan));
    drop((worker, submitter, tasks, server, client, rpc));
    drop(node);
    ns.assert_clean();
}
