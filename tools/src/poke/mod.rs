//! The poking commands, in the spirit of `mosquitto_pub` / `mosquitto_sub`:
//! `shmex sub` and `shmex pub` on publish-subscribe exchanges, `shmex serve`
//! (an echo server, or with `--stream` a source of chunked responses) and
//! `shmex call` (with `--stream`, a chunked-response receiver that measures
//! throughput) on request-response exchanges.
//!
//! Each joins the namespace (`--namespace` / `--root`, else `SHMEX_NAMESPACE`
//! / `SHMEX_ROOT`) as its own node, opens the exchange or creates it when
//! missing ([`shmex::Node::open_or_create_exchange`], default [`Limits`]
//! unless `--chunk-size`, `--chunks`, `--queue-depth` or `--max-ports` say
//! otherwise) and attaches one port. Payloads print as UTF-8 (invalid bytes
//! replaced) or, with `--hex`, as hexadecimal, one line each, stdout flushed
//! after every line so pipes see them at once.
//!
//! Exit status: 0 on success, 1 on a runtime failure (timeout, no server,
//! failed request, library error), 2 on a usage error.

pub mod call;
pub mod publish;
pub mod serve;
pub mod sub;

use crate::args::{Args, Item, NamespaceArgs, Opt, UsageError};
use shmex::{Exchange, Limits, Namespace, Node, OpenError, Pattern, PortError};
use std::io::Write as _;
use std::process::ExitCode;

/// The options every poking command takes, for the help texts.
macro_rules! common_help {
    () => {
        "
Exchange limits, used when creating the exchange and checked against an
existing one (they must match what its creator chose):
  --chunk-size N      largest payload in bytes (default 4096)
  --chunks N          chunks in the pool (default 256)
  --queue-depth N     messages each inbox holds, a power of two (default 64)
  --max-ports N       ports that can attach at once (default 16)

Other options:
  -n, --namespace NS  namespace to join (default: $SHMEX_NAMESPACE, else \"default\")
  --root DIR          root folder; files go in DIR/shmex-UID/ (default: $SHMEX_ROOT,
                      else /dev/shm)
  -h, --help          print this help
"
    };
}
pub(crate) use common_help;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit status 2, help printed).
    Usage(String),
    /// Something failed at run time (exit status 1).
    Runtime(String),
    /// Stdout was closed by its reader: stop quietly (exit status 0).
    Closed,
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e.0)
    }
}

