//! `shmex sub`, `pub`, `serve` and `call` end to end: the real binary as
//! several processes meeting in a namespace of their own, which must leave
//! no file in /dev/shm once every process has exited.
//!
//! Processes synchronise through the commands' own waiting options
//! (`--wait-subscribers`, `--wait-server-ms`) and the lines they print,
//! never through sleeps; every child is killed (and the test failed) if it
//! runs longer than [`HANG`].

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
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
    std::fs::read_dir(shmex::Namespace::new("/dev/shm", ns).dir())
        .into_iter()
        .flatten()
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
    /// Taken by [`finish`](Self::finish).
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    /// Each line of stdout as soon as it is printed.
    lines: Receiver<String>,
}

/// Reads `pipe` to its end; each line also goes to `lines` when given.
fn collect(pipe: impl Read + Send + 'static, lines: Option<Sender<String>>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let (mut bytes, mut line) = (Vec::new(), Vec::new());
        loop {
            line.clear();
            match pipe.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    bytes.extend_from_slice(&line);
                    if let Some(lines) = &lines {
                        let _ = lines.send(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        }
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
        let (tx, lines) = channel();
        let stdout = collect(child.stdout.take().unwrap(), Some(tx));
        let stderr = collect(child.stderr.take().unwrap(), None);
        Proc {
            label: format!("shmex {}", args.join(" ")),
            child,
            started: Instant::now(),
            stdout: Some(stdout),
            stderr: Some(stderr),
            lines,
        }
    }

    /// Waits for the next line the child prints on stdout; fails after
    /// [`HANG`] or when it exits without printing one.
    fn next_line(&self) -> String {
        match self.lines.recv_timeout(HANG) {
            Ok(line) => line,
            Err(e) => panic!("`{}` printed no line: {e}", self.label),
        }
    }

    /// Kills the child (SIGKILL) and waits for it.
    fn kill(mut self) -> Done {
        self.child.kill().expect("kill shmex");
        self.finish()
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
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
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

impl Drop for Proc {
    /// A test that fails before finishing its child does not leave it
    /// running (a server would wait for requests forever).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
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

/// Byte `i` of a `serve --stream` stream.
fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Checks a part of a stream found at byte `offset` against the pattern.
#[track_caller]
fn assert_pattern(offset: u64, part: &[u8]) {
    for (k, &b) in part.iter().enumerate() {
        let i = offset + k as u64;
        assert_eq!(b, pattern_byte(i), "byte {i} of the stream");
    }
}

/// The parts of `call --stream`'s summary line `C chunks, B bytes in S s:
/// R GB/s`: chunks, bytes, rate.
#[track_caller]
fn summary(line: &str) -> (u64, u64, f64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [chunks, "chunks,", bytes, "bytes", "in", secs, "s:", rate, "GB/s"] => {
            assert!(secs.parse::<f64>().is_ok(), "{line}");
            (
                chunks.parse().unwrap(),
                bytes.parse().unwrap(),
                rate.parse().unwrap(),
            )
        }
        _ => panic!("not a stream summary: {line:?}"),
    }
}

/// A node of this test process in namespace `ns`, and request-response
/// exchange `name` opened (created) through it.
fn library_exchange(ns: &str, name: &str) -> (shmex::Node, shmex::Exchange) {
    let node = shmex::Node::builder(format!("test-{name}"))
        .namespace(ns)
        .root("/dev/shm")
        .create()
        .unwrap();
    let ex = node
        .open_or_create_exchange(
            name,
            shmex::Pattern::RequestResponse,
            shmex::Limits::default(),
        )
        .unwrap();
    (node, ex)
}

#[test]
fn stream_of_64_mib_is_verified() {
    let ns = unique_namespace("stream");
    let size = (64u64 << 20).to_string();
    let serve = Proc::start(&ns, &["serve", "big", "--stream", &size, "--count", "1"]);
    let call = run(
        &ns,
        &[
            "call",
            "big",
            "go",
            "--stream",
            "--verify",
            "--wait-server-ms",
            "20000",
        ],
    );
    call.assert_code(0, "call --stream");
    assert_eq!(call.stderr, "");
    assert_eq!(call.stdout.lines().count(), 1, "{}", call.describe());
    // Parts of the default chunk size, 4096 bytes.
    let (chunks, bytes, rate) = summary(call.stdout.trim_end());
    assert_eq!((chunks, bytes), (16384, 64 << 20));
    assert!(rate > 0.0, "{}", call.describe());
    let serve = serve.finish();
    serve.assert_code(0, "serve");
    assert_eq!(serve.stdout, "0 go\n");
    assert_eq!(serve.stderr, "");
    assert_clean(&ns);
}

#[test]
fn streams_with_small_windows_cancels_and_leaving_clients() {
    // The test process creates the exchange. After a `call --stream
    // --window 1` that synchronises with the server, a plain `call` (no
    // window: no stream for it), then requests of the test process through
    // the library: a stream it cancels, a stream it leaves. The server
    // reports the last three and goes on.
    let ns = unique_namespace("window");
    {
        let (_node, ex) = library_exchange(&ns, "w");
        // Parts of 1000 bytes (below the chunk size): 1048 full ones and
        // one of 576 bytes.
        let serve = Proc::start(
            &ns,
            &[
                "serve", "w", "--stream", "1048576", "--chunk", "1000", "--count", "4",
            ],
        );
        let call = run(
            &ns,
            &[
                "call",
                "w",
                "one",
                "--tag",
                "1",
                "--stream",
                "--window",
                "1",
                "--verify",
                "--wait-server-ms",
                "20000",
            ],
        );
        call.assert_code(0, "call --window 1");
        let (chunks, bytes, _) = summary(call.stdout.trim_end());
        assert_eq!((chunks, bytes), (1049, 1 << 20));

        // A plain request: dropped, its client told.
        let call = run(&ns, &["call", "w", "two", "--tag", "2"]);
        call.assert_code(1, "plain call");
        assert!(
            call.stderr.contains("request 2 failed") && call.stderr.contains("without responding"),
            "{}",
            call.describe()
        );

        let client = ex.client().unwrap();
        let wait = Duration::from_secs(20);

        // Cancelled after one part: the server, waiting for the window,
        // learns it at once.
        client.request_stream(3, b"three", 1).unwrap();
        let part = client.receive_timeout(wait).unwrap();
        assert!(part.is_stream_chunk() && part.tag() == 3);
        assert!(client.cancel(3));
        drop(part);

        // Left after its parts were read: the client's port closes.
        client.request_stream(4, b"four", 2).unwrap();
        let mut offset = 0;
        for _ in 0..5 {
            let part = client.receive_timeout(wait).unwrap();
            assert!(part.is_stream_chunk() && part.tag() == 4);
            assert!(part.len() == 1000);
            assert_pattern(offset, &part);
            offset += 1000;
        }
        drop(client);

        let serve = serve.finish();
        serve.assert_code(0, "serve");
        assert_eq!(serve.stdout, "1 one\n2 two\n3 three\n4 four\n");
        let stderr: Vec<&str> = serve.stderr.lines().collect();
        assert_eq!(stderr.len(), 3, "{}", serve.describe());
        assert!(
            stderr[0].contains("request 2 is a plain request") && stderr[0].contains("dropped"),
            "{}",
            serve.describe()
        );
        assert!(
            stderr[1].contains("stream to request 3") && stderr[1].contains("cancelled"),
            "{}",
            serve.describe()
        );
        assert!(
            stderr[2].contains("stream to request 4") && stderr[2].contains("client is gone"),
            "{}",
            serve.describe()
        );
    }
    assert_clean(&ns);
}

#[test]
fn serve_killed_mid_stream_fails_the_call() {
    // The exchange is the test process's: killing the server leaves it up,
    // and the client learns its server left.
    let ns = unique_namespace("killed");
    let endless = (1u64 << 50).to_string();
    {
        let (_node, _ex) = library_exchange(&ns, "k");
        let serve = Proc::start(&ns, &["serve", "k", "--stream", &endless]);
        let call = Proc::start(
            &ns,
            &[
                "call",
                "k",
                "hi",
                "--stream",
                "--window",
                "2",
                "--wait-server-ms",
                "20000",
            ],
        );
        // Printed when the stream starts.
        assert_eq!(serve.next_line(), "0 hi\n");
        serve.kill();
        let call = call.finish();
        call.assert_code(1, "call");
        assert!(call.stdout.is_empty(), "{}", call.describe());
        assert!(
            call.stderr.contains("request 0 failed")
                && call.stderr.contains("server left in the middle"),
            "{}",
            call.describe()
        );
    }
    assert_clean(&ns);

    // The server created the exchange, unless the client was first: killing
    // it then takes the exchange down with it.
    let ns = unique_namespace("killed2");
    let serve = Proc::start(&ns, &["serve", "k", "--stream", &endless]);
    let call = Proc::start(
        &ns,
        &["call", "k", "hi", "--stream", "--wait-server-ms", "20000"],
    );
    assert_eq!(serve.next_line(), "0 hi\n");
    serve.kill();
    let call = call.finish();
    call.assert_code(1, "call");
    assert!(
        call.stderr.contains("server left in the middle") || call.stderr.contains("went down"),
        "{}",
        call.describe()
    );
    assert_clean(&ns);
}

#[test]
fn call_stream_reports_what_went_wrong() {
    // The server is this test process, through the library, answering each
    // call in a way that must fail it.
    let ns = unique_namespace("streamfail");
    {
        let (_node, ex) = library_exchange(&ns, "f");
        let server = ex.server().unwrap();
        let wait = Duration::from_secs(20);
        let part = |offset: u64| -> Vec<u8> { (offset..offset + 100).map(pattern_byte).collect() };

        // A wrong byte: --verify names it and cancels the stream.
        let call = Proc::start(
            &ns,
            &["call", "f", "v", "--stream", "--verify", "--window", "4"],
        );
        let request = server.receive_timeout(wait).unwrap();
        assert_eq!(request.stream_window(), 4);
        let mut stream = request.respond_stream().unwrap();
        for k in 0..3 {
            stream.send(&part(k * 100)).unwrap();
        }
        let mut bad = part(300);
        bad[50] ^= 0xff;
        stream.send(&bad).unwrap();
        let call = call.finish();
        call.assert_code(1, "call --verify");
        let expected = pattern_byte(350);
        assert!(
            call.stderr.contains(&format!(
                "verify failed: byte 350 of the stream is {}, expected {expected}",
                expected ^ 0xff
            )),
            "{}",
            call.describe()
        );
        assert!(stream.end().is_err(), "cancelled, or the client is gone");

        // An aborted stream.
        let call = Proc::start(&ns, &["call", "f", "a", "--stream", "--tag", "5"]);
        let request = server.receive_timeout(wait).unwrap();
        let mut stream = request.respond_stream().unwrap();
        stream.send(&part(0)).unwrap();
        stream.send(&part(100)).unwrap();
        stream.abort();
        let call = call.finish();
        call.assert_code(1, "aborted stream");
        assert!(
            call.stderr
                .contains("request 5 failed: the server aborted its chunked response")
                && call.stderr.contains("after 2 chunks, 200 bytes"),
            "{}",
            call.describe()
        );

        // A plain response to a stream request.
        let call = Proc::start(&ns, &["call", "f", "p", "--stream"]);
        server
            .receive_timeout(wait)
            .unwrap()
            .respond(b"plain")
            .unwrap();
        let call = call.finish();
        call.assert_code(1, "plain response");
        assert!(
            call.stderr.contains("single response of 5 bytes"),
            "{}",
            call.describe()
        );

        // No part in time.
        let call = Proc::start(&ns, &["call", "f", "t", "--stream", "--timeout-ms", "200"]);
        let request = server.receive_timeout(wait).unwrap();
        let mut stream = request.respond_stream().unwrap();
        stream.send(&part(0)).unwrap();
        let call = call.finish();
        call.assert_code(1, "timeout");
        assert!(
            call.stderr
                .contains("timed out: no part of the stream within 200 ms (after 1 chunk,"),
            "{}",
            call.describe()
        );
        drop(stream);
    }
    assert_clean(&ns);
}

#[test]
fn stream_options_are_checked() {
    let ns = unique_namespace("streamopts");
    for (args, what) in [
        (
            &["call", "x", "m", "--window", "4"][..],
            "--window needs --stream",
        ),
        (
            &["call", "x", "m", "--verify"][..],
            "--verify needs --stream",
        ),
        (&["call", "x", "m", "--stream", "--hex"][..], "--hex"),
        (
            &["call", "x", "m", "--stream", "--window", "64"][..],
            "queue depth is 64",
        ),
        (
            &["serve", "x", "--chunk", "10"][..],
            "--chunk needs --stream",
        ),
        (
            &["serve", "x", "--stream", "10", "--prefix", "p"][..],
            "--prefix",
        ),
    ] {
        let done = run(&ns, args);
        done.assert_code(2, what);
        assert!(done.stderr.contains(what), "{what}: {}", done.describe());
    }
    for command in ["serve", "call"] {
        let help = run(&ns, &["help", command]);
        help.assert_code(0, command);
        assert!(
            help.stdout.contains("--stream") && help.stdout.contains("(i % 251) as u8"),
            "{}",
            help.describe()
        );
    }
    assert_clean(&ns);
}
