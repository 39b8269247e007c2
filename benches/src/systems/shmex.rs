//! shmex, through its public API only.
//!
//! - `pubsub-rtt`: two publish-subscribe exchanges (`ping`, `pong`), one
//!   publisher and one subscriber (pattern `rtt`, key `rtt`) on each; every
//!   message is a loaned chunk written in place (`loan` + `send_loan`).
//!   `shmex-typed` does the same on typed exchanges of `u64`: a message is
//!   a slice of `size / 8` of them, loaned and written in place
//!   (`loan_slice_uninit` + `send_slice_loan`), read in place with
//!   `receive_slice`: the same chunks, seen as `[u64]` instead of `[u8]`.
//! - `reqresp-rtt`: one request-response exchange, a client here and a
//!   server in the peer (`send_loan` of a loan, `respond_loan`).
//! - `stream` / `fanin`: one fan-in exchange, the consumer here and one
//!   producer per peer (`send_loan`), retrying on a full pool or queue.
//! - `tasks`: one task exchange (a ledger of 256 tasks), the submitter here
//!   (`loan` + `send_loan`, retrying on a full queue) and one worker per
//!   peer. A worker takes what is ready up to its prefetch limit
//!   (`try_receive` until it returns nothing), then acks each by id, and
//!   again. A batch is `n` tasks per worker plus one stop task per worker
//!   (a worker ends its batch at the first stop task it takes; all stop
//!   tasks queue behind the work); it ends when the exchange has counted
//!   every one of them acked ([`Exchange::task_stats`]). Workers check the
//!   sequence numbers (one worker: consecutive; two: increasing per
//!   worker); the driver checks that exactly the tasks it submitted were
//!   acked.
//! - `stream-response`: one request-response exchange of
//!   [`STREAM_CHUNK`]-byte chunks, a client here and a server in the peer.
//!   Per response the client sends one request (`request_stream`, window
//!   [`STREAM_WINDOW`]); the server answers with `respond_stream`: for each
//!   chunk `loan` (retried while the pool is empty), every byte written in
//!   place ([`fill_words`]), `send` (waits while the window is full), then
//!   `end`. The client reads and checks every byte of each chunk in place
//!   ([`check_words`]) and drops it (which releases it), until the end
//!   marker.
//!
//! Busy-polling uses `try_receive` in a loop; blocking uses `receive` on a
//! node whose spin budget is zero, so a receiver that finds nothing sleeps.

use crate::{
    check_seq, check_words, err, fill_words, read_payload, spin_pause, write_payload, Batch, Case,
    Clock, DriverSide, Histogram, Mode, PeerArgs, PeerSide, Result, Run, Spec, STREAM_CHUNK,
    STREAM_WINDOW,
};
use ::shmex::{
    Client, Consumer, Exchange, Limits, Node, Pattern, Producer, Publisher, RecvError, SendError,
    Server, Submit, Submitter, Subscriber, TaskId, TypedExchange, TypedPublisher, TypedSubscriber,
    Worker,
};
use std::time::Duration;

const KEY: &str = "rtt";
/// Tag of the task that ends a worker's batch.
const STOP: u64 = u64::MAX;
/// Task ledger: tasks queued and in flight at most.
const TASK_DEPTH: u32 = 256;

fn node(name: String, namespace: String, mode: Mode) -> Result<Node> {
    let spin = match mode {
        Mode::Spin => ::shmex::DEFAULT_SPIN,
        Mode::Blocking => Duration::ZERO,
    };
    Ok(Node::builder(name)
        .namespace(namespace)
        .spin(spin)
        .create()?)
}

