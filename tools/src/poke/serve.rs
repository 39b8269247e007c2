//! `shmex serve`: an echo server on a request-response exchange, or with
//! `--stream` a source of chunked responses of a known pattern.

use super::{
    common_help, emit, next_option, port_failure, Common, Failure, Place, Positionals,
    StreamPattern,
};
use crate::args::{Args, UsageError};
use shmex::{Pattern, Request, ResponseStream, SendError, StreamError};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Help text of `shmex serve`.
pub const HELP: &str = concat!(
    "\
Usage: shmex serve EXCHANGE [--count N] [--prefix STR] [--hex]
                   [--stream BYTES [--chunk BYTES]]
                   [LIMITS] [--namespace NS] [--root DIR]

Serves the request-response exchange EXCHANGE (created when missing) as an
echo server: answers each request with its own payload, preceded by STR when
--prefix is given, and prints one line per request: its tag, a space, its
payload. Stdout is flushed after every line. Several servers on one exchange
share its requests.

A request that cannot be answered (the response exceeds the chunk size, the
client left) is reported on stderr; its client is told it failed.

With --stream BYTES it answers every request with a chunked response of BYTES
bytes in all instead (receive it with `shmex call --stream`): parts of the
chunk size (or of --chunk BYTES when smaller), each written in place in
shared memory, sent under the window the client asked for, then the end
marker. Byte i of the stream is (i % 251) as u8, which `shmex call --stream
--verify` checks. The request's line is printed once the first part went
out. A stream the client cancels or leaves is reported on stderr, and the
server goes on with the next request. A plain request (sent without a
window, as by `shmex call` without --stream) has no room for a stream: it is
reported on stderr and dropped, and its client is told it failed.

Options:
  --count N           exit after N requests (default 0: run until killed)
  --prefix STR        put STR before each response's payload
  --hex               print payloads in hexadecimal (default: UTF-8, invalid
                      bytes replaced)
  --stream BYTES      answer with a chunked response of BYTES bytes
  --chunk BYTES       largest part of a stream (default: the chunk size)
",
    common_help!(),
    "
Exit status: 0 after N requests, 1 on a runtime error, 2 on a usage error.
"
);

