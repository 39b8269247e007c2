//! iceoryx2 (`ipc::Service`), configured as its own benchmarks configure it.
//!
//! - `pubsub-rtt`: two publish-subscribe services of `[u8]` (`ping`,
//!   `pong`), buffer 1, safe overflow, no history; samples loaned
//!   uninitialised and written in place (`loan_slice_uninit`).
//! - `reqresp-rtt`: one request-response service of `u64` → `u64`; each
//!   round trip is a new request (`loan_uninit` → `send` → the pending
//!   response's `receive`), answered through the active request.
//! - `stream` / `fanin`: one publish-subscribe service, buffer 256, no safe
//!   overflow, publishers with `RetryUntilDelivered` back-pressure (nothing
//!   lost, like the other systems).
//! - `stream-response`: one request-response service of `u64` → `[u8]`,
//!   iceoryx2's streamed responses: per response the client sends one
//!   request; the server answers it with [`STREAM_CHUNK`]-byte responses
//!   from its active request (`loan_slice_uninit`, every byte written in
//!   place with [`fill_words`], `send`), then drops the active request. The
//!   client's response buffer holds [`STREAM_WINDOW`] responses, without
//!   safe overflow, and the server sends with `RetryUntilDelivered`, so a
//!   full buffer holds the server back (iceoryx2's flow control; the client may hold one more,
//!   the one it reads). The client reads and checks every byte of each
//!   response in place ([`check_words`]), drops it, and drops the pending
//!   response after the last chunk (it counts them: iceoryx2 has no end
//!   marker).
//!
//! Busy-polling loops on `receive`. Blocking is iceoryx2's own way: an event
//! service per direction, the sender `notify`s after each send and the
//! receiver waits on its listener whenever `receive` finds nothing. The wait
//! is `timed_wait` with a long timeout ([`WAIT_TIMEOUT`]) rather than
//! `blocking_wait`: once a blocking stream stalled for good (the consumer
//! asleep in the listener, the publisher retrying on a full queue), so a
//! wait that lasts the whole timeout and then finds a message is counted as
//! a lost wake-up and reported instead of hanging the run.
//!
//! Every run sets iceoryx2's root folder and shared-memory prefix to names
//! holding the run id, so runs never meet and [`Run::cleanup`] finds what
//! is left.

use crate::{
    check_seq, check_words, err, fill_words, read_payload, spin_pause, write_payload, Batch, Case,
    Clock, DriverSide, Histogram, Mode, PeerArgs, PeerSide, Result, Run, Spec, NAME_PREFIX,
    STREAM_CHUNK, STREAM_WINDOW,
};
use ::iceoryx2::port::client::Client;
use ::iceoryx2::port::listener::Listener;
use ::iceoryx2::port::notifier::Notifier;
use ::iceoryx2::port::publisher::Publisher;
use ::iceoryx2::port::server::Server;
use ::iceoryx2::port::subscriber::Subscriber;
use ::iceoryx2::prelude::*;

type Svc = ipc::Service;

/// The iceoryx2 configuration of run `run_id`.
fn config(run_id: &str) -> Result<Config> {
    let mut cfg = Config::default();
    let root = format!("/tmp/{NAME_PREFIX}-{run_id}-iceoryx2/");
    let prefix = format!("{NAME_PREFIX}_{run_id}_");
    cfg.global.set_root_path(&Path::new(root.as_bytes())?);
    cfg.global.prefix = FileName::new(prefix.as_bytes())?;
    Ok(cfg)
}

fn node(run_id: &str) -> Result<Node<Svc>> {
    set_log_level(LogLevel::Error);
    Ok(NodeBuilder::new()
        .config(&config(run_id)?)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()?)
}

fn service_name(base: &str, what: &str) -> Result<ServiceName> {
    Ok(ServiceName::new(&format!("{base}-{what}"))?)
}

/// Sends wake-ups to the other side (blocking mode only).
struct Wake {
    notifier: Notifier<Svc>,
}