/// Runs command `name`: parses its arguments (`Ok(None)`: help asked for),
/// executes it and turns the outcome into an exit status and a message.
pub fn run<O>(
    name: &str,
    help: &str,
    args: Vec<String>,
    parse: fn(Vec<String>) -> Result<Option<O>, UsageError>,
    exec: fn(O) -> Result<(), Failure>,
) -> ExitCode {
    let opts = match crate::args::parse_or_exit(name, help, args, parse) {
        Ok(o) => o,
        Err(status) => return status,
    };
    match exec(opts) {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("shmex {name}: {e}\n\n{help}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("shmex {name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The positional arguments of a command, named for error messages.
pub struct Positionals<const N: usize> {
    names: [&'static str; N],
    values: Vec<String>,
}

impl<const N: usize> Positionals<N> {
    /// Expects exactly the arguments `names`, in order.
    pub fn new(names: [&'static str; N]) -> Self {
        Positionals {
            names,
            values: Vec::with_capacity(N),
        }
    }

    /// Takes the next positional argument.
    pub fn push(&mut self, value: String) -> Result<(), UsageError> {
        if self.values.len() == N {
            return Err(UsageError(format!("unexpected argument {value:?}")));
        }
        self.values.push(value);
        Ok(())
    }

    /// All of them, or which one is missing.
    pub fn finish(self) -> Result<[String; N], UsageError> {
        if let Some(missing) = self.names.get(self.values.len()) {
            return Err(UsageError(format!("missing {missing}")));
        }
        self.values
            .try_into()
            .map_err(|_| UsageError("wrong number of arguments".into()))
    }
}

/// The next option only this command knows: positionals go to `pos`, the
/// options every poking command shares to `common`. `None` at the end.
pub fn next_option<const N: usize>(
    args: &mut Args,
    pos: &mut Positionals<N>,
    common: &mut Common,
) -> Result<Option<Opt>, UsageError> {
    while let Some(item) = args.next_item() {
        match item {
            Item::Positional(p) => pos.push(p)?,
            Item::Opt(opt) => {
                if !common.accept(args, &opt)? {
                    return Ok(Some(opt));
                }
            }
        }
    }
    Ok(None)
}

/// Namespace and limit options.
#[derive(Default)]
pub struct Common {
    ns: NamespaceArgs,
    limits: Limits,
}

/// The namespace and limits a command runs with, checked.
pub struct Place {
    /// Where the segments live.
    pub namespace: Namespace,
    /// Limits to create the exchange with (and to expect of an existing one).
    pub limits: Limits,
}

impl Common {
    /// Takes `opt` if it is a namespace or limit option; returns whether it did.
    pub fn accept(&mut self, args: &mut Args, opt: &Opt) -> Result<bool, UsageError> {
        if self.ns.accept(args, opt)? {
            return Ok(true);
        }
        let l = &mut self.limits;
        match opt.name.as_str() {
            "--chunk-size" => l.chunk_size = args.number(opt, 1, 1 << 30)? as usize,
            "--chunks" => l.chunk_count = args.number(opt, 1, 1 << 24)? as u32,
            "--queue-depth" => {
                let n = args.number(opt, 2, 1 << 20)?;
                if !n.is_power_of_two() {
                    return Err(UsageError(format!(
                        "--queue-depth must be a power of two, not {n}"
                    )));
                }
                l.queue_depth = n as u32;
            }
            "--max-ports" => l.max_ports = args.number(opt, 1, 1024)? as u32,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The namespace (flags, else environment) and the checked limits.
    pub fn resolve(self) -> Result<Place, UsageError> {
        self.limits
            .segment_size(Pattern::PublishSubscribe)
            .map_err(|e| UsageError(e.to_string()))?;
        Ok(Place {
            namespace: self.ns.resolve()?,
            limits: self.limits,
        })
    }
}

impl Place {
    /// Joins the namespace as node `<command>-<pid>` and opens exchange
    /// `name`, creating it with `pattern` and the limits when missing.
    pub fn open(&self, command: &str, name: &str, pattern: Pattern) -> Result<Exchange, Failure> {
        let node = Node::builder(format!("{command}-{}", std::process::id()))
            .namespace(&self.namespace.name)
            .root(&self.namespace.root)
            .create()
            .map_err(|e| {
                Failure::Runtime(format!(
                    "cannot join namespace {:?} in {}: {e}",
                    self.namespace.name,
                    self.namespace.root.display()
                ))
            })?;
        // The exchange keeps the node's registration alive; `node` may go.
        node.open_or_create_exchange(name, pattern, self.limits)
            .map_err(|e| match e {
                OpenError::InvalidName { .. } | OpenError::InvalidLimits { .. } => {
                    Failure::Usage(e.to_string())
                }
                OpenError::Mismatch { what, .. } if what != "pattern" => Failure::Runtime(format!(
                    "{e} (pass the limits it was created with: --chunk-size, --chunks, \
                     --queue-depth, --max-ports)"
                )),
                e => Failure::Runtime(format!("cannot open exchange {name:?}: {e}")),
            })
    }
}

/// Reports a port that could not be attached.
pub fn port_failure(e: PortError) -> Failure {
    match e {
        PortError::InvalidTopic { .. } => Failure::Usage(e.to_string()),
        e => Failure::Runtime(format!("cannot attach: {e}")),
    }
}

/// Writes one line, `PREFIX PAYLOAD` (or just `PAYLOAD`), to stdout and
/// flushes it. The payload prints as UTF-8 with invalid bytes replaced, or
/// in hexadecimal.
pub fn emit(prefix: Option<&str>, payload: &[u8], hex: bool) -> Result<(), Failure> {
    let mut line = String::with_capacity(payload.len() * 2 + 32);
    if let Some(p) = prefix {
        line.push_str(p);
        line.push(' ');
    }
    if hex {
        line.push_str(&to_hex(payload));
    } else {
        line.push_str(&String::from_utf8_lossy(payload));
    }
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::Closed,
            _ => Failure::Runtime(format!("cannot write to stdout: {e}")),
        })
}

/// Lower-case hexadecimal, two digits per byte, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The bytes of `shmex serve --stream`: byte `i` of a stream is
/// `(i % 251) as u8` (251 is prime, so the pattern never lines up with a
/// power-of-two chunk size and a misplaced chunk shows). Holds the pattern
/// from offset 0 to `251 + longest chunk`, so the part at any offset is one
/// slice: filling and checking a chunk are one copy or one comparison.
pub struct StreamPattern {
    bytes: Vec<u8>,
}

impl StreamPattern {
    /// Length of the pattern's period.
    pub const PERIOD: u64 = 251;

    /// The pattern for parts of at most `max_len` bytes.
    pub fn new(max_len: usize) -> StreamPattern {
        let period = Self::PERIOD as usize;
        StreamPattern {
            bytes: (0..period + max_len).map(|i| (i % period) as u8).collect(),
        }
    }

    /// True when parts of `len` bytes fit what it was made for.
    pub fn fits(&self, len: usize) -> bool {
        len + Self::PERIOD as usize <= self.bytes.len()
    }

    /// The `len` bytes of the stream from byte `offset` (`len` at most the
    /// `max_len` it was made for).
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % Self::PERIOD) as usize;
        &self.bytes[start..start + len]
    }

    /// The first byte of `part` (found at stream byte `offset`) that differs
    /// from the pattern: its index in the stream, what it holds, what it
    /// should hold.
    pub fn mismatch(&self, offset: u64, part: &[u8]) -> Option<(u64, u8, u8)> {
        let expected = self.at(offset, part.len());
        if part == expected {
            return None;
        }
        let i = part.iter().zip(expected).position(|(a, b)| a != b)?;
        Some((offset + i as u64, part[i], expected[i]))
    }
}

/// Milliseconds as a duration.
pub fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

/// Largest millisecond count the options take (about 49 days).
pub const MAX_MS: u64 = u32::MAX as u64;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn hex() {
        assert_eq!(to_hex(b""), "");
        assert_eq!(to_hex(&[0, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn stream_pattern() {
        let p = StreamPattern::new(1000);
        assert_eq!(p.at(0, 3), [0, 1, 2]);
        assert_eq!(p.at(250, 3), [250, 0, 1]);
        let far = 251 * 1_000_000 + 7;
        assert_eq!(p.at(far, 1000).len(), 1000);
        assert_eq!(p.at(far, 2), [7, 8]);
        let mut part = p.at(far, 1000).to_vec();
        assert_eq!(p.mismatch(far, &part), None);
        part[500] ^= 1;
        let expected = ((far + 500) % 251) as u8;
        assert_eq!(
            p.mismatch(far, &part),
            Some((far + 500, expected ^ 1, expected))
        );
    }

    #[test]
    fn positionals() {
        let mut p = Positionals::new(["EXCHANGE", "KEY"]);
        p.push("x".into()).unwrap();
        assert_eq!(p.finish().unwrap_err().0, "missing KEY");
        let mut p = Positionals::new(["EXCHANGE"]);
        p.push("x".into()).unwrap();
        assert!(p.push("y".into()).is_err());
        assert_eq!(p.finish().unwrap(), ["x".to_string()]);
    }

    #[test]
    fn limits() {
        let mut c = Common::default();
        let mut a = args(&[
            "--chunk-size",
            "64",
            "--chunks=8",
            "--queue-depth",
            "4",
            "--max-ports",
            "3",
        ]);
        while let Some(opt) = a.next_opt().unwrap() {
            assert!(c.accept(&mut a, &opt).unwrap(), "{}", opt.name);
        }
        let place = c.resolve().unwrap();
        assert_eq!(place.limits.chunk_size, 64);
        assert_eq!(place.limits.chunk_count, 8);
        assert_eq!(place.limits.queue_depth, 4);
        assert_eq!(place.limits.max_ports, 3);

        let mut c = Common::default();
        let mut a = args(&["--queue-depth", "6"]);
        let opt = a.next_opt().unwrap().unwrap();
        assert!(c.accept(&mut a, &opt).is_err());
        let mut a = args(&["--other"]);
        let opt = a.next_opt().unwrap().unwrap();
        assert!(!c.accept(&mut a, &opt).unwrap());
    }
}