/// What `serve` was asked for.
struct Options {
    place: Place,
    exchange: String,
    count: u64,
    prefix: String,
    hex: bool,
    /// `--stream`: bytes of every chunked response, and the largest part.
    stream: Option<(u64, usize)>,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE"]);
    let (mut count, mut prefix, mut hex) = (0, String::new(), false);
    let (mut stream, mut chunk) = (None, None);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--count" => count = args.number(&opt, 0, u64::MAX)?,
            "--prefix" => prefix = args.value(&opt)?,
            "--hex" => {
                opt.flag()?;
                hex = true;
            }
            "--stream" => stream = Some(args.number(&opt, 0, u64::MAX)?),
            "--chunk" => chunk = Some(args.number(&opt, 1, 1 << 30)? as usize),
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange] = pos.finish()?;
    let place = common.resolve()?;
    if stream.is_none() && chunk.is_some() {
        return Err(UsageError("--chunk needs --stream".into()));
    }
    if stream.is_some() && !prefix.is_empty() {
        return Err(UsageError(
            "--prefix is for the echo server: a --stream response is the pattern alone".into(),
        ));
    }
    if prefix.len() > place.limits.chunk_size {
        return Err(UsageError(format!(
            "--prefix of {} bytes exceeds the chunk size of {} bytes: no response would fit",
            prefix.len(),
            place.limits.chunk_size
        )));
    }
    let chunk_size = place.limits.chunk_size;
    Ok(Some(Options {
        place,
        exchange,
        count,
        prefix,
        hex,
        stream: stream.map(|total| (total, chunk.map_or(chunk_size, |c| c.min(chunk_size)))),
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("serve", &o.exchange, Pattern::RequestResponse)?;
    let server = ex.server().map_err(port_failure)?;
    let pattern = o.stream.map(|(_, part)| StreamPattern::new(part));
    let mut served = 0u64;
    let mut response = Vec::new();
    while o.count == 0 || served < o.count {
        let request = server
            .receive()
            .map_err(|e| Failure::Runtime(format!("receive failed: {e}")))?;
        let tag = request.tag();
        response.clear();
        if let (Some((total, part)), Some(pattern)) = (o.stream, &pattern) {
            // The payload is the request's, for the line: the stream takes
            // the request.
            response.extend_from_slice(&request);
            let mut source = Source {
                tag,
                total,
                part,
                pattern,
                sent: 0,
                line: Some((&response, o.hex)),
            };
            let outcome = source.serve(request);
            served += 1;
            if let Err(e) = outcome {
                match e {
                    Stop::Server(f) => return Err(f),
                    Stop::Plain => eprintln!(
                        "shmex serve: request {tag} is a plain request, without room for a \
                         stream (send it with `shmex call --stream`): dropped"
                    ),
                    Stop::Failed(e) => eprintln!(
                        "shmex serve: stream to request {tag} stopped after {} of {total} \
                         bytes: {e}",
                        source.sent
                    ),
                }
            }
            continue;
        }
        response.extend_from_slice(o.prefix.as_bytes());
        response.extend_from_slice(&request);
        // Answer first, print after: a slow reader of our stdout must not
        // delay the client.
        if let Err(e) = request.respond(&response) {
            eprintln!("shmex serve: cannot answer request {tag}: {e}");
        }
        served += 1;
        emit(Some(&tag.to_string()), &response[o.prefix.len()..], o.hex)?;
    }
    Ok(())
}

/// How long a stream waits for a free chunk (every chunk of the pool taken,
/// none coming back) before it gives up.
const POOL_STALL: Duration = Duration::from_secs(10);

/// One chunked response of `--stream`.
struct Source<'p> {
    tag: u64,
    total: u64,
    part: usize,
    pattern: &'p StreamPattern,
    /// Bytes sent so far.
    sent: u64,
    /// The request's line to print once the stream started: its payload,
    /// and whether in hexadecimal.
    line: Option<(&'p [u8], bool)>,
}

/// Why a stream stopped early.
enum Stop {
    /// Printing failed (or stdout was closed): the whole server stops.
    Server(Failure),
    /// The stream failed (cancelled, client gone, ...); the server goes on.
    Failed(String),
    /// The request is a plain one: no stream for it.
    Plain,
}

impl From<StreamError> for Stop {
    fn from(e: StreamError) -> Self {
        Stop::Failed(match e {
            StreamError::Cancelled => "the client cancelled it".into(),
            StreamError::ClientGone => "the client is gone".into(),
            e => e.to_string(),
        })
    }
}

impl Source<'_> {
    /// Answers `request` with the whole stream, then its end marker.
    fn serve(&mut self, request: Request<'_>) -> Result<(), Stop> {
        let outcome = self.stream(request);
        // Printed whatever happened (as the echo server prints every
        // request), and at the latest once the first part went out.
        self.print_line()?;
        outcome
    }

    fn stream(&mut self, request: Request<'_>) -> Result<(), Stop> {
        if request.stream_window() == 0 {
            // Dropped unanswered: its client is told.
            return Err(Stop::Plain);
        }
        let mut stream = request.respond_stream()?;
        while self.sent < self.total {
            let len = (self.total - self.sent).min(self.part as u64) as usize;
            let mut loan = match loan(&stream, len) {
                Ok(loan) => loan,
                Err(e) => {
                    stream.abort();
                    return Err(Stop::Failed(e));
                }
            };
            loan.copy_from_slice(self.pattern.at(self.sent, len));
            // Dropped on error: the client is told the stream was aborted
            // (when it is still there to be told).
            stream.send_loan(loan)?;
            self.sent += len as u64;
            self.print_line()?;
        }
        stream.end()?;
        Ok(())
    }

    /// Prints the request's line unless it was printed already.
    fn print_line(&mut self) -> Result<(), Stop> {
        match self.line.take() {
            Some((payload, hex)) => {
                emit(Some(&self.tag.to_string()), payload, hex).map_err(Stop::Server)
            }
            None => Ok(()),
        }
    }
}

/// Loans a chunk for the next part of `stream`, waiting while the pool is
/// exhausted (the client, or other streams, hold every chunk: releases
/// bring them back) for up to [`POOL_STALL`].
fn loan<'a>(stream: &ResponseStream<'a>, len: usize) -> Result<shmex::Loan<'a>, String> {
    let mut stalled: Option<Instant> = None;
    let mut pause = Duration::from_micros(10);
    loop {
        match stream.loan(len) {
            Ok(loan) => return Ok(loan),
            Err(e @ SendError::PoolExhausted { .. }) => {
                let since = *stalled.get_or_insert_with(Instant::now);
                if since.elapsed() >= POOL_STALL {
                    return Err(format!("{e} for {} s", POOL_STALL.as_secs()));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("cannot loan a chunk: {e}")),
        }
    }
}

/// Runs `shmex serve` with the arguments after `serve`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("serve", HELP, args, parse, exec)
}