impl Wake {
    fn notify(w: &Option<Wake>) -> Result<()> {
        if let Some(w) = w {
            w.notifier.notify()?;
        }
        Ok(())
    }
}

/// Waits for wake-ups (blocking mode only).
struct Sleep {
    listener: Listener<Svc>,
    /// Waits that timed out and then found a message.
    lost: std::cell::Cell<u64>,
}

/// How long a blocking receiver waits for a notification before it looks
/// again (only reached when a wake-up was lost).
pub const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);

/// Calls `try_recv` until it yields: busy-polling, or sleeping on the
/// listener between attempts.
#[inline(always)]
fn recv<T>(sleep: &Option<Sleep>, mut try_recv: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let mut timed_out = false;
    loop {
        if let Some(x) = try_recv()? {
            if timed_out {
                if let Some(s) = sleep {
                    s.lost.set(s.lost.get() + 1);
                }
            }
            return Ok(x);
        }
        match sleep {
            Some(s) => {
                // A wake-up with no new event id is possible (a stale
                // datagram): only a wait that lasted the whole timeout counts.
                let t0 = std::time::Instant::now();
                s.listener.timed_wait(|_| {}, WAIT_TIMEOUT)?;
                timed_out = t0.elapsed() >= WAIT_TIMEOUT;
            }
            None => spin_pause(),
        }
    }
}

/// Creates (driver) or opens (peer) the event services of a cell; returns
/// (my wake-ups to send, my sleep).
fn events(
    node: &Node<Svc>,
    base: &str,
    mode: Mode,
    driver: bool,
) -> Result<(Option<Wake>, Option<Sleep>)> {
    if mode == Mode::Spin {
        return Ok((None, None));
    }
    let to_peer = service_name(base, "ev-to-peer")?;
    let to_driver = service_name(base, "ev-to-driver")?;
    let (send, recv) = if driver {
        (to_peer, to_driver)
    } else {
        (to_driver, to_peer)
    };
    let open = |name: &ServiceName| -> Result<_> {
        Ok(node
            .service_builder(name)
            .event()
            .max_notifiers(4)
            .max_listeners(2)
            .open_or_create()?)
    };
    let send = open(&send)?;
    let recv = open(&recv)?;
    Ok((
        Some(Wake {
            notifier: send.notifier_builder().create()?,
        }),
        Some(Sleep {
            listener: recv.listener_builder().create()?,
            lost: std::cell::Cell::new(0),
        }),
    ))
}

fn pubsub_rtt_service(
    node: &Node<Svc>,
    name: &ServiceName,
) -> Result<::iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], ()>> {
    Ok(node
        .service_builder(name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(1)
        .enable_safe_overflow(true)
        .open_or_create()?)
}

const STREAM_DEPTH: usize = 256;

fn stream_service(
    node: &Node<Svc>,
    name: &ServiceName,
) -> Result<::iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], ()>> {
    Ok(node
        .service_builder(name)
        .publish_subscribe::<[u8]>()
        .max_publishers(2)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(STREAM_DEPTH)
        .enable_safe_overflow(false)
        .open_or_create()?)
}

fn rpc_service(
    node: &Node<Svc>,
    name: &ServiceName,
) -> Result<::iceoryx2::service::port_factory::request_response::PortFactory<Svc, u64, (), u64, ()>>
{
    Ok(node
        .service_builder(name)
        .request_response::<u64, u64>()
        .max_servers(1)
        .max_clients(1)
        .max_response_buffer_size(1)
        .open_or_create()?)
}

fn streamed_service(
    node: &Node<Svc>,
    name: &ServiceName,
) -> Result<::iceoryx2::service::port_factory::request_response::PortFactory<Svc, u64, (), [u8], ()>>
{
    Ok(node
        .service_builder(name)
        .request_response::<u64, [u8]>()
        .max_servers(1)
        .max_clients(1)
        .max_active_requests_per_client(1)
        .max_response_buffer_size(STREAM_WINDOW as usize)
        .max_borrowed_responses_per_pending_response(1)
        // The default overwrites the oldest response when the buffer is
        // full, whatever the server's backpressure strategy.
        .enable_safe_overflow_for_responses(false)
        .open_or_create()?)
}

