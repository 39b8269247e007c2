//! The names the verb renames replaced still work for one release (API
//! compatibility, one process): each deprecated alias does what its new name
//! does.
#![allow(deprecated)]

mod common;

use common::{TestNs, TIMEOUT};
use shmex::{Limits, Pattern};

#[test]
fn deprecated_aliases_call_the_new_names() {
    let ns = TestNs::new("deprecated");
    let node = ns.node("parent");

    // Request-response and chunked responses.
    let ex = node
        .create_exchange("rpc", Pattern::RequestResponse, Limits::default())
        .expect("create rpc");
    let server = ex.server().expect("server");
    let client = ex.client().expect("client");
    client.request(1, b"plain").expect("request");
    let loan = client.loan(4).expect("loan");
    client.send_request(2, loan).expect("send_request");
    for tag in [1, 2] {
        let req = server.receive_timeout(TIMEOUT).expect("a request");
        assert_eq!(req.tag(), tag);
        req.respond(b"ok").expect("respond");
        assert_eq!(
            client.receive_timeout(TIMEOUT).expect("response").tag(),
            tag
        );
    }
    client
        .request_stream(3, b"stream", 2)
        .expect("request_stream");
    let mut stream = server
        .receive_timeout(TIMEOUT)
        .expect("stream request")
        .respond_stream()
        .expect("respond_stream");
    stream.send_copy(b"one").expect("send_copy");
    let mut loan = stream.loan(3).expect("stream loan");
    loan.copy_from_slice(b"two");
    stream.send_timeout(loan, TIMEOUT).expect("send_timeout");
    stream.end().expect("end");
    for part in [&b"one"[..], b"two"] {
        assert_eq!(&client.receive_timeout(TIMEOUT).expect("part")[..], part);
    }
    assert!(client
        .receive_timeout(TIMEOUT)
        .expect("end")
        .is_stream_end());
    drop((client, server, ex));

    // Publish-subscribe.
    let ex = node
        .create_exchange("pubsub", Pattern::PublishSubscribe, Limits::default())
        .expect("create pubsub");
    let sub = ex.subscriber("#", 0).expect("subscriber");
    let publisher = ex.publisher().expect("publisher");
    assert_eq!(publisher.publish("a", b"1").expect("publish").delivered, 1);
    let loan = publisher.loan(1).expect("loan");
    assert_eq!(
        publisher
            .publish_loan("b", loan)
            .expect("publish_loan")
            .delivered,
        1
    );
    let owned = publisher.loan(1).expect("loan").into_owned();
    assert_eq!(
        publisher
            .publish_owned("c", owned)
            .expect("publish_owned")
            .delivered,
        1
    );
    for key in ["a", "b", "c"] {
        assert_eq!(
            sub.receive_timeout(TIMEOUT).expect("sample").key(),
            Some(key)
        );
    }
    drop((publisher, sub, ex));

    // Task distribution: priority and tag pass through the old positional
    // forms too.
    let limits = Limits::default().max_deliveries(1);
    let ex = node
        .create_exchange("tasks", Pattern::Tasks, limits)
        .expect("create tasks");
    let submitter = ex.submitter().expect("submitter");
    let worker = ex.worker(3).expect("worker");
    assert!(worker.try_take().expect("try_take").is_none());
    submitter.submit(1, 10, b"a").expect("submit");
    submitter
        .submit_timeout(2, 20, b"b", TIMEOUT)
        .expect("submit_timeout");
    let loan = submitter.loan(1).expect("loan");
    submitter.submit_loan(3, 30, loan).expect("submit_loan");
    let d = worker.take().expect("take");
    assert_eq!((d.priority(), d.tag()), (3, 30));
    d.ack().expect("ack");
    let d = worker.take_timeout(TIMEOUT).expect("take_timeout");
    assert_eq!((d.priority(), d.tag()), (2, 20));
    d.ack().expect("ack");
    let d = worker.try_take().expect("try_take").expect("a task");
    assert_eq!((d.priority(), d.tag()), (1, 10));
    d.nack(false).expect("nack");
    let dead = worker.take_dead_letter().expect("take_dead_letter");
    assert_eq!(dead.expect("a dead letter").tag(), 10);
    drop((worker, submitter, ex, node));
    ns.assert_clean();
}