fn limits(spec: &Spec) -> Limits {
    if let Case::Tasks { .. } = spec.case {
        return Limits::default()
            .chunk_size(spec.size)
            // One chunk per ledger entry, plus those still held by workers'
            // deliveries after their entries were freed, plus the loan.
            .chunk_count(2 * TASK_DEPTH)
            .queue_depth(TASK_DEPTH)
            .max_ports(4)
            // Two workers' stop tasks never bounce that often; nothing else
            // is redelivered (no nack, acks well within the timeout).
            .max_deliveries(255);
    }
    if spec.case == Case::StreamResponse {
        return Limits::default()
            .chunk_size(STREAM_CHUNK)
            // The window, the chunk being written, one release deferred by
            // the client, the request: twice the window leaves slack.
            .chunk_count(2 * STREAM_WINDOW)
            // The client's inbox holds the window and the end marker.
            .queue_depth((STREAM_WINDOW + 1).next_power_of_two())
            .max_ports(4)
            .mode(0o600);
    }
    let depth = if spec.case.is_latency() { 8 } else { 256 };
    Limits::default()
        .chunk_size(spec.size)
        // Streams: the pool is the flow control (a free chunk guarantees a
        // free inbox slot).
        .chunk_count(depth)
        .queue_depth(depth)
        .max_ports(4)
        .mode(0o600)
}

fn exchange_names(cell: u32) -> (String, String) {
    (format!("c{cell}-ping"), format!("c{cell}-pong"))
}

/// Receives with `try` in a busy loop (spin) or `block` (blocking).
#[inline(always)]
fn recv<T>(
    mode: Mode,
    mut try_recv: impl FnMut() -> std::result::Result<Option<T>, RecvError>,
    block: impl FnOnce() -> std::result::Result<T, RecvError>,
) -> Result<T> {
    match mode {
        Mode::Spin => loop {
            if let Some(x) = try_recv()? {
                return Ok(x);
            }
            spin_pause();
        },
        Mode::Blocking => Ok(block()?),
    }
}

enum DriverPorts {
    Pubsub {
        publisher: Publisher,
        subscriber: Subscriber,
        _ex: (Exchange, Exchange),
    },
    TypedPubsub {
        publisher: TypedPublisher<u64>,
        subscriber: TypedSubscriber<u64>,
        _ex: (TypedExchange<u64>, TypedExchange<u64>),
    },
    Reqresp {
        client: Client,
        _ex: Exchange,
    },
    Streamed {
        client: Client,
        _ex: Exchange,
    },
    Fanin {
        consumer: Consumer,
        _ex: Exchange,
    },
    Tasks {
        submitter: Submitter,
        ex: Exchange,
    },
}

struct Driver {
    ports: DriverPorts,
    spec: Spec,
    seq: u64,
    /// Streamed responses: tag of the last request.
    tag: u64,
    /// Per producer: next sequence number expected.
    expected: Vec<(Option<shmex::SenderId>, u64)>,
    _node: Node,
}

/// Messages of `size` bytes as a slice of `u64` (typed exchanges).
fn words(size: usize) -> Result<usize> {
    if size.is_multiple_of(8) {
        Ok(size / 8)
    } else {
        Err(err(format!(
            "typed: {size} bytes are not a whole number of u64"
        )))
    }
}

