//! `shmex ls` against namespaces this test process populates through the
//! library: JSON and table output, invalid exchange files, empty and missing
//! namespaces, `--root`. Each test uses its own namespace and checks it
//! leaves no file behind.

use shmex::{Limits, Namespace, Node, Pattern, TypeInfo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace name no other test (or test run) uses.
fn unique_namespace(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "tls-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn namespace(name: &str, root: &Path) -> Namespace {
    Namespace::new(root, name)
}

/// Runs `shmex` with the namespace given through the environment.
fn shmex(args: &[&str], ns: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_shmex"))
        .args(args)
        .env("SHMEX_NAMESPACE", ns)
        .env_remove("SHMEX_ROOT")
        .output()
        .expect("run shmex");
    assert!(
        out.status.success(),
        "shmex {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// Parses `shmex ls --json` output: exactly one JSON value and a newline.
fn ls_json(out: &Output) -> json::Value {
    let text = stdout(out);
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    json::parse(text.trim_end()).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// The entry of `list` whose "name" is `name`.
fn named<'a>(list: &'a json::Value, name: &str) -> &'a json::Value {
    list.array()
        .iter()
        .find(|e| e.get("name").str() == name)
        .unwrap_or_else(|| panic!("no {name:?} in {list:?}"))
}

#[test]
fn json_lists_node_and_exchanges() {
    let ns = unique_namespace("json");
    let shm = namespace(&ns, Path::new("/dev/shm"));
    {
        let node = Node::builder("ls-test")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let small = Limits::default()
            .chunk_size(512)
            .chunk_count(32)
            .queue_depth(16)
            .max_ports(4);
        let orders = node
            .create_exchange("orders", Pattern::RequestResponse, small)
            .unwrap();
        let events = node
            .create_exchange("events.v1", Pattern::PublishSubscribe, Limits::default())
            .unwrap();
        let _server = orders.server().unwrap();
        let publisher = events.publisher().unwrap();
        let _subscriber = events.subscriber("a.#", 1).unwrap();
        // Three chunks in use: two loans held, one publication queued.
        let _l1 = publisher.loan(10).unwrap();
        let _l2 = publisher.loan(10).unwrap();
        assert_eq!(publisher.send("a.b", b"queued").unwrap().delivered, 1);

        let v = ls_json(&shmex(&["ls", "--json"], &ns));
        let nodes = v.get("nodes");
        assert_eq!(nodes.array().len(), 1, "{v:?}");
        let n = named(nodes, "ls-test");
        assert_eq!(n.get("pid").num(), f64::from(std::process::id()));
        assert_eq!(n.get("id").num(), f64::from(node.id()));
        assert_eq!(n.get("state").str(), "alive");
        assert!(n.get("heartbeat_age_ms").num() >= 0.0);

        let exchanges = v.get("exchanges");
        assert_eq!(exchanges.array().len(), 2, "{v:?}");
        let o = named(exchanges, "orders");
        assert_eq!(o.get("pattern").str(), "request-response");
        assert_eq!(o.get("ports").num(), 1.0);
        assert_eq!(o.get("chunks_total").num(), 32.0);
        assert_eq!(o.get("chunks_free").num(), 32.0);
        assert_eq!(o.get("chunk_size").num(), 512.0);
        assert_eq!(o.get("queue_depth").num(), 16.0);
        assert_eq!(
            o.get("size").num(),
            small.segment_size(Pattern::RequestResponse).unwrap() as f64
        );
        let e = named(exchanges, "events.v1");
        assert_eq!(e.get("pattern").str(), "publish-subscribe");
        assert_eq!(e.get("ports").num(), 2.0);
        assert_eq!(e.get("chunks_total").num(), 256.0);
        assert_eq!(e.get("chunks_free").num(), 253.0);
        assert_eq!(e.get("chunk_size").num(), 4096.0);
        assert_eq!(e.get("queue_depth").num(), 64.0);
        assert_eq!(
            e.get("size").num(),
            events
                .limits()
                .segment_size(Pattern::PublishSubscribe)
                .unwrap() as f64
        );

        let table = stdout(&shmex(&["ls"], &ns));
        for want in [
            "ls-test",
            "alive",
            "orders",
            "events.v1",
            "request-response",
            "publish-subscribe",
            "32/32",
            "253/256",
        ] {
            assert!(table.contains(want), "{want:?} missing from:\n{table}");
        }
    }
    assert_eq!(shm.segment_files(), Vec::<PathBuf>::new());
}

/// One spelling per pattern: `Pattern::as_str`, `FromStr` (which also keeps
/// the old `pubsub`), `shmex ls --json` and its table, and the C header's
/// `SHMEX_PATTERN_*` names (upper case, `_` for `-`, valued by position in
/// `Pattern::ALL`) agree for every pattern. (The supervisor's config, which is
/// what CLI users type, is checked by its own unit tests.)
#[test]
fn pattern_names_agree() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bindings/include/shmex.h"
    ))
    .expect("read the C header");
    for (i, p) in Pattern::ALL.into_iter().enumerate() {
        assert_eq!(p.as_str().parse::<Pattern>(), Ok(p));
        assert_eq!(p.to_string(), p.as_str());
        let define = format!(
            "#define SHMEX_PATTERN_{} {}\n",
            p.as_str().to_uppercase().replace('-', "_"),
            i + 1
        );
        assert!(header.contains(&define), "{define:?} missing from shmex.h");
    }
    assert_eq!("pubsub".parse::<Pattern>(), Ok(Pattern::PublishSubscribe));

    let ns = unique_namespace("names");
    let shm = namespace(&ns, Path::new("/dev/shm"));
    {
        let node = Node::builder("ls-names")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let _exchanges: Vec<_> = Pattern::ALL
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                node.create_exchange(&format!("x{i}"), p, Limits::default())
                    .unwrap()
            })
            .collect();
        let v = ls_json(&shmex(&["ls", "--json"], &ns));
        let table = stdout(&shmex(&["ls"], &ns));
        for (i, p) in Pattern::ALL.into_iter().enumerate() {
            let name = format!("x{i}");
            let listed = named(v.get("exchanges"), &name).get("pattern").str();
            assert_eq!(listed, p.as_str(), "{v:?}");
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&name))
                .unwrap_or_else(|| panic!("no {name} row in:\n{table}"));
            assert_eq!(row.split_whitespace().nth(1), Some(p.as_str()), "{table}");
        }
    }
    assert_eq!(shm.segment_files(), Vec::<PathBuf>::new());
}

