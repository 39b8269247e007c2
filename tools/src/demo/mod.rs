//! `shmex demo`: the messaging patterns between real processes.
//!
//! The parent joins a fresh namespace (`demo-<pid>` by default), creates each
//! scenario's exchanges, and starts the roles as child processes: this very
//! binary re-executed as `shmex __child ...` ([`child`]). It never sleeps for
//! correctness: it starts a sender only once the receivers' ports show up in
//! the exchange ([`shmex::Exchange::ports`]), and fan-in producers start
//! together on a "go" publication. Children print what they send and
//! receive, prefixed with their role, plus one `result:` line with a figure;
//! the parent relays their output, checks every exit status, checks that no
//! chunk leaked and no port stayed attached, and at the end that the
//! namespace left no file behind.
//!
//! Scenarios:
//! 1. request-response: a server and a client; a few printed requests, then
//!    the median round trip of `--requests` requests (spin mode);
//! 2. chunked response ([`stream`]): a server streams a file-like response
//!    of `--stream-mib` MiB in chunks written in place, under a
//!    flow-control window; the client checks every byte in place and reports
//!    the throughput; then a second stream the client cancels;
//! 3. dialogue ([`dialogue`]): the server answers a request with questions
//!    (`ask`), the client answers each (`answer`), until a plain response
//!    ends the conversation; printed turn by turn, tags and turn numbers
//!    checked on both sides;
//! 4. publish-subscribe: a publisher and three subscribers (`sensors.*`,
//!    `sensors.#`, `#.temp`) that each check they got exactly the readings
//!    their pattern matches, in order; then a ping-pong over two exchanges
//!    (publisher → the first subscriber → publisher) for a round-trip median;
//! 5. fan-in: three producers, one consumer that checks per-producer order
//!    and counts, and reports the throughput;
//! 6. task distribution ([`tasks`]): a task queue, three workers; one is
//!    killed holding a task, one nacks a task; every task is acked exactly
//!    once.
//!
//! `shmex demo tasks`, `shmex demo stream` and `shmex demo dialogue` run only
//! scenario 6, 2 or 3, and with `--json` print its figures as one JSON
//! object on stdout (everything else then goes to stderr). Figures a child
//! measured reach the parent as a `json: {...}` line of its output, which
//! the relay keeps instead of printing ([`JSON_PREFIX`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// Set under `--json`: the report goes to stderr, stdout carries only the
/// JSON object.
static REPORT_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Prints one line of the parent's report (or a relayed child line): on
/// stdout, or on stderr under `--json`. Output errors are ignored, so the
/// demo still finishes (and cleans up) when its output is closed.
pub(crate) fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = if REPORT_TO_STDERR.load(Ordering::Relaxed) {
        writeln!(std::io::stderr().lock(), "{args}")
    } else {
        writeln!(std::io::stdout().lock(), "{args}")
    };
}

/// `println!` for the parent's report, see [`print_line`].
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::demo::print_line(format_args!($($arg)*))
    };
}

/// `println!` for a child's output, prefixed with its role: `[label] ...`.
/// Output errors are ignored: a child whose parent died (closing the pipe)
/// still finishes its part and leaves the namespace cleanly instead of
/// panicking.
macro_rules! say {
    ($ctx:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "[{}] {}",
            $ctx.label,
            format_args!($($arg)*)
        );
    }};
}

pub mod child;
mod dialogue;
mod stats;
mod stream;
mod supervise;
mod tasks;

use crate::args::{Args, Item, NamespaceArgs, UsageError};
use shmex::{Exchange, Limits, Namespace, Node, Pattern};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supervise::Children;

/// The hidden command that runs one role of the demo.
pub const CHILD_COMMAND: &str = "__child";

/// Starts the text (after the `[role] ` prefix) of a child's output line that
/// carries a figure for the summary.
const RESULT_PREFIX: &str = "result: ";

/// Starts the text (after the `[role] ` prefix) of a child's output line that
/// carries its figures as one JSON object, for `--json`: kept by the relay,
/// not printed.
const JSON_PREFIX: &str = "json: ";