/// Driving side (`typed`: on typed exchanges, `pubsub-rtt` only).
pub fn driver(run: &Run, cell: u32, spec: Spec, typed: bool) -> Result<Box<dyn DriverSide>> {
    let node = node(format!("drv-c{cell}"), run.shmex_namespace(), spec.mode)?;
    let limits = limits(&spec);
    let (ping, pong) = exchange_names(cell);
    let ports = match spec.case {
        Case::PubsubRtt if typed => {
            words(spec.size)?;
            let a = node.create_typed_exchange::<u64>(&ping, Pattern::PublishSubscribe, limits)?;
            let b = node.create_typed_exchange::<u64>(&pong, Pattern::PublishSubscribe, limits)?;
            DriverPorts::TypedPubsub {
                publisher: a.publisher()?,
                subscriber: b.subscriber(KEY, 0)?,
                _ex: (a, b),
            }
        }
        _ if typed => return Err(err(format!("shmex-typed: no {} rows", spec.case.name()))),
        Case::PubsubRtt => {
            let a = node.create_exchange(&ping, Pattern::PublishSubscribe, limits)?;
            let b = node.create_exchange(&pong, Pattern::PublishSubscribe, limits)?;
            DriverPorts::Pubsub {
                publisher: a.publisher()?,
                subscriber: b.subscriber(KEY, 0)?,
                _ex: (a, b),
            }
        }
        Case::ReqrespRtt => {
            let ex = node.create_exchange(&ping, Pattern::RequestResponse, limits)?;
            DriverPorts::Reqresp {
                client: ex.client()?,
                _ex: ex,
            }
        }
        Case::StreamResponse => {
            let ex = node.create_exchange(&ping, Pattern::RequestResponse, limits)?;
            DriverPorts::Streamed {
                client: ex.client()?,
                _ex: ex,
            }
        }
        Case::Stream | Case::Fanin => {
            let ex = node.create_exchange(&ping, Pattern::FanIn, limits)?;
            DriverPorts::Fanin {
                consumer: ex.consumer()?,
                _ex: ex,
            }
        }
        Case::Tasks { .. } => {
            let ex = node.create_exchange(&ping, Pattern::Tasks, limits)?;
            DriverPorts::Tasks {
                submitter: ex.submitter()?,
                ex,
            }
        }
    };
    Ok(Box::new(Driver {
        ports,
        spec,
        seq: 0,
        tag: 0,
        expected: Vec::new(),
        _node: node,
    }))
}

