//! Typed request-response and typed tasks across processes: a request and
//! its response are each read in place where the other process wrote them
//! (no copy either way); a process asking for another response type is
//! refused with both sides named as `Req -> Resp`; an untyped handle still
//! opens a typed request-response exchange; a typed chunked response
//! arrives in order and in place; typed tasks are acked, nacked and
//! dead-lettered; payloads of the wrong length are errors, never views.

mod common;

use common::{child_node, env_str, env_u64, mapping_offset, report, ChildProc, TestNs};
use shmex::{FailReason, Limits, OpenError, Pattern, RecvError, Submit, TypeInfo, TypedReply};

/// The request of these tests.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Query {
    a: u32,
    b: u32,
    seq: u64,
}
shmex::payload!(Query { a, b, seq });

/// The response.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Answer {
    sum: u64,
    seq: u64,
}
shmex::payload!(Answer { sum, seq });

/// Same size and alignment as `Answer`, another layout.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Other {
    bytes: [u8; 8],
    id: u64,
}
shmex::payload!(Other { bytes, id });

/// A task.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Job {
    n: u64,
    weight: u32,
    _pad: u32,
}
shmex::payload!(Job { n, weight });

const JOBS: u64 = 20;

#[test]
#[ignore = "child process entry point, run by the tests of this file"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let node = child_node(&role);
    let name = env_str("EXCHANGE");
    let path = node.namespace().exchange_path(&name);
    match role.as_str() {
        "client" => {
            let ex = node
                .open_typed_rpc_exchange::<Query, Answer>(&name)
                .expect("open");
            let client = ex.client().expect("client");
            let mut loan = client.loan_uninit().expect("loan").assume_init();
            *loan = Query {
                a: 2,
                b: 40,
                seq: 9,
            };
            let at = mapping_offset(&path, &*loan as *const Query as usize);
            report(format!(
                "request_at {}",
                at.expect("loan inside the segment")
            ));
            client.send_loan(5, loan).expect("send");
            let r = client.receive_timeout(common::TIMEOUT).expect("receive");
            report(format!("tag {}", r.untyped().tag()));
            report(format!("answer {} {}", r.sum, r.seq));
            let at = mapping_offset(&path, &*r as *const Answer as usize);
            report(format!(
                "response_at {}",
                at.expect("sample inside the segment")
            ));
        }
        "stream_server" => {
            let ex = node
                .open_typed_rpc_exchange::<Query, Answer>(&name)
                .expect("open");
            let server = ex.server().expect("server");
            report("ready");
            let request = server.receive_timeout(common::TIMEOUT).expect("receive");
            let (n, seq) = (request.a, request.seq);
            let mut stream = request.respond_stream().expect("stream");
            for i in 0..u64::from(n) {
                let loan = stream
                    .loan_uninit()
                    .expect("loan")
                    .write(Answer { sum: i, seq });
                if i == 0 {
                    let at = mapping_offset(&path, &*loan as *const Answer as usize);
                    report(format!("first_at {}", at.expect("loan inside the segment")));
                }
                stream.send_loan(loan).expect("send");
            }
            stream.end().expect("end");
            report("ended");
        }
        "wrong" => match node.open_typed_rpc_exchange::<Query, Other>(&name) {
            Err(e @ OpenError::TypeMismatch { .. }) => report(format!("refused {e}")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => report("opened"),
        },
        "matching" => {
            let ex = node
                .open_typed_rpc_exchange::<Query, Answer>(&name)
                .expect("open");
            let client = ex.client().expect("client");
            client.send(1, &Query { a: 1, b: 2, seq: 3 }).expect("send");
            let r = client.receive_timeout(common::TIMEOUT).expect("receive");
            report(format!("answer {} {}", r.sum, r.seq));
        }
        "bytes" => {
            let ex = node.open_exchange(&name).expect("untyped open");
            report(format!("request_type {}", ex.payload_type()));
            report(format!("response_type {}", ex.response_type()));
            let client = ex.client().expect("client");
            let q = Query { a: 3, b: 4, seq: 1 };
            client.send(2, bytemuck::bytes_of(&q)).expect("request");
            let r = client.receive_timeout(common::TIMEOUT).expect("receive");
            let a: &Answer = r.as_pod().expect("an Answer's bytes");
            report(format!("answer {} {}", a.sum, a.seq));
        }
        "worker" => {
            let ex = node.open_typed_exchange::<Job>(&name).expect("open");
            let worker = ex.worker(4).expect("worker");
            let jobs = env_u64("JOBS");
            let (mut acked, mut sum) = (0, 0);
            while acked < jobs - 1 {
                let task = worker.receive_timeout(common::TIMEOUT).expect("receive");
                assert_eq!(task.untyped().tag(), task.n, "tag and payload agree");
                match task.n {
                    // Requeued once, then acked on its redelivery.
                    0 if !task.untyped().redelivered() => task.nack(true).expect("nack"),
                    0 => {
                        report("redelivered 0");
                        sum += task.n * u64::from(task.weight);
                        task.ack().expect("ack");
                        acked += 1;
                    }
                    // Dead-lettered.
                    1 => task.nack(false).expect("nack"),
                    n => {
                        sum += n * u64::from(task.weight);
                        task.ack().expect("ack");
                        acked += 1;
                    }
                }
            }
            report(format!("sum {sum}"));
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child client sends a `Query` written in place; the parent server reads
/// it where it was written and answers with an `Answer` written in place,
/// which the child reads where the parent wrote it: equal file offsets in
/// both mappings, both ways.
#[test]
fn typed_rpc_is_zero_copy_both_ways_across_processes() {
    let ns = TestNs::new("typed-rpc-zc");
    let node = ns.node("parent");
    let ex = node
        .create_typed_rpc_exchange::<Query, Answer>("adder", Limits::default())
        .expect("create");
    assert_eq!(ex.untyped().payload_type(), TypeInfo::of::<Query>());
    assert_eq!(ex.untyped().response_type(), TypeInfo::of::<Answer>());
    let server = ex.server().expect("server");
    let mut child = ChildProc::spawn(&ns, "client", &[("EXCHANGE", "adder".into())]);
    let request_at: u64 = child.wait_for("request_at").parse().unwrap();
    let request = server.receive_timeout(common::TIMEOUT).expect("receive");
    assert_eq!(
        *request,
        Query {
            a: 2,
            b: 40,
            seq: 9
        }
    );
    let path = ns.exchange_path("adder");
    assert_eq!(
        mapping_offset(&path, &*request as *const Query as usize),
        Some(request_at),
        "request read in place where it was written"
    );
    let mut loan = request.loan_uninit().expect("loan").assume_init();
    *loan = Answer {
        sum: u64::from(request.a + request.b),
        seq: request.seq,
    };
    let response_at = mapping_offset(&path, &*loan as *const Answer as usize);
    request.respond_loan(loan).expect("respond");
    let report = child.finish();
    assert_eq!(report.one("tag"), "5");
    assert_eq!(report.one("answer"), "42 9");
    assert_eq!(
        Some(report.num("response_at")),
        response_at,
        "response read in place where it was written"
    );
    drop(server);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A typed chunked response from a child server: every `Answer` arrives in
/// order, each read in place (the first where the child wrote it), under a
/// window smaller than the stream, then the end with the request's tag.
#[test]
fn typed_response_stream_across_processes() {
    let ns = TestNs::new("typed-rpc-stream");
    let node = ns.node("parent");
    let ex = node
        .create_typed_rpc_exchange::<Query, Answer>("adder", Limits::default())
        .expect("create");
    let client = ex.client().expect("client");
    let mut child = ChildProc::spawn(&ns, "stream_server", &[("EXCHANGE", "adder".into())]);
    child.wait_for("ready");
    let query = Query { a: 7, b: 0, seq: 4 };
    client.send_stream(9, &query, 2).expect("send stream");
    let (mut got, mut first_at) = (Vec::new(), None);
    let end_tag = loop {
        match client
            .receive_reply_timeout(common::TIMEOUT)
            .expect("receive")
        {
            TypedReply::Value(chunk) => {
                assert!(chunk.untyped().is_stream_chunk());
                if got.is_empty() {
                    first_at = mapping_offset(
                        &ns.exchange_path("adder"),
                        &*chunk as *const Answer as usize,
                    );
                }
                got.push(*chunk);
            }
            TypedReply::StreamEnd { tag } => break tag,
        }
    };
    assert_eq!(end_tag, 9);
    let want: Vec<Answer> = (0..7).map(|i| Answer { sum: i, seq: 4 }).collect();
    assert_eq!(got, want);
    let report = child.finish();
    assert_eq!(Some(report.num("first_at")), first_at, "read in place");
    drop(client);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// A child asking for `Query -> Other` on a `Query -> Answer` exchange is
/// refused, the error naming both sides' request and response types; a
/// child asking for the matching types joins and is answered. In process:
/// a one-type open of the request-response exchange is refused too (it
/// would ignore the response type), and so is a typed open of an untyped
/// one.
#[test]
fn mismatching_response_type_is_refused_naming_both() {
    let ns = TestNs::new("typed-rpc-mismatch");
    let node = ns.node("parent");
    let ex = node
        .create_typed_rpc_exchange::<Query, Answer>("adder", Limits::default())
        .expect("create");
    let refused = ChildProc::spawn(&ns, "wrong", &[("EXCHANGE", "adder".into())])
        .finish()
        .one("refused");
    let query = TypeInfo::of::<Query>();
    let ours = format!("{query} -> {}", TypeInfo::of::<Answer>());
    let theirs = format!("{query} -> {}", TypeInfo::of::<Other>());
    assert!(
        refused.contains(&format!("carries {ours}, asked for {theirs}")),
        "{refused}"
    );

    let server = ex.server().expect("server");
    let child = ChildProc::spawn(&ns, "matching", &[("EXCHANGE", "adder".into())]);
    let request = server.receive_timeout(common::TIMEOUT).expect("receive");
    let answer = Answer {
        sum: u64::from(request.a + request.b),
        seq: request.seq,
    };
    request.respond(&answer).expect("respond");
    assert_eq!(child.finish().one("answer"), "3 3");

    match node.open_typed_exchange::<Query>("adder") {
        Err(OpenError::TypeMismatch {
            expected_response,
            found_response,
            ..
        }) => {
            assert!(expected_response.is_bytes());
            assert_eq!(*found_response, TypeInfo::of::<Answer>());
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let raw = node
        .create_exchange("raw", Pattern::RequestResponse, Limits::default())
        .expect("create untyped");
    assert!(raw.response_type().is_bytes());
    match node.open_typed_rpc_exchange::<Query, Answer>("raw") {
        Err(e @ OpenError::TypeMismatch { .. }) => {
            let e = e.to_string();
            assert!(e.contains("carries bytes"), "{e}");
            assert!(e.contains(&ours), "{e}");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    drop(raw);
    drop(server);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// An untyped handle opens a typed request-response exchange, sees both
/// types, and talks to a typed server in bytes; the listing shows both
/// types.
#[test]
fn untyped_open_of_typed_rpc_exchange_works() {
    let ns = TestNs::new("typed-rpc-bytes");
    let node = ns.node("parent");
    let ex = node
        .create_typed_rpc_exchange::<Query, Answer>("adder", Limits::default())
        .expect("create");
    let listed = shmex::list_exchanges(&ns.namespace());
    let info = listed[0].as_ref().expect("listed");
    assert_eq!(info.payload, TypeInfo::of::<Query>());
    assert_eq!(info.response, TypeInfo::of::<Answer>());
    let server = ex.server().expect("server");
    let mut child = ChildProc::spawn(&ns, "bytes", &[("EXCHANGE", "adder".into())]);
    assert_eq!(
        child.wait_for("request_type"),
        TypeInfo::of::<Query>().to_string()
    );
    assert_eq!(
        child.wait_for("response_type"),
        TypeInfo::of::<Answer>().to_string()
    );
    let request = server.receive_timeout(common::TIMEOUT).expect("receive");
    let answer = Answer {
        sum: u64::from(request.a * request.b),
        seq: request.seq,
    };
    request.respond(&answer).expect("respond");
    assert_eq!(child.finish().one("answer"), "12 1");
    drop(server);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Typed tasks from the parent to a child worker: every job arrives as a
/// `Job` read in place; one is nacked and redelivered, one dead-lettered,
/// the rest acked, and the exchange's counters agree.
#[test]
fn typed_tasks_across_processes_with_ack_and_nack() {
    let ns = TestNs::new("typed-tasks");
    let node = ns.node("parent");
    let ex = node
        .create_typed_exchange::<Job>("jobs", Pattern::Tasks, Limits::default())
        .expect("create");
    let submitter = ex.submitter().expect("submitter");
    let child = ChildProc::spawn(
        &ns,
        "worker",
        &[("EXCHANGE", "jobs".into()), ("JOBS", JOBS.to_string())],
    );
    let mut expected = 0;
    for n in 0..JOBS {
        let job = Job {
            n,
            weight: 3,
            _pad: 0,
        };
        if n != 1 {
            expected += n * 3;
        }
        if n % 2 == 0 {
            submitter.send(Submit::new().tag(n), &job).expect("send");
        } else {
            let loan = submitter.loan_uninit().expect("loan").write(job);
            submitter
                .send_loan(Submit::new().priority(1).tag(n), loan)
                .expect("send loan");
        }
    }
    let report = child.finish();
    assert_eq!(report.one("redelivered"), "0");
    assert_eq!(report.num("sum"), expected);
    let stats = ex.untyped().task_stats().expect("task stats");
    assert_eq!(
        (
            stats.submitted,
            stats.acked,
            stats.redelivered,
            stats.dead_lettered
        ),
        (JOBS, JOBS - 1, 1, 1)
    );
    drop(submitter);
    drop(ex);
    drop(node);
    ns.assert_clean();
}

/// Payloads of the wrong length for the exchange's types are errors, never
/// views: a request from an untyped client is refused by the typed server
/// and its client told; a response from an untyped server is refused by the
/// typed client; a task from an untyped submitter is dead-lettered.
#[test]
fn wrong_length_payloads_are_errors_not_views() {
    let ns = TestNs::new("typed-rpc-wrong");
    let node = ns.node("parent");
    let ex = node
        .create_typed_rpc_exchange::<Query, Answer>("adder", Limits::default())
        .expect("create");
    let (server, client) = (ex.server().expect("server"), ex.client().expect("client"));
    let raw_client = ex.untyped().client().expect("untyped client");
    raw_client.send(1, b"short").expect("request");
    assert!(matches!(
        server.receive_timeout(common::TIMEOUT),
        Err(RecvError::Corrupt(_))
    ));
    assert!(matches!(
        raw_client.receive_timeout(common::TIMEOUT),
        Err(RecvError::RequestFailed {
            tag: 1,
            reason: FailReason::Unanswered
        })
    ));
    let raw_server = ex.untyped().server().expect("untyped server");
    drop(server);
    client.send(2, &Query { a: 0, b: 0, seq: 0 }).expect("send");
    let request = raw_server
        .receive_timeout(common::TIMEOUT)
        .expect("receive");
    request.respond(&[0u8; 3]).expect("respond");
    assert!(matches!(
        client.receive_timeout(common::TIMEOUT),
        Err(RecvError::Corrupt(_))
    ));

    let tasks = node
        .create_typed_exchange::<Job>("jobs", Pattern::Tasks, Limits::default())
        .expect("create tasks");
    let worker = tasks.worker(1).expect("worker");
    tasks
        .untyped()
        .submitter()
        .expect("untyped submitter")
        .send(Submit::new().tag(7), &[1u8; 24])
        .expect("send");
    assert!(matches!(
        worker.receive_timeout(common::TIMEOUT),
        Err(RecvError::Corrupt(_))
    ));
    let stats = tasks.untyped().task_stats().expect("task stats");
    assert_eq!((stats.dead_letters, stats.in_flight), (1, 0));
    drop((worker, tasks, raw_server, raw_client, client, ex, node));
    ns.assert_clean();
}