/// Loans a slice sample of `size` bytes, retrying while none is free, and
/// writes message `seq` into it.
fn loan_write(
    publisher: &Publisher<Svc, [u8], ()>,
    size: usize,
    seq: u64,
    touched: bool,
) -> Result<::iceoryx2::sample_mut::SampleMut<Svc, [u8], ()>> {
    loop {
        match publisher.loan_slice_uninit(size) {
            Ok(s) => {
                // SAFETY: shared memory is always initialised memory (zeroed
                // by the kernel or written before); `u8` has no invalid
                // values. iceoryx2's own benchmarks do the same.
                let mut s = unsafe { s.assume_init() };
                write_payload(s.payload_mut(), seq, touched);
                return Ok(s);
            }
            Err(_) => spin_pause(),
        }
    }
}

enum DriverPorts {
    Pubsub {
        publisher: Publisher<Svc, [u8], ()>,
        subscriber: Subscriber<Svc, [u8], ()>,
    },
    Reqresp {
        client: Client<Svc, u64, (), u64, ()>,
    },
    Streamed {
        client: Client<Svc, u64, (), [u8], ()>,
    },
    Fanin {
        subscriber: Subscriber<Svc, [u8], ()>,
    },
}

struct Driver {
    ports: DriverPorts,
    wake: Option<Wake>,
    sleep: Option<Sleep>,
    spec: Spec,
    seq: u64,
    /// Streamed responses: the last request's payload.
    tag: u64,
    expected: Vec<(::iceoryx2::identifiers::UniquePublisherId, u64)>,
    _node: Node<Svc>,
}

/// Driving side.
pub fn driver(run: &Run, cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    let node = node(&run.id)?;
    let base = run.cell_name(cell, "iox2");
    let (wake, sleep) = events(&node, &base, spec.mode, true)?;
    let ports = match spec.case {
        Case::PubsubRtt => {
            let ping = pubsub_rtt_service(&node, &service_name(&base, "ping")?)?;
            let pong = pubsub_rtt_service(&node, &service_name(&base, "pong")?)?;
            DriverPorts::Pubsub {
                publisher: ping
                    .publisher_builder()
                    .initial_max_slice_len(spec.size)
                    .create()?,
                subscriber: pong.subscriber_builder().create()?,
            }
        }
        Case::ReqrespRtt => {
            let rpc = rpc_service(&node, &service_name(&base, "rpc")?)?;
            DriverPorts::Reqresp {
                client: rpc.client_builder().create()?,
            }
        }
        Case::StreamResponse => {
            let rpc = streamed_service(&node, &service_name(&base, "streamed")?)?;
            DriverPorts::Streamed {
                client: rpc.client_builder().create()?,
            }
        }
        Case::Tasks { .. } => return Err(err("iceoryx2 has no task distribution")),
        Case::Stream | Case::Fanin => {
            let svc = stream_service(&node, &service_name(&base, "stream")?)?;
            DriverPorts::Fanin {
                subscriber: svc
                    .subscriber_builder()
                    .buffer_size(STREAM_DEPTH)
                    .create()?,
            }
        }
    };
    Ok(Box::new(Driver {
        ports,
        wake,
        sleep,
        spec,
        seq: 0,
        tag: 0,
        expected: Vec::new(),
        _node: node,
    }))
}

impl DriverSide for Driver {
    fn notes(&self) -> Option<String> {
        let lost = self.sleep.as_ref().map_or(0, |s| s.lost.get());
        (lost > 0).then(|| {
            format!(
                "iceoryx2 lost {lost} wake-up(s) on the measuring side (each cost a {} ms timeout)",
                WAIT_TIMEOUT.as_millis()
            )
        })
    }