impl DriverSide for Driver {
    fn run(&mut self, n: u64, peers: usize, clock: &Clock, hist: &mut Histogram) -> Result<Batch> {
        let Spec {
            size,
            mode,
            touched,
            ..
        } = self.spec;
        match &self.ports {
            DriverPorts::Pubsub {
                publisher,
                subscriber,
                ..
            } => round_trips(n, clock, hist, || {
                self.seq += 1;
                let mut loan = publisher.loan(size)?;
                write_payload(&mut loan, self.seq, touched);
                check_delivered(publisher.send_loan(KEY, loan)?)?;
                let sample = recv(mode, || subscriber.try_receive(), || subscriber.receive())?;
                check_seq(read_payload(&sample, touched), self.seq)
            }),
            DriverPorts::TypedPubsub {
                publisher,
                subscriber,
                ..
            } => round_trips(n, clock, hist, || {
                self.seq += 1;
                let mut loan = publisher.loan_slice_uninit(size / 8)?.assume_init();
                write_payload(bytemuck::cast_slice_mut(&mut loan), self.seq, touched);
                check_delivered(publisher.send_slice_loan(KEY, loan)?)?;
                let sample = recv(
                    mode,
                    || subscriber.try_receive_slice(),
                    || subscriber.receive_slice(),
                )?;
                check_seq(
                    read_payload(bytemuck::cast_slice(&sample), touched),
                    self.seq,
                )
            }),
            DriverPorts::Reqresp { client, .. } => {
                let start = clock.now();
                let mut prev = start;
                for _ in 0..n {
                    self.seq += 1;
                    let mut loan = client.loan(size)?;
                    write_payload(&mut loan, self.seq, touched);
                    client.send_loan(self.seq, loan)?;
                    let response = recv(mode, || client.try_receive(), || client.receive())?;
                    check_seq(response.tag(), self.seq)?;
                    check_seq(read_payload(&response, touched), self.seq)?;
                    drop(response);
                    let now = clock.now();
                    hist.record(clock.ns(now.wrapping_sub(prev)));
                    prev = now;
                }
                Ok(Batch {
                    elapsed: clock.duration(prev.wrapping_sub(start)),
                    msgs: n,
                })
            }
            DriverPorts::Streamed { client, .. } => {
                let chunks = (size / STREAM_CHUNK) as u64;
                let start = clock.now();
                for _ in 0..n {
                    self.tag += 1;
                    let tag = self.tag;
                    client.request_stream(tag, &tag.to_le_bytes(), STREAM_WINDOW)?;
                    let mut got = 0;
                    loop {
                        let part = recv(mode, || client.try_receive(), || client.receive())?;
                        check_seq(part.tag(), tag)?;
                        if part.is_stream_end() {
                            break;
                        }
                        if !part.is_stream_chunk() {
                            return Err(err("a plain response to a stream request"));
                        }
                        self.seq += 1;
                        check_words(&part, self.seq)?;
                        drop(part);
                        got += 1;
                    }
                    if got != chunks {
                        return Err(err(format!("a response of {got} chunks, not {chunks}")));
                    }
                }
                let end = clock.now();
                Ok(Batch {
                    elapsed: clock.duration(end.wrapping_sub(start)),
                    msgs: n * chunks,
                })
            }
            DriverPorts::Fanin { consumer, .. } => {
                let total = n * peers as u64;
                let mut first = None;
                let mut last = 0;
                for _ in 0..total {
                    let sample = recv(mode, || consumer.try_receive(), || consumer.receive())?;
                    last = clock.now();
                    first.get_or_insert(last);
                    let seq = read_payload(&sample, touched);
                    let sender = sample.sender();
                    drop(sample);
                    let slot = match self.expected.iter_mut().find(|(s, _)| *s == sender) {
                        Some(slot) => slot,
                        None => {
                            self.expected.push((sender, 1));
                            self.expected.last_mut().ok_or_else(|| err("unreachable"))?
                        }
                    };
                    check_seq(seq, slot.1)?;
                    slot.1 += 1;
                }
                Ok(Batch {
                    elapsed: clock.duration(last.wrapping_sub(first.unwrap_or(last))),
                    msgs: total,
                })
            }
            DriverPorts::Tasks { submitter, ex } => {
                let stats = || ex.task_stats().ok_or_else(|| err("not a task exchange"));
                let before = stats()?;
                let total = n * peers as u64 + peers as u64;
                let start = clock.now();
                for _ in 0..n * peers as u64 {
                    self.seq += 1;
                    submit(submitter, self.seq, self.seq, size, touched)?;
                }
                for _ in 0..peers {
                    submit(submitter, STOP, 0, size, touched)?;
                }
                // Every task acked: the exchange's own counter (a scan of
                // the ledger, so not polled back to back).
                let want = before.acked + total;
                let after = loop {
                    let s = stats()?;
                    if s.acked >= want {
                        break s;
                    }
                    for _ in 0..64 {
                        spin_pause();
                    }
                };
                let end = clock.now();
                if after.acked != want
                    || after.submitted != before.submitted + total
                    || after.queued != 0
                    || after.in_flight != 0
                {
                    return Err(err(format!(
                        "tasks: submitted {} acked {} (expected {total} each), {} queued, {} in flight",
                        after.submitted - before.submitted,
                        after.acked - before.acked,
                        after.queued,
                        after.in_flight
                    )));
                }
                Ok(Batch {
                    elapsed: clock.duration(end.wrapping_sub(start)),
                    msgs: total,
                })
            }
        }
    }
}

/// Times `n` round trips (`one` each, what it received dropped before it
/// returns), one by one into `hist`.
#[inline(always)]
fn round_trips(
    n: u64,
    clock: &Clock,
    hist: &mut Histogram,
    mut one: impl FnMut() -> Result<()>,
) -> Result<Batch> {
    let start = clock.now();
    let mut prev = start;
    for _ in 0..n {
        one()?;
        let now = clock.now();
        hist.record(clock.ns(now.wrapping_sub(prev)));
        prev = now;
    }
    Ok(Batch {
        elapsed: clock.duration(prev.wrapping_sub(start)),
        msgs: n,
    })
}

/// A round trip's publication reached exactly the one subscriber.
fn check_delivered(report: ::shmex::Published) -> Result<()> {
    if report.delivered != 1 {
        return Err(err(format!("publish reached {report:?}")));
    }
    Ok(())
}