/// Each exchange's payload type, as recorded in its header by this process,
/// is what `shmex ls` (another process) shows: the name in the table and the
/// whole descriptor in `--json` (the hash as a hex string, exact beyond
/// 2^53); `bytes` for an untyped exchange.
#[test]
fn payload_types_are_listed() {
    let ns = unique_namespace("types");
    let shm = namespace(&ns, Path::new("/dev/shm"));
    {
        let node = Node::builder("ls-types")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let point = TypeInfo::new("Point3", 12, 4, 0xfedc_ba98_7654_3210);
        let _points = node
            .create_exchange_of(
                "points",
                Pattern::PublishSubscribe,
                Limits::default(),
                &point,
            )
            .unwrap();
        let _counts = node
            .create_typed_exchange::<u64>("counts", Pattern::FanIn, Limits::default())
            .unwrap();
        let _raw = node
            .create_exchange("raw", Pattern::PublishSubscribe, Limits::default())
            .unwrap();

        let v = ls_json(&shmex(&["ls", "--json"], &ns));
        let exchanges = v.get("exchanges");
        for (name, want) in [
            ("points", point),
            ("counts", TypeInfo::of::<u64>()),
            ("raw", TypeInfo::bytes()),
        ] {
            let p = named(exchanges, name).get("payload");
            assert_eq!(p.get("name").str(), want.name, "{v:?}");
            assert_eq!(p.get("size").num(), want.size as f64, "{v:?}");
            assert_eq!(p.get("align").num(), f64::from(want.align), "{v:?}");
            assert_eq!(p.get("hash").str(), format!("{:#018x}", want.hash), "{v:?}");
        }
        assert_eq!(
            named(exchanges, "points").get("payload").get("hash").str(),
            "0xfedcba9876543210"
        );

        let table = stdout(&shmex(&["ls"], &ns));
        let header = table.lines().find(|l| l.contains("PATTERN")).unwrap();
        assert_eq!(header.split_whitespace().nth(2), Some("PAYLOAD"), "{table}");
        for (name, payload) in [("points", "Point3"), ("counts", "u64"), ("raw", "bytes")] {
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} row in:\n{table}"));
            assert_eq!(row.split_whitespace().nth(2), Some(payload), "{table}");
        }
    }
    assert_eq!(shm.segment_files(), Vec::<PathBuf>::new());
}

#[test]
fn invalid_exchange_file_is_reported() {
    let ns = unique_namespace("bad");
    let shm = namespace(&ns, Path::new("/dev/shm"));
    {
        let node = Node::builder("ls-bad")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let _good = node
            .create_exchange("good", Pattern::FanIn, Limits::default())
            .unwrap();
        let bogus = shm.exchange_path("broken");
        std::fs::write(&bogus, vec![0xa5u8; 4096]).unwrap();

        let v = ls_json(&shmex(&["ls", "--json"], &ns));
        let exchanges = v.get("exchanges");
        assert_eq!(exchanges.array().len(), 2, "{v:?}");
        assert_eq!(named(exchanges, "good").get("pattern").str(), "fan-in");
        let broken = named(exchanges, "broken");
        assert!(!broken.get("error").str().is_empty(), "{v:?}");
        assert!(broken.field("pattern").is_none());

        let table = stdout(&shmex(&["ls"], &ns));
        assert!(table.contains("broken: error:"), "{table}");
        assert!(table.contains("good"), "{table}");
        std::fs::remove_file(&bogus).unwrap();
    }
    assert_eq!(shm.segment_files(), Vec::<PathBuf>::new());
}

