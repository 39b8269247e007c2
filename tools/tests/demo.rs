//! `shmex demo` end to end: real child processes, every pattern, their
//! figures in the output, and nothing left in /dev/shm; `shmex demo tasks
//! --json`, `demo stream --json` and `demo dialogue --json` parsed and their
//! invariants checked; `demo dialogue` printed turn by turn.

use shmex::Namespace;
use std::process::Command;

fn shm_namespace(name: &str) -> Namespace {
    Namespace::new("/dev/shm", name)
}

/// Files under /dev/shm of namespace `name`, found without the library.
fn files_of(name: &str) -> Vec<String> {
    let prefix = format!("shmex.{name}.");
    std::fs::read_dir(shm_namespace(name).dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn demo_runs_all_patterns_and_cleans_up() {
    let ns = format!("tdemo-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["demo", "--namespace", &ns])
        .env_remove("SHMEX_ROOT")
        .output()
        .expect("run shmex demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let has_line = |parts: &[&str]| stdout.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    // Every role speaks, prefixed with its name.
    for parts in [
        &["[server] got request 1: ping"][..],
        &["[client] got response 1: pong 1"],
        &["[publisher] published sensors.temp", "3 subscribers"],
        &["[sub sensors.*] got sensors.humidity"],
        &["[sub sensors.#] got sensors: all sensors ok"],
        &["[sub #.temp] got engine.temp: 88 C"],
        &["[consumer] producer-1: 20000 messages, all in order"],
        &["[consumer] producer-3: 20000 messages, all in order"],
        &["[producer-2] sent 20000 messages and done"],
        &["[worker-1] took task 1", "crashing before acking it"],
        &["[demo] SIGKILL worker-1"],
        &["[worker-3] nacked task", "with requeue"],
        &["[stream-server] stream request 1: 64 MiB with window 8"],
        &["[stream-client] end marker after 256 chunks: 67108864 bytes"],
        &["[stream-client] cancelled stream 2 after 4 chunks"],
        &["[stream-server] stream 2: cancelled by the client"],
        &[
            "[dialogue-client] server asks",
            "(tag 42, turn 1): For how many people?",
        ],
        &["[dialogue-client] client answers", "(tag 42, turn 5): Ada"],
        &["[dialogue-client] server responds", "(tag 42):", "Booked:"],
        &["[dialogue-server] conversation 42: asked 5 questions"],
    ] {
        assert!(has_line(parts), "no line with {parts:?} in:\n{stdout}");
    }
    // The three figures, each in a child's result line and in the summary.
    for parts in [
        &["request-response: round trip median", "requests"][..],
        &["publish-subscribe: round trip median", "ping-pongs"],
        &["fan-in: 60000 messages from 3 producers", "msg/s"],
        &["tasks: 30 submitted, 30 acked", "per worker [0, "],
        &[
            "chunked response: 256 chunks of 256 KiB, 67108864 bytes (64 MiB) in",
            "GB/s, every byte checked in place",
        ],
        &[
            "dialogue: 5 turns (ask, answer) under tag 42",
            "6 round trips",
        ],
    ] {
        let count = stdout
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count();
        assert_eq!(count, 2, "{parts:?} in:\n{stdout}");
    }
    // Every scenario, in order, and every exchange idle at the end.
    let mut at = 0;
    for title in [
        "== request-response ==",
        "== chunked response ==",
        "== dialogue ==",
        "== publish-subscribe ==",
        "== fan-in ==",
        "== task distribution ==",
        "== summary ==",
    ] {
        let i = stdout[at..]
            .find(title)
            .unwrap_or_else(|| panic!("no {title:?} after byte {at} in:\n{stdout}"));
        at += i + title.len();
    }
    for ex in ["stream", "dialogue"] {
        assert!(
            stdout.contains(&format!("[demo] exchange {ex}: 0 ports attached")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("[demo] exchange stream: 0 ports attached, 16/16 chunks free"));
    assert!(stdout.contains("[demo] all patterns ok"), "{stdout}");
    assert!(shm_namespace(&ns).segment_files().is_empty());
    assert_eq!(files_of(&ns), Vec::<String>::new());
}

#[test]
fn demo_refuses_a_namespace_in_use() {
    let ns = format!("tdemo-busy-{}", std::process::id());
    {
        let _node = shmex::Node::builder("squatter")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
            .args(["demo", "--namespace", &ns])
            .env_remove("SHMEX_ROOT")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    }
    assert_eq!(files_of(&ns), Vec::<String>::new());
}

/// Runs `shmex demo MODE --json` with `extra` arguments in a fresh
/// namespace; checks the exit status, that stdout is one JSON object with
/// `keys` in that order and that nothing is left in /dev/shm; returns the
/// object and the report (stderr).
fn demo_json(mode: &str, name: &str, extra: &[&str], keys: &[&str]) -> (json::Value, String) {
    let ns = format!("tdemo-{name}-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["demo", mode, "--json", "--namespace", &ns])
        .args(extra)
        .env_remove("SHMEX_ROOT")
        .output()
        .expect("run shmex demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "demo {mode} failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 1, "one line on stdout:\n{stdout}");
    let v =
        json::parse(stdout.trim_end()).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"));
    let got: Vec<&str> = match &v {
        json::Value::Obj(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
        other => panic!("not an object: {other:?}"),
    };
    assert_eq!(got, keys);
    // Only the chosen scenario ran.
    let titles = stderr.lines().filter(|l| l.starts_with("== ")).count();
    assert_eq!(titles, 2, "one scenario and the summary:\n{stderr}");
    assert!(shm_namespace(&ns).segment_files().is_empty());
    assert_eq!(files_of(&ns), Vec::<String>::new());
    (v, stderr)
}

fn demo_tasks_json(name: &str, extra: &[&str]) -> (json::Value, String) {
    demo_json(
        "tasks",
        name,
        extra,
        &[
            "submitted",
            "acked",
            "per_worker",
            "redelivered",
            "dead_lettered",
            "prefetch_limit",
            "max_in_flight_seen",
        ],
    )
}

const STREAM_KEYS: [&str; 10] = [
    "tag",
    "bytes",
    "chunks",
    "chunk_size",
    "window",
    "seconds",
    "gb_per_s",
    "verified_bytes",
    "cancelled_tag",
    "cancelled_after_chunks",
];

/// Checks the figures of `shmex demo stream --json` for a stream of `mib`
/// MiB.
fn check_stream_figures(v: &json::Value, mib: u64) {
    let bytes = mib << 20;
    assert_eq!(num(v, "tag"), 1, "{v:?}");
    assert_eq!(num(v, "bytes"), bytes, "{v:?}");
    assert_eq!(num(v, "chunk_size"), 256 * 1024, "{v:?}");
    assert_eq!(num(v, "window"), 8, "{v:?}");
    assert_eq!(num(v, "chunks"), bytes.div_ceil(256 * 1024), "{v:?}");
    assert_eq!(num(v, "verified_bytes"), bytes, "every byte checked: {v:?}");
    assert_eq!(num(v, "cancelled_tag"), 2, "{v:?}");
    assert_eq!(num(v, "cancelled_after_chunks"), 4, "{v:?}");
    let (secs, gbps) = (v.get("seconds").num(), v.get("gb_per_s").num());
    assert!(secs > 0.0 && gbps > 0.0, "{v:?}");
    // The rate is the bytes over the time (both rounded when printed).
    let rate = bytes as f64 / secs / 1e9;
    assert!((rate - gbps).abs() <= 0.01 * rate + 0.002, "{v:?}");
}

#[test]
fn demo_stream_json_reports_every_byte_checked() {
    let (v, report) = demo_json("stream", "stream", &[], &STREAM_KEYS);
    check_stream_figures(&v, 64);
    for parts in [
        &["[stream-server] stream request 1: 64 MiB with window 8"][..],
        &["[stream-client] chunk 0: 262144 bytes at offset 0, every byte as written"],
        &["[stream-client] end marker after 256 chunks: 67108864 bytes"],
        &["[stream-server] stream 1: sent 256 chunks (64 MiB), then the end marker"],
        &[
            "[stream-client] result: chunked response: 256 chunks",
            "GB/s",
        ],
        &["[stream-server] stream 2: cancelled by the client after"],
        &["[stream-client] server said bye"],
        &["[demo] exchange stream: 0 ports attached, 16/16 chunks free"],
        &["[demo] all patterns ok"],
    ] {
        assert!(
            report.lines().any(|l| parts.iter().all(|p| l.contains(p))),
            "no line with {parts:?} in:\n{report}"
        );
    }
    // The JSON line is kept for stdout, not relayed into the report.
    assert!(!report.contains("json: "), "{report}");
}

#[test]
fn demo_stream_size_is_an_option() {
    let (v, report) = demo_json("stream", "stream3", &["--stream-mib", "3"], &STREAM_KEYS);
    check_stream_figures(&v, 3);
    assert!(
        report.contains("end marker after 12 chunks: 3145728 bytes"),
        "{report}"
    );
}

#[test]
fn demo_dialogue_prints_the_conversation_turn_by_turn() {
    let ns = format!("tdemo-dialogue-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(["demo", "dialogue", "--namespace", &ns])
        .env_remove("SHMEX_ROOT")
        .output()
        .expect("run shmex demo dialogue");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo dialogue failed:\n{stdout}\n--- stderr ---\n{stderr}"
    );
    // Who said what, in the order it was said.
    let transcript: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[dialogue-client] "))
        .filter(|l| !l.starts_with("result: "))
        .collect();
    let expected = [
        ("client requests", "(tag 42):", "I'd like a table for tonight."),
        ("server asks", "(tag 42, turn 1):", "For how many people?"),
        ("client answers", "(tag 42, turn 1):", "four"),
        ("server asks", "(tag 42, turn 2):", "At what time?"),
        ("client answers", "(tag 42, turn 2):", "eight o'clock"),
        ("server asks", "(tag 42, turn 3):", "Inside, or on the terrace?"),
        ("client answers", "(tag 42, turn 3):", "on the terrace"),
        ("server asks", "(tag 42, turn 4):", "Anything you cannot eat?"),
        ("client answers", "(tag 42, turn 4):", "peanuts"),
        ("server asks", "(tag 42, turn 5):", "Under which name?"),
        ("client answers", "(tag 42, turn 5):", "Ada"),
        (
            "server responds",
            "(tag 42):",
            "Booked: a table for four at eight o'clock, on the terrace, without peanuts, under the name Ada (booking 42, 5 answers).",
        ),
    ];
    assert_eq!(transcript.len(), expected.len(), "{stdout}");
    for (line, (who, detail, text)) in transcript.iter().zip(expected) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let joined = words.join(" ");
        assert_eq!(joined, format!("{who} {detail} {text}"), "{stdout}");
    }
    for parts in [
        &["[dialogue-server] conversation 42 opened"][..],
        &["[dialogue-server] conversation 42: asked 5 questions"],
        &["[demo] exchange dialogue: 0 ports attached"],
        &["[demo] dialogue: ok"],
        &["[demo] all patterns ok"],
    ] {
        assert!(
            stdout.lines().any(|l| parts.iter().all(|p| l.contains(p))),
            "no line with {parts:?} in:\n{stdout}"
        );
    }
    // The figure, in the client's result line and in the summary.
    let figure = "dialogue: 5 turns (ask, answer) under tag 42, closed by a plain response";
    assert_eq!(stdout.matches(figure).count(), 2, "{stdout}");
    assert!(!stdout.contains("== request-response =="), "{stdout}");
    assert_eq!(files_of(&ns), Vec::<String>::new());
}

#[test]
fn demo_dialogue_json() {
    let (v, report) = demo_json(
        "dialogue",
        "dialogue-json",
        &[],
        &[
            "tag",
            "turns",
            "questions",
            "answers",
            "closed",
            "nanos_per_round_trip",
        ],
    );
    assert_eq!(num(&v, "tag"), 42, "{v:?}");
    assert_eq!(num(&v, "turns"), 5, "{v:?}");
    assert_eq!(num(&v, "questions"), 5, "{v:?}");
    assert_eq!(num(&v, "answers"), 5, "{v:?}");
    assert_eq!(v.get("closed"), &json::Value::Bool(true), "{v:?}");
    assert!(num(&v, "nanos_per_round_trip") > 0, "{v:?}");
    assert!(
        report.contains("[dialogue-client] server responds"),
        "{report}"
    );
}

fn num(v: &json::Value, key: &str) -> u64 {
    let n = v.get(key).num();
    assert!(n >= 0.0 && n.fract() == 0.0, "{key} = {n}");
    n as u64
}

#[test]
fn demo_tasks_json_holds_the_invariants() {
    let (v, report) = demo_tasks_json("tasks", &[]);
    let (submitted, acked) = (num(&v, "submitted"), num(&v, "acked"));
    assert_eq!(submitted, 30, "{v:?}");
    assert_eq!(acked, submitted, "{v:?}");
    assert_eq!(num(&v, "dead_lettered"), 0, "{v:?}");
    let per_worker: Vec<u64> = v
        .get("per_worker")
        .array()
        .iter()
        .map(|n| n.num() as u64)
        .collect();
    assert_eq!(per_worker.len(), 3, "{v:?}");
    assert_eq!(per_worker[0], 0, "the killed worker acked nothing: {v:?}");
    assert_eq!(per_worker.iter().sum::<u64>(), acked, "{v:?}");
    // The killed worker's task and worker-3's nack were delivered again.
    assert!(num(&v, "redelivered") >= 1, "{v:?}");
    let (max, limit) = (num(&v, "max_in_flight_seen"), num(&v, "prefetch_limit"));
    assert!(max >= 1 && max <= limit, "{v:?}");
    // The human report went to stderr.
    for line in [
        "[worker-1] took task",
        "[demo] SIGKILL worker-1",
        "[worker-3] nacked task",
        "[demo] all patterns ok",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
}

#[test]
fn demo_tasks_dead_letter_is_counted() {
    let (v, report) = demo_tasks_json("dead", &["--tasks", "12", "--dead-letter"]);
    let (submitted, acked, dead) = (
        num(&v, "submitted"),
        num(&v, "acked"),
        num(&v, "dead_lettered"),
    );
    assert_eq!((submitted, acked, dead), (13, 12, 1), "{v:?}");
    let per_worker: u64 = v
        .get("per_worker")
        .array()
        .iter()
        .map(|n| n.num() as u64)
        .sum();
    assert_eq!(per_worker, acked, "{v:?}");
    assert!(num(&v, "max_in_flight_seen") <= num(&v, "prefetch_limit"));
    assert!(
        report.contains("is poison: nacked without requeue"),
        "{report}"
    );
    assert!(
        report.contains("[demo] dead letter: task 13 (poison)"),
        "{report}"
    );
}

#[test]
fn demo_tasks_usage_errors() {
    for args in [
        &["demo", "--json"][..],
        &["demo", "tasks", "extra"],
        &["demo", "--tasks", "0"],
        &["demo", "tasks", "--json=1"],
        &["demo", "stream", "extra"],
        &["demo", "dialogue", "tasks"],
        &["demo", "--json", "stream"],
        &["demo", "stream", "--stream-mib", "0"],
        &["demo", "--stream-mib", "lots"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage"),
            "{args:?}"
        );
    }
}

/// A small strict JSON parser (as in `ls.rs`), enough to check the demo's
/// JSON without a dependency.
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
            .unwrap_or_else(|| panic!("no field {key:?} in {self:?}"))
        }
        pub fn array(&self) -> &[Value] {
            match self {
                Value::Arr(a) => a,
                _ => panic!("not an array: {self:?}"),
            }
        }
        pub fn num(&self) -> f64 {
            match self {
                Value::Num(n) => *n,
                _ => panic!("not a number: {self:?}"),
            }
        }
    }

    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
                self.i += 1;
            }
        }
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn eat(&mut self, b: u8) -> bool {
            self.ws();
            let ok = self.peek() == Some(b);
            if ok {
                self.i += 1;
            }
            ok
        }
        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at byte {}", self.i))
            }
        }
        /// Items of an array or object up to `close`, each read by `item`.
        fn items<T>(
            &mut self,
            close: u8,
            mut item: impl FnMut(&mut Self) -> Result<T, String>,
        ) -> Result<Vec<T>, String> {
            let mut out = Vec::new();
            if self.eat(close) {
                return Ok(out);
            }
            loop {
                out.push(item(self)?);
                if self.eat(close) {
                    return Ok(out);
                }
                if !self.eat(b',') {
                    return Err(format!("expected ',' at byte {}", self.i));
                }
            }
        }
        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.peek().ok_or("unexpected end")? {
                b'{' => {
                    self.i += 1;
                    let fields = self.items(b'}', |p| {
                        p.ws();
                        let key = p.string()?;
                        if !p.eat(b':') {
                            return Err(format!("expected ':' at byte {}", p.i));
                        }
                        Ok((key, p.value()?))
                    })?;
                    let unique = fields
                        .iter()
                        .all(|(k, _)| fields.iter().filter(|(k2, _)| k2 == k).count() == 1);
                    if !unique {
                        return Err("duplicate key".into());
                    }
                    Ok(Value::Obj(fields))
                }
                b'[' => {
                    self.i += 1;
                    Ok(Value::Arr(self.items(b']', |p| p.value())?))
                }
                b'"' => Ok(Value::Str(self.string()?)),
                b't' => self.literal("true", Value::Bool(true)),
                b'f' => self.literal("false", Value::Bool(false)),
                b'n' => self.literal("null", Value::Null),
                _ => self.number(),
            }
        }
        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            let leading_zero = text.starts_with('0') && text.len() > 1 && !text.starts_with("0.");
            match text.parse::<f64>() {
                Ok(n) if !leading_zero && !text.starts_with('+') => Ok(Value::Num(n)),
                _ => Err(format!("bad number {text:?} at byte {start}")),
            }
        }
        /// A string without escapes other than `\"` and `\\` (all the demo
        /// prints).
        fn string(&mut self) -> Result<String, String> {
            if self.peek() != Some(b'"') {
                return Err(format!("expected a string at byte {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = self.peek().ok_or("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = self.peek().ok_or("unterminated escape")?;
                        self.i += 1;
                        match e {
                            b'"' | b'\\' | b'/' => out.push(e),
                            _ => return Err(format!("unsupported escape at byte {}", self.i)),
                        }
                    }
                    c if c < 0x20 => return Err(format!("control character at byte {}", self.i)),
                    c => out.push(c),
                }
            }
        }
    }
}