/// Help text of `shmex demo`.
pub const HELP: &str = "\
Usage: shmex demo [--namespace NS] [--root DIR] [--requests N] [--spin-us US]
                  [--stream-mib N] [--tasks N] [--dead-letter] [--timeout SECS]
       shmex demo tasks [--json] [--namespace NS] [--root DIR] [--tasks N]
                  [--dead-letter] [--timeout SECS]
       shmex demo stream [--json] [--namespace NS] [--root DIR]
                  [--stream-mib N] [--timeout SECS]
       shmex demo dialogue [--json] [--namespace NS] [--root DIR]
                  [--timeout SECS]

Runs each messaging pattern end to end between real processes (this binary,
re-executed as children) and prints what every process sends and receives:

  request-response   one server, one client; median round trip (spin mode)
  chunked response   a server answers a stream request with a file-like
                     stream of --stream-mib MiB in 256 KiB chunks written in
                     place (window 8); the client checks every byte in place
                     and reports chunks, bytes, seconds and GB/s (sleep
                     mode: --spin-us does not apply); then it cancels a
                     second stream after 4 chunks
  dialogue           the server answers a request with questions (ask), the
                     client answers each (answer): 5 turns under one tag,
                     printed turn by turn, closed by a plain response; tags
                     and turn numbers checked on both sides
  publish-subscribe  one publisher, subscribers on sensors.*, sensors.# and
                     #.temp; median ping-pong round trip over two exchanges
  fan-in             three producers, one consumer; per-producer order and
                     counts checked; throughput
  task distribution  N tasks, three workers (prefetch limit 2, ack timeout
                     400 ms): worker-1 takes a task and is killed (SIGKILL)
                     before acking it, worker-3 nacks one with requeue; both
                     tasks are redelivered and every task is acked exactly
                     once (checked against the workers' receipts)

`shmex demo tasks`, `shmex demo stream` and `shmex demo dialogue` run only
that scenario; with --json each prints one JSON object on stdout (the report
goes to stderr):
  tasks:    {\"submitted\", \"acked\", \"per_worker\": [acked by worker-1, -2, -3],
             \"redelivered\", \"dead_lettered\", \"prefetch_limit\",
             \"max_in_flight_seen\"}
  stream:   {\"tag\", \"bytes\", \"chunks\", \"chunk_size\", \"window\",
             \"seconds\", \"gb_per_s\", \"verified_bytes\", \"cancelled_tag\",
             \"cancelled_after_chunks\"}
  dialogue: {\"tag\", \"turns\", \"questions\", \"answers\", \"closed\",
             \"nanos_per_round_trip\"}

The demo fails (exit status 1) when any process fails, a check does not hold
(a task lost or acked twice, a worker above its prefetch limit, a byte of
the stream not as written, a tag or turn out of place in the dialogue, a
chunk or port not returned), a scenario exceeds its timeout (its processes are
killed) or a segment file is left behind.

Options:
  -n, --namespace NS  namespace to run in; must be unused (default: demo-<pid>)
  --root DIR          root folder; files go in DIR/shmex-UID/ (default: $SHMEX_ROOT,
                      else /dev/shm)
  --requests N        round trips per latency figure (default 20000)
  --spin-us US        how long receivers busy-poll before sleeping (default 100000)
  --stream-mib N      size of the chunked response in MiB (default 64)
  --tasks N           tasks of the task distribution (default 30)
  --dead-letter       also submit a poison task, which a worker nacks without
                      requeue: it ends on the dead-letter queue (submitted =
                      acked + dead_lettered)
  --json              (demo tasks, stream, dialogue only) print the figures as
                      JSON on stdout
  --timeout SECS      time limit of each scenario (default 30)
  -h, --help          print this help
";

/// Exchange names.
const RPC: &str = "rpc";
const SENSORS: &str = "sensors";
const PING: &str = "ping";
const PONG: &str = "pong";
const LOGS: &str = "logs";
const GO: &str = "go";
const TASKS: &str = "tasks";
const CONTROL: &str = "control";
const RECEIPTS: &str = "receipts";
const STREAM: &str = "stream";
const DIALOGUE: &str = "dialogue";

/// The subscribers' topic patterns; subscriber `i` has tag `i`. The first one
/// also echoes the ping-pong.
const SUBSCRIPTIONS: [&str; 3] = ["sensors.*", "sensors.#", "#.temp"];

/// What the publisher publishes: routing key, payload, and which of the
/// [`SUBSCRIPTIONS`] must receive it (written out by hand, so the demo checks
/// the library's routing rather than restating it).
const READINGS: [(&str, &str, [bool; 3]); 6] = [
    ("sensors.temp", "21.5 C", [true, true, true]),
    ("sensors.humidity", "40 %", [true, true, false]),
    ("sensors.kitchen.temp", "19.0 C", [false, true, true]),
    ("engine.temp", "88 C", [false, false, true]),
    ("sensors", "all sensors ok", [false, true, false]),
    ("weather.wind", "12 km/h", [false, false, false]),
];

/// Fan-in producers and messages each sends.
const PRODUCERS: u32 = 3;
const FANIN_MESSAGES: u64 = 20_000;

/// One role of the demo, as passed to a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Answers requests on [`RPC`] until the client says goodbye.
    Server,
    /// Sends requests on [`RPC`]; measures `requests` round trips.
    Client { requests: u32 },
    /// Subscribes [`SUBSCRIPTIONS`]`[index]` on [`SENSORS`]; with `echo`,
    /// then answers pings from [`PING`] on [`PONG`].
    Subscriber { index: usize, echo: bool },
    /// Publishes [`READINGS`], then measures `round_trips` ping-pongs.
    Publisher { round_trips: u32 },
    /// The single consumer of [`LOGS`].
    Consumer,
    /// Producer `index` (1-based) of [`LOGS`].
    Producer { index: u32 },
    /// Worker `index` (1-based) of [`TASKS`]: 1 takes a task and waits to be
    /// killed, 2 and 3 work until told to stop; 3 nacks its first task.
    Worker { index: u32 },
    /// Answers stream requests on [`STREAM`] with chunked responses until
    /// the client says goodbye.
    StreamServer,
    /// Requests a stream of `mib` MiB on [`STREAM`] and checks every byte;
    /// then cancels a second one.
    StreamClient { mib: u32 },
    /// Holds the conversation on [`DIALOGUE`]: asks, then responds.
    DialogueServer,
    /// Starts the conversation on [`DIALOGUE`] and answers every question.
    DialogueClient,
}

impl Role {
    /// The prefix of the role's output lines, without brackets.
    pub fn label(&self) -> String {
        match self {
            Role::Server => "server".into(),
            Role::Client { .. } => "client".into(),
            Role::Subscriber { index, .. } => format!("sub {}", SUBSCRIPTIONS[*index]),
            Role::Publisher { .. } => "publisher".into(),
            Role::Consumer => "consumer".into(),
            Role::Producer { index } => format!("producer-{index}"),
            Role::Worker { index } => format!("worker-{index}"),
            Role::StreamServer => "stream-server".into(),
            Role::StreamClient { .. } => "stream-client".into(),
            Role::DialogueServer => "dialogue-server".into(),
            Role::DialogueClient => "dialogue-client".into(),
        }
    }
}

/// Everything a child needs: its role, the receivers' spin time, and how long
/// it may wait for anything before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildArgs {
    /// What to do.
    pub role: Role,
    /// Spin time of the child's node.
    pub spin: Duration,
    /// Longest wait for any one message.
    pub timeout: Duration,
}

impl ChildArgs {
    /// `__child SPIN_US TIMEOUT_MS ROLE [ROLE ARGS]`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            CHILD_COMMAND.to_string(),
            self.spin.as_micros().to_string(),
            self.timeout.as_millis().to_string(),
        ];
        let role: Vec<String> = match &self.role {
            Role::Server => vec!["server".into()],
            Role::Client { requests } => vec!["client".into(), requests.to_string()],
            Role::Subscriber { index, echo } => vec![
                "subscriber".into(),
                index.to_string(),
                if *echo { "echo" } else { "quiet" }.into(),
            ],
            Role::Publisher { round_trips } => vec!["publisher".into(), round_trips.to_string()],
            Role::Consumer => vec!["consumer".into()],
            Role::Producer { index } => vec!["producer".into(), index.to_string()],
            Role::Worker { index } => vec!["worker".into(), index.to_string()],
            Role::StreamServer => vec!["stream-server".into()],
            Role::StreamClient { mib } => vec!["stream-client".into(), mib.to_string()],
            Role::DialogueServer => vec!["dialogue-server".into()],
            Role::DialogueClient => vec!["dialogue-client".into()],
        };
        v.extend(role);
        v
    }

    /// Inverse of [`to_argv`](Self::to_argv), without the leading command.
    pub fn parse(args: &[String]) -> Result<ChildArgs, String> {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
        let (spin, timeout, role) = match words.as_slice() {
            [spin, timeout, role @ ..] => (num(spin)?, num(timeout)?, role),
            _ => return Err("missing arguments".into()),
        };
        let role = match role {
            ["server"] => Role::Server,
            ["client", n] => Role::Client {
                requests: num(n)? as u32,
            },
            ["subscriber", i, mode] => {
                let index = num(i)? as usize;
                if index >= SUBSCRIPTIONS.len() {
                    return Err(format!("no subscriber {index}"));
                }
                Role::Subscriber {
                    index,
                    echo: *mode == "echo",
                }
            }
            ["publisher", n] => Role::Publisher {
                round_trips: num(n)? as u32,
            },
            ["consumer"] => Role::Consumer,
            ["producer", i] => Role::Producer {
                index: num(i)? as u32,
            },
            ["worker", i] => Role::Worker {
                index: num(i)? as u32,
            },
            ["stream-server"] => Role::StreamServer,
            ["stream-client", n] => Role::StreamClient {
                mib: num(n)? as u32,
            },
            ["dialogue-server"] => Role::DialogueServer,
            ["dialogue-client"] => Role::DialogueClient,
            _ => return Err(format!("unknown role {role:?}")),
        };
        Ok(ChildArgs {
            role,
            spin: Duration::from_micros(spin),
            timeout: Duration::from_millis(timeout),
        })
    }
}