#[test]
fn missing_namespace_prints_empty_lists() {
    let ns = unique_namespace("empty");
    let out = shmex(&["ls", "--json", "--namespace", &ns], "ignored-by-flag");
    assert_eq!(stdout(&out), "{\"nodes\":[],\"exchanges\":[]}\n");
    let v = ls_json(&out);
    assert!(v.get("nodes").array().is_empty() && v.get("exchanges").array().is_empty());
    let table = stdout(&shmex(&["ls", "--namespace", &ns], "x"));
    assert_eq!(table.matches("(none)").count(), 2, "{table}");
    assert!(namespace(&ns, Path::new("/dev/shm"))
        .segment_files()
        .is_empty());
}

#[test]
fn root_flag_selects_the_folder() {
    let ns = unique_namespace("root");
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    {
        let node = Node::builder("rooted")
            .namespace(&ns)
            .root(&dir)
            .create()
            .unwrap();
        let _ex = node
            .create_exchange("here", Pattern::PublishSubscribe, Limits::default())
            .unwrap();
        let root = dir.to_str().unwrap();
        let v = ls_json(&shmex(&["ls", "--json", "--root", root], &ns));
        named(v.get("nodes"), "rooted");
        named(v.get("exchanges"), "here");
        // The same namespace under /dev/shm is empty.
        let v = ls_json(&shmex(&["ls", "--json"], &ns));
        assert!(v.get("nodes").array().is_empty(), "{v:?}");
    }
    assert!(namespace(&ns, &dir).segment_files().is_empty());
    // The per-user directory stays (namespaces come and go in it).
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small strict JSON parser, enough to check `ls --json` without a
/// dependency.
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
        pub fn field(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn get(&self, key: &str) -> &Value {
            self.field(key)
                .unwrap_or_else(|| panic!("no field {key:?} in {self:?}"))
        }
        pub fn array(&self) -> &[Value] {
            match self {
                Value::Arr(a) => a,
                _ => panic!("not an array: {self:?}"),
            }
        }
        pub fn str(&self) -> &str {
            match self {
                Value::Str(s) => s,
                _ => panic!("not a string: {self:?}"),
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
        // Object keys must be unique.
        fn unique(v: &Value) -> bool {
            match v {
                Value::Obj(f) => f
                    .iter()
                    .all(|(k, v)| f.iter().filter(|(k2, _)| k2 == k).count() == 1 && unique(v)),
                Value::Arr(a) => a.iter().all(unique),
                _ => true,
            }
        }
        if unique(&v) {
            Ok(v)
        } else {
            Err("duplicate key".into())
        }
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
        fn expect(&mut self, b: u8) -> Result<(), String> {
            self.ws();
            if self.peek() == Some(b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at byte {}", b as char, self.i))
            }
        }
        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at byte {}", self.i))
            }
        }
        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.peek().ok_or("unexpected end")? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Value::Obj(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        fields.push((key, self.value()?));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Obj(fields));
                            }
                            _ => return Err(format!("bad object at byte {}", self.i)),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(Value::Arr(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Arr(items));
                            }
                            _ => return Err(format!("bad array at byte {}", self.i)),
                        }
                    }
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
                Ok(n) if !leading_zero && !text.starts_with('+') && !text.is_empty() => {
                    Ok(Value::Num(n))
                }
                _ => Err(format!("bad number {text:?} at byte {start}")),
            }
        }
        fn string(&mut self) -> Result<String, String> {
            if self.peek() != Some(b'"') {
                return Err(format!("expected a string at byte {}", self.i));
            }
            self.i += 1;
            let mut out = String::new();
            loop {
                let c = self.peek().ok_or("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return Ok(out),
                    b'\\' => {
                        let e = self.peek().ok_or("unterminated escape")?;
                        self.i += 1;
                        match e {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u")?;
                                let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                                let code =
                                    u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                self.i += 4;
                                out.push(char::from_u32(code).ok_or("surrogate \\u")?);
                            }
                            _ => return Err(format!("bad escape at byte {}", self.i)),
                        }
                    }
                    c if c < 0x20 => return Err("control character in string".into()),
                    _ => {
                        // Copy the whole UTF-8 sequence starting at `c`.
                        let start = self.i - 1;
                        let len = match c {
                            0xf0.. => 4,
                            0xe0.. => 3,
                            0xc0.. => 2,
                            _ => 1,
                        };
                        let bytes = self.s.get(start..start + len).ok_or("bad UTF-8")?;
                        out.push_str(std::str::from_utf8(bytes).map_err(|e| e.to_string())?);
                        self.i = start + len;
                    }
                }
            }
        }
    }

    #[test]
    fn parser_self_check() {
        let v = parse(r#" {"a":[1,2.5,-3e2],"b":"x\"\u00e9\n","c":{},"d":[],"e":null,"f":true} "#)
            .unwrap();
        assert_eq!(v.get("a").array()[2].num(), -300.0);
        assert_eq!(v.get("b").str(), "x\"é\n");
        for bad in [
            "{",
            "[1,]",
            "{\"a\":1}x",
            "01",
            "\"\u{1}\"",
            "{\"a\":1,\"a\":2}",
            "+1",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