/// Submits one task (`tag`, sequence number `seq` in its payload), retrying
/// while the ledger (or the pool) is full.
#[inline]
fn submit(submitter: &Submitter, tag: u64, seq: u64, size: usize, touched: bool) -> Result<()> {
    loop {
        let mut loan = match submitter.loan(size) {
            Ok(l) => l,
            Err(SendError::PoolExhausted { .. }) => {
                spin_pause();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        write_payload(&mut loan, seq, touched);
        match submitter.send_loan(Submit::new().tag(tag), loan) {
            Ok(()) => return Ok(()),
            Err(SendError::QueueFull) => spin_pause(),
            Err(e) => return Err(e.into()),
        }
    }
}

enum PeerPorts {
    Pubsub {
        subscriber: Subscriber,
        publisher: Publisher,
        _ex: (Exchange, Exchange),
    },
    TypedPubsub {
        subscriber: TypedSubscriber<u64>,
        publisher: TypedPublisher<u64>,
        _ex: (TypedExchange<u64>, TypedExchange<u64>),
    },
    Reqresp {
        server: Server,
        _ex: Exchange,
    },
    Streamed {
        server: Server,
        _ex: Exchange,
    },
    Fanin {
        producer: Producer,
        _ex: Exchange,
    },
    Tasks {
        worker: Worker,
        /// Only one worker: tasks must arrive in submission order.
        alone: bool,
        _ex: Exchange,
    },
}

struct Peer {
    ports: PeerPorts,
    spec: Spec,
    seq: u64,
    _node: Node,
}

/// Peer side: echo (round trips) or producer (streams).
pub fn peer(args: &PeerArgs) -> Result<Box<dyn PeerSide>> {
    let spec = args.spec;
    let node = node(
        format!("peer-c{}-{}", args.cell, args.index),
        format!("{}-{}", crate::NAME_PREFIX, args.run),
        spec.mode,
    )?;
    let (ping, pong) = exchange_names(args.cell);
    let ports = match spec.case {
        Case::PubsubRtt if args.system == crate::System::ShmexTyped => {
            let a = node.open_typed_exchange::<u64>(&ping)?;
            let b = node.open_typed_exchange::<u64>(&pong)?;
            PeerPorts::TypedPubsub {
                subscriber: a.subscriber(KEY, 0)?,
                publisher: b.publisher()?,
                _ex: (a, b),
            }
        }
        Case::PubsubRtt => {
            let a = node.open_exchange(&ping)?;
            let b = node.open_exchange(&pong)?;
            PeerPorts::Pubsub {
                subscriber: a.subscriber(KEY, 0)?,
                publisher: b.publisher()?,
                _ex: (a, b),
            }
        }
        Case::ReqrespRtt => {
            let ex = node.open_exchange(&ping)?;
            PeerPorts::Reqresp {
                server: ex.server()?,
                _ex: ex,
            }
        }
        Case::StreamResponse => {
            let ex = node.open_exchange(&ping)?;
            PeerPorts::Streamed {
                server: ex.server()?,
                _ex: ex,
            }
        }
        Case::Stream | Case::Fanin => {
            let ex = node.open_exchange(&ping)?;
            PeerPorts::Fanin {
                producer: ex.producer()?,
                _ex: ex,
            }
        }
        Case::Tasks { workers, prefetch } => {
            let ex = node.open_exchange(&ping)?;
            PeerPorts::Tasks {
                worker: ex.worker(prefetch)?,
                alone: workers == 1,
                _ex: ex,
            }
        }
    };
    Ok(Box::new(Peer {
        ports,
        spec,
        seq: 0,
        _node: node,
    }))
}

impl PeerSide for Peer {
    fn run(&mut self, n: u64) -> Result<()> {
        let Spec {
            size,
            mode,
            touched,
            ..
        } = self.spec;
        match &self.ports {
            PeerPorts::Pubsub {
                subscriber,
                publisher,
                ..
            } => {
                for _ in 0..n {
                    self.seq += 1;
                    let sample = recv(mode, || subscriber.try_receive(), || subscriber.receive())?;
                    check_seq(read_payload(&sample, touched), self.seq)?;
                    drop(sample);
                    let mut loan = publisher.loan(size)?;
                    write_payload(&mut loan, self.seq, touched);
                    check_delivered(publisher.send_loan(KEY, loan)?)?;
                }
            }
            PeerPorts::TypedPubsub {
                subscriber,
                publisher,
                ..
            } => {
                for _ in 0..n {
                    self.seq += 1;
                    let sample = recv(
                        mode,
                        || subscriber.try_receive_slice(),
                        || subscriber.receive_slice(),
                    )?;
                    check_seq(
                        read_payload(bytemuck::cast_slice(&sample), touched),
                        self.seq,
                    )?;
                    drop(sample);
                    let mut loan = publisher.loan_slice_uninit(size / 8)?.assume_init();
                    write_payload(bytemuck::cast_slice_mut(&mut loan), self.seq, touched);
                    check_delivered(publisher.send_slice_loan(KEY, loan)?)?;
                }
            }
            PeerPorts::Reqresp { server, .. } => {
                for _ in 0..n {
                    self.seq += 1;
                    let request = recv(mode, || server.try_receive(), || server.receive())?;
                    check_seq(read_payload(&request, touched), self.seq)?;
                    let mut loan = server.loan(size)?;
                    write_payload(&mut loan, self.seq, touched);
                    request.respond_loan(loan)?;
                }
            }
            PeerPorts::Streamed { server, .. } => {
                let chunks = size / STREAM_CHUNK;
                for _ in 0..n {
                    let request = recv(mode, || server.try_receive(), || server.receive())?;
                    if request.stream_window() != STREAM_WINDOW {
                        return Err(err(format!(
                            "a stream request with window {}",
                            request.stream_window()
                        )));
                    }
                    let mut stream = request.respond_stream()?;
                    for _ in 0..chunks {
                        self.seq += 1;
                        let mut loan = loop {
                            match stream.loan(STREAM_CHUNK) {
                                Ok(l) => break l,
                                Err(SendError::PoolExhausted { .. }) => spin_pause(),
                                Err(e) => return Err(e.into()),
                            }
                        };
                        fill_words(&mut loan, self.seq);
                        stream.send_loan(loan)?;
                    }
                    stream.end()?;
                }
            }
            PeerPorts::Fanin { producer, .. } => {
                for _ in 0..n {
                    self.seq += 1;
                    loop {
                        let mut loan = match producer.loan(size) {
                            Ok(l) => l,
                            Err(SendError::PoolExhausted { .. }) => {
                                spin_pause();
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        };
                        write_payload(&mut loan, self.seq, touched);
                        match producer.send_loan(0, loan) {
                            Ok(()) => break,
                            Err(SendError::QueueFull) => spin_pause(),
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            PeerPorts::Tasks { worker, alone, .. } => {
                // `n` is the driver's per-worker share; with two workers
                // the split is whatever the race gives, so the batch ends
                // at this worker's stop task instead.
                let mut held: Vec<TaskId> = Vec::with_capacity(worker.prefetch_limit() as usize);
                let mut stopped = false;
                while !stopped {
                    // Take what is ready, up to the prefetch limit...
                    while let Some(task) = worker.try_receive()? {
                        held.push(task.id());
                        if task.tag() == STOP {
                            // ...but no further than the first stop task:
                            // the others are for the other worker.
                            stopped = true;
                            break;
                        }
                        let seq = read_payload(&task, touched);
                        check_seq(task.tag(), seq)?;
                        if *alone {
                            check_seq(seq, self.seq + 1)?;
                        } else if seq <= self.seq {
                            return Err(err(format!("task {seq} taken after task {}", self.seq)));
                        }
                        self.seq = seq;
                    }
                    if held.is_empty() {
                        spin_pause();
                        continue;
                    }
                    // ...then ack them all.
                    for id in held.drain(..) {
                        worker.ack(id)?;
                    }
                }
            }
        }
        Ok(())
    }
}
