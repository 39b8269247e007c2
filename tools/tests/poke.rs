//! `shmex sub`, `pub`, `serve` and `call` end to end: the real binary as
//! several processes meeting in a namespace of their own, which must leave
//! no file in /dev/shm once every process has exited.
//!
//! Processes synchronise through the commands' own waiting options
//! (`--wait-subscribers`, `--wait-server-ms`), never through sleeps; every
//! child is killed (and the test failed) if it runs longer than [`HANG`].

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest time any child may run before it counts as hung.
const HANG: Duration = Duration::from_secs(30);

/// A namespace no other test (or test run) uses.
fn unique_namespace(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "tpoke-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Files of namespace `ns` under /dev/shm, found without the library.
fn files_of(ns: &str) -> Vec<String> {
    let prefix = format!("shmex.{ns}.");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Checks the namespace left nothing behind. Call once every process (and
/// every node of this test process) is gone.
fn assert_clean(ns: &str) {
    assert_eq!(files_of(ns), Vec::<String>::new(), "files left by {ns}");
}

/// What a finished child printed.
struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Done {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn assert_code(&self, code: i32, what: &str) {
        assert_eq!(self.code(), Some(code), "{what}: {}", self.describe());
    }
}

/// A running `shmex` child with its output collected by two threads.
struct Proc {
    label: String,
    child: Child,
    started: Instant,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Proc {
    /// Starts `shmex ARGS` in namespace `ns` (through `SHMEX_NAMESPACE`).
    fn start(ns: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmex"))
            .args(args)
            .env("SHMEX_NAMESPACE", ns)
            .env_remove("SHMEX_ROOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shmex");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Proc {
            label: format!("shmex {}", args.join(" ")),
            child,
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    /// Waits for the child to exit; kills it and fails after [`HANG`].
    fn finish(mut self) -> Done {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for shmex") {
                break Some(status);
            }
            if self.started.elapsed() > HANG {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self.stdout.join().unwrap();
        let stderr = self.stderr.join().unwrap();
        match status {
            Some(status) => Done {
                status,
                stdout,
                stderr,
            },
            None => panic!(
                "`{}` hung for {HANG:?} and was killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
                self.label
            ),
        }
    }
}

/// Runs `shmex ARGS` in namespace `ns` to the end.
fn run(ns: &str, args: &[&str]) -> Done {
    Proc::start(ns, args).finish()
}

#[test]
fn serve_and_call_round_trip() {
    let ns = unique_namespace("rr");
    let serve = Proc::start(&ns, &["serve", "echo", "--count", "2", "--prefix", "re: "]);
    let call = run(
        &ns,
        &[
            "call",
            "echo",
            "hello world",
            "--tag",
            "7",
            "--wait-server-ms",
            "20000",
        ],
    );
    call.assert_code(0, "first call");
    assert_eq!(call.stdout, "re: hello world\n");
    assert_eq!(call.stderr, "");

    // While the server still runs, `ls` sees its exchange.
    let ls = run(&ns, &["ls"]);
    ls.assert_code(0, "ls");
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.contains("echo") && l.contains("request-response")),
        "{}",
        ls.describe()
    );

    // A message starting with '-' after `--`, and the response in hex.
    let call = run(
        &ns,
        &[
            "call",
            "echo",
            "--tag=8",
            "--hex",
            "--wait-server-ms",
            "20000",
            "--",
            "-x",
        ],
    );
    call.assert_code(0, "second call");
    assert_eq!(call.stdout, "72653a202d78\n"); // "re: -x"

    let serve = serve.finish();
    serve.assert_code(0, "serve");
    assert_eq!(serve.stdout, "7 hello world\n8 -x\n");
    assert_eq!(serve.stderr, "");
    assert_clean(&ns);
}

#[test]
fn sub_receives_what_its_pattern_matches() {
    let ns = unique_namespace("ps");
    let sub = Proc::start(
        &ns,
        &[
            "sub",
            "news",
            "a.*",
            "--count",
            "2",
            "--timeout-ms",
            "20000",
        ],
    );
    let mut published = Vec::new();
    for (key, message) in [("a.b", "first"), ("b.x", "unseen"), ("a.c", "second")] {
        let p = run(
            &ns,
            &[
                "pub",
                "news",
                key,
                message,
                "--wait-subscribers",
                "1",
                "--wait-ms",
                "20000",
            ],
        );
        p.assert_code(0, key);
        published.push(p.stderr);
    }
    assert_eq!(
        published,
        [
            "published 1, delivered 1, missed 0\n",
            "published 1, delivered 0, missed 0\n",
            "published 1, delivered 1, missed 0\n",
        ]
    );
    let sub = sub.finish();
    sub.assert_code(0, "sub");
    assert_eq!(sub.stdout, "a.b first\na.c second\n");
    assert_eq!(sub.stderr, "", "no gaps to report");
    assert_clean(&ns);
}

#[test]
fn sub_prints_hex_and_pub_repeats() {
    let ns = unique_namespace("hex");
    let sub = Proc::start(
        &ns,
        &[
            "sub",
            "raw",
            "#",
            "--hex",
            "--count",
            "3",
            "--tag",
            "5",
            "--timeout-ms",
            "20000",
        ],
    );
    let p = run(
        &ns,
        &[
            "pub",
            "raw",
            "k",
            "Az",
            "--count",
            "3",
            "--interval-ms",
            "1",
            "--wait-subscribers",
            "1",
            "--wait-ms",
            "20000",
        ],
    );
    p.assert_code(0, "pub");
    assert_eq!(p.stderr, "published 3, delivered 3, missed 0\n");
    let sub = sub.finish();
    sub.assert_code(0, "sub");
    assert_eq!(sub.stdout, "k 417a\nk 417a\nk 417a\n");
    assert_clean(&ns);
}

#[test]
fn sub_reports_the_publications_it_missed() {
    // A burst into an inbox of 2: how many the subscriber misses depends on
    // scheduling, but what `pub` says it missed and delivered must match what
    // `sub` printed and counted.
    let ns = unique_namespace("gaps");
    let limits = ["--queue-depth", "2"];
    let sub = Proc::start(
        &ns,
        &[&["sub", "burst", "#", "--timeout-ms", "3000"][..], &limits].concat(),
    );
    let p = run(
        &ns,
        &[
            &[
                "pub",
                "burst",
                "k",
                "m",
                "--count",
                "200",
                "--wait-subscribers",
                "1",
                "--wait-ms",
                "20000",
            ][..],
            &limits,
        ]
        .concat(),
    );
    p.assert_code(0, "pub");
    let numbers: Vec<u64> = p
        .stderr
        .trim_end()
        .split(", ")
        .map(|part| part.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let [published, delivered, missed] = numbers[..] else {
        panic!("summary: {}", p.stderr)
    };
    assert_eq!(published, 200);
    assert_eq!(delivered + missed, 200);
    let sub = sub.finish();
    // It ends by timing out: it was not told how many to expect.
    sub.assert_code(1, "sub");
    assert_eq!(sub.stdout.lines().count() as u64, delivered);
    assert!(sub.stdout.lines().all(|l| l == "k m"), "{}", sub.describe());
    assert!(sub.stderr.contains("timed out"), "{}", sub.describe());
    let gaps_line = format!("shmex sub: {missed} publications missed (inbox full)");
    assert_eq!(
        sub.stderr.contains(&gaps_line),
        missed > 0,
        "{}",
        sub.describe()
    );
    assert_clean(&ns);
}

#[test]
fn call_without_server_fails() {
    let ns = unique_namespace("noserver");
    let call = run(&ns, &["call", "nobody", "hi"]);
    call.assert_code(1, "call");
    assert!(call.stdout.is_empty());
    assert!(call.stderr.contains("no server"), "{}", call.describe());
    assert_eq!(call.stderr.lines().count(), 1, "{}", call.describe());

    let call = run(&ns, &["call", "nobody", "hi", "--wait-server-ms", "100"]);
    call.assert_code(1, "call --wait-server-ms");
    assert!(call.stderr.contains("no server"), "{}", call.describe());
    assert_clean(&ns);
}

#[test]
fn call_to_a_server_that_cannot_answer_fails() {
    // The prefix makes the response larger than a chunk: the server cannot
    // answer, drops the request, and the client is told.
    let ns = unique_namespace("unanswered");
    let limits = ["--chunk-size", "16"];
    let serve = Proc::start(
        &ns,
        &[
            &["serve", "tiny", "--count", "1", "--prefix", "0123456789"][..],
            &limits,
        ]
        .concat(),
    );
    let call = run(
        &ns,
        &[
            &[
                "call",
                "tiny",
                "abcdefghij",
                "--tag",
                "3",
                "--wait-server-ms",
                "20000",
            ][..],
            &limits,
        ]
        .concat(),
    );
    call.assert_code(1, "call");
    assert!(call.stdout.is_empty());
    assert!(
        call.stderr.contains("request 3 failed") && call.stderr.contains("without responding"),
        "{}",
        call.describe()
    );
    let serve = serve.finish();
    serve.assert_code(0, "serve");
    assert_eq!(serve.stdout, "3 abcdefghij\n");
    assert!(
        serve.stderr.contains("cannot answer request 3"),
        "{}",
        serve.describe()
    );
    assert_clean(&ns);
}

#[test]
fn call_to_a_silent_server_times_out() {
    // The server is this test process, through the library: it holds the
    // request without answering until the client has given up.
    let ns = unique_namespace("silent");
    {
        let node = shmex::Node::builder("silent-server")
            .namespace(&ns)
            .root("/dev/shm")
            .create()
            .unwrap();
        let ex = node
            .open_or_create_exchange(
                "quiet",
                shmex::Pattern::RequestResponse,
                shmex::Limits::default(),
            )
            .unwrap();
        let server = ex.server().unwrap();
        let call = run(&ns, &["call", "quiet", "anyone?", "--timeout-ms", "200"]);
        call.assert_code(1, "call");
        assert!(call.stdout.is_empty());
        assert!(
            call.stderr.contains("timed out") && call.stderr.contains("no response"),
            "{}",
            call.describe()
        );
        let request = server.try_receive().unwrap().expect("the request arrived");
        assert_eq!(&request[..], b"anyone?");
        // Answering now finds the client gone.
        assert!(matches!(
            request.respond(b"too late"),
            Err(shmex::RespondError::ClientGone)
        ));
    }
    assert_clean(&ns);
}

#[test]
fn waits_give_up_with_status_1() {
    let ns = unique_namespace("waits");
    let sub = run(&ns, &["sub", "empty", "#", "--timeout-ms", "100"]);
    sub.assert_code(1, "sub");
    assert!(sub.stdout.is_empty());
    assert!(sub.stderr.contains("timed out"), "{}", sub.describe());

    let p = run(
        &ns,
        &[
            "pub",
            "empty",
            "k",
            "m",
            "--wait-subscribers",
            "2",
            "--wait-ms",
            "100",
        ],
    );
    p.assert_code(1, "pub");
    assert!(
        p.stderr.contains("waiting for 2 subscribers"),
        "{}",
        p.describe()
    );
    assert_clean(&ns);
}

#[test]
fn bad_exchange_name_is_a_usage_error() {
    // Found by the library after joining the namespace, still status 2.
    let ns = unique_namespace("badname");
    let bad = run(&ns, &["call", "no/slash", "x"]);
    bad.assert_code(2, "bad exchange name");
    assert!(
        bad.stderr.contains("invalid exchange name") && bad.stderr.contains("Usage"),
        "{}",
        bad.describe()
    );
    assert_clean(&ns);
}

#[test]
fn pattern_and_limit_mismatches_fail_with_status_1() {
    let ns = unique_namespace("mismatch");
    let serve = Proc::start(&ns, &["serve", "x", "--count", "2"]);
    // Once this call is answered the exchange exists, held by the server.
    let call = run(&ns, &["call", "x", "hello", "--wait-server-ms", "20000"]);
    call.assert_code(0, "call");
    // A publish-subscribe command on a request-response exchange.
    let wrong = run(&ns, &["pub", "x", "k", "m"]);
    wrong.assert_code(1, "pattern mismatch");
    assert!(
        wrong
            .stderr
            .contains("exists with pattern request-response"),
        "{}",
        wrong.describe()
    );
    // Other limits than the exchange's, with a hint at the options.
    let wrong = run(&ns, &["call", "x", "m", "--chunks", "8"]);
    wrong.assert_code(1, "limits mismatch");
    assert!(
        wrong.stderr.contains("chunk_count") && wrong.stderr.contains("--chunks"),
        "{}",
        wrong.describe()
    );
    // The second request releases the server.
    let call = run(&ns, &["call", "x", "bye"]);
    call.assert_code(0, "last call");
    assert_eq!(call.stdout, "bye\n");
    let serve = serve.finish();
    serve.assert_code(0, "serve");
    assert_eq!(serve.stdout, "0 hello\n0 bye\n");
    assert_clean(&ns);
}
