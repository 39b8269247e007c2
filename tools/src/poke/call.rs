//! `shmex call`: sends one request on a request-response exchange and prints
//! the response, or with `--stream` receives a chunked response and prints
//! its size and throughput.

use super::{
    common_help, emit, millis, next_option, port_failure, Common, Failure, Place, Positionals,
    StreamPattern,
};
use crate::args::{Args, UsageError};
use shmex::{Client, FailReason, Pattern, RecvError, SendError, MAX_STREAM_WINDOW};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Help text of `shmex call`.
pub const HELP: &str = concat!(
    "\
Usage: shmex call EXCHANGE MESSAGE [--tag T] [--timeout-ms MS] [--wait-server-ms MS]
                  [--hex | --stream [--window N] [--verify]]
                  [LIMITS] [--namespace NS] [--root DIR]

Sends MESSAGE as one request on the request-response exchange EXCHANGE
(created when missing) and prints the response's payload on stdout. Put `--`
before a MESSAGE that starts with '-'.

With --stream it asks for a chunked response instead (as `shmex serve
--stream` gives): the parts arrive in place in shared memory, at most N of
them (the window) sent and not yet released at a time; each is released as
soon as it is counted (without --verify its bytes are never read). At the
end marker it prints one line: `C chunks, B bytes in S s: R GB/s`, the time
running from the request sent to the end marker received (GB: 10^9 bytes).
With --verify, byte i of the stream must be (i % 251) as u8, the pattern of
`shmex serve --stream`; the first byte that is not fails the call (and
cancels the stream).

Options:
  --tag T               the request's tag (default 0)
  --timeout-ms MS       how long to wait for the response once a server is
                        found (default 5000); with --stream, for each part
  --wait-server-ms MS   when no server is attached, keep trying for up to MS
                        milliseconds instead of failing at once
  --hex                 print the payload in hexadecimal (default: UTF-8,
                        invalid bytes replaced)
  --stream              ask for a chunked response, print its size and rate
  --window N            parts in flight at once (1 to 32767, default 8); the
                        request reserves N + 1 slots of the client's inbox,
                        so N must be below --queue-depth
  --verify              check every byte of the stream against the pattern
",
    common_help!(),
    "
Exit status: 0 when a response (with --stream: the stream's summary) was
printed; 1 when there is no server, the response (or a part of the stream)
did not come in time, the server failed the request (dropped it, aborted its
stream, or left before answering), --verify found a wrong byte or another
runtime error happened; 2 on a usage error.
"
);

/// What `call` was asked for.
struct Options {
    place: Place,
    exchange: String,
    message: String,
    tag: u64,
    timeout: Duration,
    wait_server: Option<Duration>,
    hex: bool,
    /// `--stream`: the window, and whether to `--verify`.
    stream: Option<(u32, bool)>,
}

/// Default `--window`.
const DEFAULT_WINDOW: u32 = 8;

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE", "MESSAGE"]);
    let (mut tag, mut timeout, mut wait_server, mut hex) = (0, 5000, None, false);
    let (mut stream, mut window, mut verify) = (false, None, false);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--tag" => tag = args.number(&opt, 0, u64::MAX)?,
            "--timeout-ms" => timeout = args.number(&opt, 1, super::MAX_MS)?,
            "--wait-server-ms" => {
                wait_server = Some(millis(args.number(&opt, 0, super::MAX_MS)?))
            }
            "--hex" => {
                opt.flag()?;
                hex = true;
            }
            "--stream" => {
                opt.flag()?;
                stream = true;
            }
            "--window" => window = Some(args.number(&opt, 1, MAX_STREAM_WINDOW.into())? as u32),
            "--verify" => {
                opt.flag()?;
                verify = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange, message] = pos.finish()?;
    let place = common.resolve()?;
    if !stream && (window.is_some() || verify) {
        let what = if verify { "--verify" } else { "--window" };
        return Err(UsageError(format!("{what} needs --stream")));
    }
    if stream && hex {
        return Err(UsageError(
            "--hex prints a payload: --stream prints the stream's summary only".into(),
        ));
    }
    let window = window.unwrap_or(DEFAULT_WINDOW);
    if stream && window >= place.limits.queue_depth {
        return Err(UsageError(format!(
            "--window {window} needs an inbox of more than {window} slots (the parts and \
             the end marker), the queue depth is {} (see --queue-depth)",
            place.limits.queue_depth
        )));
    }
    if message.len() > place.limits.chunk_size {
        return Err(UsageError(format!(
            "MESSAGE of {} bytes exceeds the chunk size of {} bytes (see --chunk-size)",
            message.len(),
            place.limits.chunk_size
        )));
    }
    Ok(Some(Options {
        place,
        exchange,
        message,
        tag,
        timeout: millis(timeout),
        wait_server,
        hex,
        stream: stream.then_some((window, verify)),
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("call", &o.exchange, Pattern::RequestResponse)?;
    let client = ex.client().map_err(port_failure)?;
    let start = Instant::now();
    let wait_deadline = o.wait_server.map(|w| start + w);
    // Set once a server is found: --timeout-ms covers sending (retried while
    // every server's inbox is full) and waiting for the response.
    let mut deadline = None;
    loop {
        let sent = match o.stream {
            Some((window, _)) => client.request_stream(o.tag, o.message.as_bytes(), window),
            None => client.send(o.tag, o.message.as_bytes()),
        };
        match sent {
            Ok(()) => {
                deadline.get_or_insert(Instant::now() + o.timeout);
                break;
            }
            Err(SendError::NoServer) => match wait_deadline {
                Some(d) if Instant::now() < d => std::thread::sleep(Duration::from_millis(2)),
                Some(_) => {
                    return Err(Failure::Runtime(format!(
                        "no server on exchange {:?}: none attached within {} ms",
                        o.exchange,
                        o.wait_server.unwrap_or_default().as_millis()
                    )))
                }
                None => {
                    return Err(Failure::Runtime(format!(
                        "no server on exchange {:?} (start one, e.g. `shmex serve {}`, or \
                         wait for one with --wait-server-ms)",
                        o.exchange, o.exchange
                    )))
                }
            },
            Err(e @ (SendError::QueueFull | SendError::PoolExhausted { .. })) => {
                let now = Instant::now();
                if now >= *deadline.get_or_insert(now + o.timeout) {
                    return Err(Failure::Runtime(format!(
                        "timed out after {} ms: the request could not be sent: {e}",
                        o.timeout.as_millis()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(Failure::Runtime(format!("cannot send the request: {e}"))),
        }
    }
    let left = deadline.map_or(o.timeout, |d| d.saturating_duration_since(Instant::now()));
    if let Some((_, verify)) = o.stream {
        return receive_stream(&client, &o, left, verify);
    }
    let outcome = match client.receive_timeout(left) {
        Ok(response) if response.tag() == o.tag => emit(None, &response, o.hex),
        Ok(response) => Err(Failure::Runtime(format!(
            "the response carries tag {}, the request had tag {}",
            response.tag(),
            o.tag
        ))),
        Err(RecvError::Timeout) => Err(Failure::Runtime(format!(
            "timed out: no response within {} ms",
            o.timeout.as_millis()
        ))),
        Err(e @ RecvError::RequestFailed { .. }) => Err(Failure::Runtime(e.to_string())),
        Err(e) => Err(Failure::Runtime(format!("receive failed: {e}"))),
    };
    outcome
}

/// Receives the chunked response to request `o.tag` and prints its summary:
/// `left` for the first part, `o.timeout` for each next one.
fn receive_stream(
    client: &Client,
    o: &Options,
    left: Duration,
    verify: bool,
) -> Result<(), Failure> {
    let start = Instant::now();
    let (mut chunks, mut bytes) = (0u64, 0u64);
    let mut pattern: Option<StreamPattern> = None;
    let mut wait = left;
    let after = |chunks: u64, bytes: u64| {
        let s = if chunks == 1 { "" } else { "s" };
        format!("after {chunks} chunk{s}, {bytes} bytes")
    };
    loop {
        let part = match client.receive_timeout(wait) {
            Ok(part) => part,
            Err(RecvError::Timeout) => {
                return Err(Failure::Runtime(format!(
                    "timed out: no part of the stream within {} ms ({})",
                    wait.as_millis(),
                    after(chunks, bytes)
                )))
            }
            Err(RecvError::RequestFailed {
                tag,
                reason: FailReason::ServerGone,
            }) if chunks > 0 => {
                return Err(Failure::Runtime(format!(
                    "request {tag} failed: the server left in the middle of its chunked \
                     response ({})",
                    after(chunks, bytes)
                )))
            }
            Err(e @ RecvError::RequestFailed { .. }) => {
                return Err(Failure::Runtime(format!("{e} ({})", after(chunks, bytes))))
            }
            Err(RecvError::ExchangeDown) => {
                return Err(Failure::Runtime(format!(
                    "the exchange {:?} went down {}: its creator exited (the server, when \
                     it created the exchange)",
                    o.exchange,
                    after(chunks, bytes)
                )))
            }
            Err(e) => {
                return Err(Failure::Runtime(format!(
                    "receive failed: {e} ({})",
                    after(chunks, bytes)
                )))
            }
        };
        wait = o.timeout;
        if part.tag() != o.tag {
            return Err(Failure::Runtime(format!(
                "a response carries tag {}, the request had tag {}",
                part.tag(),
                o.tag
            )));
        }
        if part.is_stream_end() {
            break;
        }
        if !part.is_stream_chunk() {
            return Err(Failure::Runtime(format!(
                "the server answered with a single response of {} bytes, not a chunked one \
                 (is it `shmex serve --stream`?)",
                part.len()
            )));
        }
        if verify {
            let p = match &mut pattern {
                Some(p) if p.fits(part.len()) => p,
                p => p.insert(StreamPattern::new(part.len())),
            };
            if let Some((at, found, expected)) = p.mismatch(bytes, &part) {
                drop(part);
                client.cancel(o.tag);
                return Err(Failure::Runtime(format!(
                    "verify failed: byte {at} of the stream is {found}, expected {expected} \
                     (in chunk {chunks}; stream cancelled)"
                )));
            }
        }
        chunks += 1;
        bytes += part.len() as u64;
        // Dropping the part releases it: the server may send one more.
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        bytes as f64 / secs / 1e9
    } else {
        0.0
    };
    let line = format!("{chunks} chunks, {bytes} bytes in {secs:.3} s: {rate:.2} GB/s");
    emit(None, line.as_bytes(), false)
}

/// Runs `shmex call` with the arguments after `call`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("call", HELP, args, parse, exec)
}