    fn run(&mut self, n: u64, peers: usize, clock: &Clock, hist: &mut Histogram) -> Result<Batch> {
        let Spec { size, touched, .. } = self.spec;
        match &self.ports {
            DriverPorts::Pubsub {
                publisher,
                subscriber,
            } => {
                let start = clock.now();
                let mut prev = start;
                for _ in 0..n {
                    self.seq += 1;
                    loan_write(publisher, size, self.seq, touched)?.send()?;
                    Wake::notify(&self.wake)?;
                    let sample = recv(&self.sleep, || Ok(subscriber.receive()?))?;
                    check_seq(read_payload(sample.payload(), touched), self.seq)?;
                    drop(sample);
                    let now = clock.now();
                    hist.record(clock.ns(now.wrapping_sub(prev)));
                    prev = now;
                }
                Ok(Batch {
                    elapsed: clock.duration(prev.wrapping_sub(start)),
                    msgs: n,
                })
            }
            DriverPorts::Reqresp { client } => {
                let start = clock.now();
                let mut prev = start;
                for _ in 0..n {
                    self.seq += 1;
                    let pending = client.loan_uninit()?.write_payload(self.seq).send()?;
                    Wake::notify(&self.wake)?;
                    let response = recv(&self.sleep, || Ok(pending.receive()?))?;
                    check_seq(*response.payload(), self.seq)?;
                    drop(response);
                    drop(pending);
                    let now = clock.now();
                    hist.record(clock.ns(now.wrapping_sub(prev)));
                    prev = now;
                }
                Ok(Batch {
                    elapsed: clock.duration(prev.wrapping_sub(start)),
                    msgs: n,
                })
            }
            DriverPorts::Streamed { client } => {
                let chunks = (size / STREAM_CHUNK) as u64;
                let start = clock.now();
                for _ in 0..n {
                    self.tag += 1;
                    let pending = client.loan_uninit()?.write_payload(self.tag).send()?;
                    Wake::notify(&self.wake)?;
                    for _ in 0..chunks {
                        let part = recv(&self.sleep, || Ok(pending.receive()?))?;
                        self.seq += 1;
                        check_words(part.payload(), self.seq)?;
                        drop(part);
                    }
                    drop(pending);
                }
                let end = clock.now();
                Ok(Batch {
                    elapsed: clock.duration(end.wrapping_sub(start)),
                    msgs: n * chunks,
                })
            }
            DriverPorts::Fanin { subscriber } => {
                let total = n * peers as u64;
                let mut first = None;
                let mut last = 0;
                for _ in 0..total {
                    let sample = recv(&self.sleep, || Ok(subscriber.receive()?))?;
                    last = clock.now();
                    first.get_or_insert(last);
                    let seq = read_payload(sample.payload(), touched);
                    let origin = sample.origin();
                    drop(sample);
                    let slot = match self.expected.iter_mut().find(|(o, _)| *o == origin) {
                        Some(slot) => slot,
                        None => {
                            self.expected.push((origin, 1));
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
        }
    }
}

enum PeerPorts {
    Pubsub {
        subscriber: Subscriber<Svc, [u8], ()>,
        publisher: Publisher<Svc, [u8], ()>,
    },
    Reqresp {
        server: Server<Svc, u64, (), u64, ()>,
    },
    Streamed {
        server: Server<Svc, u64, (), [u8], ()>,
    },
    Fanin {
        publisher: Publisher<Svc, [u8], ()>,
    },
}

struct Peer {
    ports: PeerPorts,
    wake: Option<Wake>,
    sleep: Option<Sleep>,
    spec: Spec,
    seq: u64,
    /// Streamed responses: the last request's payload.
    tag: u64,
    _node: Node<Svc>,
}

/// Peer side: echo (round trips) or publisher (streams).
pub fn peer(args: &PeerArgs) -> Result<Box<dyn PeerSide>> {
    let spec = args.spec;
    let node = node(&args.run)?;
    let base = args.cell_name("iox2");
    let (wake, sleep) = events(&node, &base, spec.mode, false)?;
    let ports = match spec.case {
        Case::PubsubRtt => {
            let ping = pubsub_rtt_service(&node, &service_name(&base, "ping")?)?;
            let pong = pubsub_rtt_service(&node, &service_name(&base, "pong")?)?;
            PeerPorts::Pubsub {
                subscriber: ping.subscriber_builder().create()?,
                publisher: pong
                    .publisher_builder()
                    .initial_max_slice_len(spec.size)
                    .create()?,
            }
        }
        Case::ReqrespRtt => {
            let rpc = rpc_service(&node, &service_name(&base, "rpc")?)?;
            PeerPorts::Reqresp {
                server: rpc.server_builder().create()?,
            }
        }
        Case::StreamResponse => {
            let rpc = streamed_service(&node, &service_name(&base, "streamed")?)?;
            PeerPorts::Streamed {
                server: rpc
                    .server_builder()
                    .initial_max_slice_len(STREAM_CHUNK)
                    .max_loaned_responses_per_request(1)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()?,
            }
        }
        Case::Tasks { .. } => return Err(err("iceoryx2 has no task distribution")),
        Case::Stream | Case::Fanin => {
            let svc = stream_service(&node, &service_name(&base, "stream")?)?;
            PeerPorts::Fanin {
                publisher: svc
                    .publisher_builder()
                    .initial_max_slice_len(spec.size)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()?,
            }
        }
    };
    Ok(Box::new(Peer {
        ports,
        wake,
        sleep,
        spec,
        seq: 0,
        tag: 0,
        _node: node,
    }))
}

impl PeerSide for Peer {
    fn run(&mut self, n: u64) -> Result<()> {
        let Spec { size, touched, .. } = self.spec;
        match &self.ports {
            PeerPorts::Pubsub {
                subscriber,
                publisher,
            } => {
                for _ in 0..n {
                    self.seq += 1;
                    let sample = recv(&self.sleep, || Ok(subscriber.receive()?))?;
                    check_seq(read_payload(sample.payload(), touched), self.seq)?;
                    drop(sample);
                    loan_write(publisher, size, self.seq, touched)?.send()?;
                    Wake::notify(&self.wake)?;
                }
            }
            PeerPorts::Reqresp { server } => {
                for _ in 0..n {
                    self.seq += 1;
                    let request = recv(&self.sleep, || Ok(server.receive()?))?;
                    check_seq(*request.payload(), self.seq)?;
                    request.loan_uninit()?.write_payload(self.seq).send()?;
                    drop(request);
                    Wake::notify(&self.wake)?;
                }
            }
            PeerPorts::Streamed { server } => {
                let chunks = size / STREAM_CHUNK;
                for _ in 0..n {
                    self.tag += 1;
                    let request = recv(&self.sleep, || Ok(server.receive()?))?;
                    check_seq(*request.payload(), self.tag)?;
                    for _ in 0..chunks {
                        self.seq += 1;
                        let part = loop {
                            match request.loan_slice_uninit(STREAM_CHUNK) {
                                Ok(p) => break p,
                                Err(_) => spin_pause(),
                            }
                        };
                        // SAFETY: as in `loan_write`: shared memory is
                        // initialised memory and `u8` has no invalid values.
                        let mut part = unsafe { part.assume_init() };
                        fill_words(part.payload_mut(), self.seq);
                        part.send()?;
                        Wake::notify(&self.wake)?;
                    }
                    drop(request);
                }
            }
            PeerPorts::Fanin { publisher } => {
                for _ in 0..n {
                    self.seq += 1;
                    loan_write(publisher, size, self.seq, touched)?.send()?;
                    Wake::notify(&self.wake)?;
                }
            }
        }
        Ok(())
    }
}