/// A scenario `shmex demo` can run alone (`shmex demo tasks`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Tasks,
    Stream,
    Dialogue,
}

impl Only {
    /// The sub-mode's word on the command line.
    fn parse(word: &str) -> Option<Only> {
        match word {
            "tasks" => Some(Only::Tasks),
            "stream" => Some(Only::Stream),
            "dialogue" => Some(Only::Dialogue),
            _ => None,
        }
    }
}

/// What `shmex demo` was asked for.
struct Options {
    namespace: Namespace,
    requests: u32,
    spin: Duration,
    timeout: Duration,
    /// `shmex demo tasks|stream|dialogue`: only that scenario.
    only: Option<Only>,
    /// `--json` (with `only`): the figures as one JSON object on stdout.
    json: bool,
    /// Size of the chunked response, MiB.
    stream_mib: u32,
    /// Tasks of the task distribution.
    tasks: u32,
    /// Also submit a poison task that ends as a dead letter.
    dead_letter: bool,
}

/// Most tasks `--tasks` accepts (the ledger holds them all at once).
const MAX_TASKS: u64 = 10_000;
/// Largest chunked response `--stream-mib` accepts (64 GiB).
const MAX_STREAM_MIB: u64 = 65_536;

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut ns = NamespaceArgs::default();
    let mut requests = 20_000;
    let mut spin_us = 100_000;
    let mut timeout = 30;
    let mut only = None;
    let mut json = false;
    let mut stream_mib = stream::DEFAULT_MIB;
    let mut tasks = 30;
    let mut dead_letter = false;
    let mut first = true;
    while let Some(item) = args.next_item() {
        let opt = match item {
            // A sub-mode, only as the first argument.
            Item::Positional(p) if first && Only::parse(&p).is_some() => {
                only = Only::parse(&p);
                first = false;
                continue;
            }
            Item::Positional(p) => return Err(UsageError(format!("unexpected argument {p:?}"))),
            Item::Opt(opt) => opt,
        };
        first = false;
        if ns.accept(&mut args, &opt)? {
            continue;
        }
        match opt.name.as_str() {
            "--requests" => requests = args.number(&opt, 1, 10_000_000)? as u32,
            "--spin-us" => spin_us = args.number(&opt, 0, 10_000_000)?,
            "--timeout" => timeout = args.number(&opt, 1, 3600)?,
            "--tasks" => tasks = args.number(&opt, 1, MAX_TASKS)? as u32,
            "--stream-mib" => stream_mib = args.number(&opt, 1, MAX_STREAM_MIB)? as u32,
            "--dead-letter" => {
                opt.flag()?;
                dead_letter = true;
            }
            "--json" => {
                opt.flag()?;
                json = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    if json && only.is_none() {
        return Err(UsageError(
            "--json is for `shmex demo tasks`, `demo stream` and `demo dialogue` only".to_string(),
        ));
    }
    // A fresh namespace unless one is named explicitly: SHMEX_NAMESPACE is
    // for joining existing namespaces, the demo wants one to itself.
    ns.name = Some(
        ns.name
            .unwrap_or_else(|| format!("demo-{}", std::process::id())),
    );
    Ok(Some(Options {
        namespace: ns.resolve()?,
        requests,
        spin: Duration::from_micros(spin_us),
        timeout: Duration::from_secs(timeout),
        only,
        json,
        stream_mib,
        tasks,
        dead_letter,
    }))
}

/// Runs `shmex demo` with the arguments after `demo`.
pub fn run(args: Vec<String>) -> ExitCode {
    let opts = match crate::args::parse_or_exit("demo", HELP, args, parse) {
        Ok(o) => o,
        Err(status) => return status,
    };
    REPORT_TO_STDERR.store(opts.json, Ordering::Relaxed);
    let demo = Demo {
        results: Arc::default(),
        json: Arc::default(),
        tasks: Mutex::new(None),
        opts,
    };
    let ns = &demo.opts.namespace;
    let existing = ns.segment_files();
    if !existing.is_empty() {
        eprintln!(
            "[demo] error: namespace {} is in use ({} files in {}); pick another with --namespace",
            ns.name,
            existing.len(),
            ns.root.display()
        );
        return ExitCode::FAILURE;
    }
    report!(
        "[demo] namespace {} in {}, {} CPUs",
        ns.name,
        ns.root.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut failed = Vec::new();
    match Node::builder("demo")
        .namespace(&ns.name)
        .root(&ns.root)
        .create()
    {
        Ok(node) => {
            let all: [(&str, Scenario, Option<Only>); 6] = [
                ("request-response", Demo::request_response, None),
                ("chunked response", stream::scenario, Some(Only::Stream)),
                ("dialogue", dialogue::scenario, Some(Only::Dialogue)),
                ("publish-subscribe", Demo::publish_subscribe, None),
                ("fan-in", Demo::fan_in, None),
                ("task distribution", tasks::scenario, Some(Only::Tasks)),
            ];
            let only = demo.opts.only;
            let scenarios = all
                .iter()
                .filter(|(_, _, which)| only.is_none() || *which == only);
            for &(title, scenario, _) in scenarios {
                report!("\n== {title} ==");
                match scenario(&demo, &node) {
                    Ok(()) => report!("[demo] {title}: ok"),
                    Err(e) => {
                        eprintln!("[demo] {title} FAILED: {e}");
                        failed.push(title);
                    }
                }
            }
            // Last node out: dropping it removes the registry.
            drop(node);
        }
        Err(e) => {
            eprintln!("[demo] error: cannot join namespace {}: {e}", ns.name);
            failed.push("setup");
        }
    }
    if !check_clean(ns) {
        failed.push("cleanup");
    }
    report!("\n== summary ==");
    for line in demo.results.lock().map(|r| r.clone()).unwrap_or_default() {
        report!("{line}");
    }
    if demo.opts.json {
        // The one line on stdout; printed even when a check failed (the
        // exit status says so), unless the scenario got nowhere near it.
        let line = match demo.opts.only {
            Some(Only::Tasks) => demo
                .tasks
                .lock()
                .ok()
                .and_then(|t| t.clone())
                .map(|t| t.json().to_string()),
            Some(Only::Stream) => demo.child_json(stream::CLIENT_LABEL),
            Some(Only::Dialogue) => demo.child_json(dialogue::CLIENT_LABEL),
            None => None,
        };
        match line {
            Some(line) => println!("{line}"),
            None => failed.push("no figures for --json"),
        }
    }
    if failed.is_empty() {
        report!("[demo] all patterns ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("[demo] FAILED: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Checks the namespace left no file; removes and reports any it did.
fn check_clean(ns: &Namespace) -> bool {
    let left = ns.segment_files();
    if left.is_empty() {
        report!(
            "\n[demo] no segment left in {} for namespace {}",
            ns.root.display(),
            ns.name
        );
        return true;
    }
    eprintln!("[demo] error: segments left behind:");
    for path in &left {
        eprintln!("[demo]   {}", path.display());
        let _ = std::fs::remove_file(path);
    }
    eprintln!("[demo] (removed them)");
    false
}

type Scenario = fn(&Demo, &Node) -> Result<(), String>;

/// State shared by the scenarios.
struct Demo {
    opts: Options,
    /// `result:` lines of the children, for the summary.
    results: Arc<Mutex<Vec<String>>>,
    /// `json:` lines of the children (role label, JSON object), for
    /// `--json`.
    json: Arc<Mutex<Vec<(String, String)>>>,
    /// The task distribution's figures, for `--json`.
    tasks: Mutex<Option<tasks::TaskReport>>,
}

impl Demo {
    fn children(&self) -> Children {
        Children::new(
            &self.opts.namespace,
            self.opts.timeout,
            self.results.clone(),
            self.json.clone(),
        )
    }

    /// The last JSON object the child labelled `label` printed.
    fn child_json(&self, label: &str) -> Option<String> {
        let json = self.json.lock().ok()?;
        json.iter()
            .rev()
            .find(|(l, _)| l == label)
            .map(|(_, j)| j.clone())
    }

    /// A child gives up waiting after half the scenario's time limit, so a
    /// stuck peer is normally reported by the child that waited for it
    /// before the parent has to kill anyone.
    fn child(&self, role: Role) -> ChildArgs {
        ChildArgs {
            role,
            spin: self.opts.spin,
            timeout: self.opts.timeout / 2,
        }
    }

    fn request_response(&self, node: &Node) -> Result<(), String> {
        let rpc = create(node, RPC, Pattern::RequestResponse)?;
        let mut kids = self.children();
        kids.spawn(&self.child(Role::Server))?;
        kids.wait_for("the server to attach", || rpc.ports() >= 1)?;
        kids.spawn(&self.child(Role::Client {
            requests: self.opts.requests,
        }))?;
        kids.finish()?;
        check_idle(&rpc)
    }

    fn publish_subscribe(&self, node: &Node) -> Result<(), String> {
        let sensors = create(node, SENSORS, Pattern::PublishSubscribe)?;
        let ping = create(node, PING, Pattern::PublishSubscribe)?;
        let pong = create(node, PONG, Pattern::PublishSubscribe)?;
        let mut kids = self.children();
        for index in 0..SUBSCRIPTIONS.len() {
            kids.spawn(&self.child(Role::Subscriber {
                index,
                echo: index == 0,
            }))?;
        }
        // Three sensor subscriptions, plus the echo's ping subscription and
        // pong publisher: then the publisher will miss nobody.
        kids.wait_for("the subscribers to attach", || {
            sensors.ports() >= SUBSCRIPTIONS.len() as u32 && ping.ports() >= 1 && pong.ports() >= 1
        })?;
        kids.spawn(&self.child(Role::Publisher {
            round_trips: self.opts.requests,
        }))?;
        kids.finish()?;
        for ex in [&sensors, &ping, &pong] {
            check_idle(ex)?;
        }
        Ok(())
    }

    fn fan_in(&self, node: &Node) -> Result<(), String> {
        let logs = create(node, LOGS, Pattern::FanIn)?;
        let go = create(node, GO, Pattern::PublishSubscribe)?;
        let mut kids = self.children();
        kids.spawn(&self.child(Role::Consumer))?;
        kids.wait_for("the consumer to attach", || logs.ports() >= 1)?;
        for index in 1..=PRODUCERS {
            kids.spawn(&self.child(Role::Producer { index }))?;
        }
        kids.wait_for("the producers to attach", || {
            logs.ports() > PRODUCERS && go.ports() >= PRODUCERS
        })?;
        // One publication starts all producers at once, so the consumer's
        // throughput figure does not include process start-up.
        {
            let starter = go.publisher().map_err(|e| e.to_string())?;
            let sent = starter.send("go", b"go").map_err(|e| e.to_string())?;
            report!("[demo] go: released {} producers", sent.delivered);
            if sent.delivered != PRODUCERS {
                return Err(format!(
                    "go reached {} producers, expected {PRODUCERS}",
                    sent.delivered
                ));
            }
        }
        kids.finish()?;
        check_idle(&logs)?;
        check_idle(&go)
    }
}

/// Creates a scenario's exchange with default limits.
fn create(node: &Node, name: &str, pattern: Pattern) -> Result<Exchange, String> {
    node.create_exchange(name, pattern, Limits::default())
        .map_err(|e| format!("cannot create exchange {name}: {e}"))
}

/// After the children exited: no port may still be attached and every chunk
/// must be back in the pool.
fn check_idle(ex: &Exchange) -> Result<(), String> {
    let (ports, free, total) = (ex.ports(), ex.chunks_free(), ex.limits().chunk_count);
    report!(
        "[demo] exchange {}: {ports} ports attached, {free}/{total} chunks free",
        ex.name()
    );
    if ports != 0 {
        return Err(format!("{ports} ports still attached to {}", ex.name()));
    }
    if free != total {
        return Err(format!(
            "{} chunks of {} not returned to the pool",
            total - free,
            ex.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_round_trip() {
        let roles = [
            Role::Server,
            Role::Client { requests: 7 },
            Role::Subscriber {
                index: 2,
                echo: false,
            },
            Role::Subscriber {
                index: 0,
                echo: true,
            },
            Role::Publisher { round_trips: 9 },
            Role::Consumer,
            Role::Producer { index: 3 },
            Role::Worker { index: 2 },
            Role::StreamServer,
            Role::StreamClient { mib: 64 },
            Role::DialogueServer,
            Role::DialogueClient,
        ];
        for role in roles {
            let a = ChildArgs {
                role,
                spin: Duration::from_micros(15),
                timeout: Duration::from_millis(2500),
            };
            let argv = a.to_argv();
            assert_eq!(argv[0], CHILD_COMMAND);
            assert_eq!(ChildArgs::parse(&argv[1..]).unwrap(), a);
        }
        assert!(ChildArgs::parse(&["1".into(), "2".into(), "dancer".into()]).is_err());
    }

    #[test]
    fn readings_match_the_library_routing() {
        // The hand-written table must agree with AMQP topic rules.
        for (key, _, expected) in READINGS {
            for (i, pattern) in SUBSCRIPTIONS.iter().enumerate() {
                let topic = shmex::topic::Topic::parse(pattern).unwrap();
                assert_eq!(topic.matches(key), expected[i], "{pattern} vs {key}");
            }
        }
    }
}
