//! The chunked-response scenario: a file-like stream between two processes.
//!
//! The parent creates a request-response exchange ([`STREAM`]) of
//! [`CHUNK_SIZE`] chunks, a pool of [`POOL`] of them, and starts a server,
//! then (once the server's port shows up) a client:
//!
//! 1. the client asks for stream [`TAG`]: `--stream-mib` MiB with a window
//!    of [`WINDOW`] chunks ([`shmex::Client::request_stream`]). The server
//!    answers with [`shmex::Request::respond_stream`]: it loans each chunk,
//!    writes its part of the "file" in place ([`fill`]) and sends it; a send
//!    waits while the client holds `WINDOW` chunks unreleased, so the stream
//!    can be any size while the pool stays small. The client checks every
//!    byte in place ([`check`]), in order and at its offset, until the end
//!    marker, and reports chunks, bytes, seconds and GB/s;
//! 2. it asks for stream [`CANCELLED_TAG`] (1 GiB), reads
//!    [`CANCEL_AFTER`] chunks and cancels it ([`shmex::Client::cancel`]):
//!    the server's next send fails and it stops; the chunks still queued are
//!    released unread;
//! 3. it says goodbye; the server answers and both leave. The parent then
//!    checks that every chunk came back to the pool.
//!
//! Both run in sleep mode ([`sleep_mode`]), whatever `--spin-us`.
//!
//! The "file": every 8-byte word holds its own word index (its offset / 8)
//! XORed with a seed of the stream's tag, little-endian. A chunk that is
//! lost, repeated, out of order, short or stale (a reused chunk not
//! rewritten) fails the check.

use super::child::{fail, text, Context, Ctx, Res, GOODBYE};
use super::{check_idle, Demo, Role, STREAM};
use shmex::{Limits, Node, Pattern, StreamError};
use std::time::{Duration, Instant};

/// `--stream-mib` by default.
pub const DEFAULT_MIB: u32 = 64;
/// The exchange's chunk size: the size of each part of the stream.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks the client lets the server have unreleased.
pub const WINDOW: u32 = 8;
/// Chunks in the pool: the window, the loan the server fills meanwhile, and
/// room to spare (4 MiB, whatever the size of the stream).
const POOL: u32 = 16;
/// Tag of the stream read to the end.
pub const TAG: u64 = 1;
/// Tag of the stream the client cancels.
pub const CANCELLED_TAG: u64 = 2;
/// Size of the stream the client cancels.
const CANCELLED_BYTES: u64 = 1 << 30;
/// Chunks the client reads of it before cancelling.
pub const CANCEL_AFTER: u64 = 4;
/// Chunks of the first stream the client describes.
const SHOWN_CHUNKS: u64 = 2;
/// Label of the client, whose `json:` line `shmex demo stream --json`
/// prints.
pub const CLIENT_LABEL: &str = "stream-client";

/// The exchange's limits: a client's inbox holds a stream's window and its
/// end marker, plus the goodbye.
fn limits() -> Limits {
    Limits::default()
        .chunk_size(CHUNK_SIZE)
        .chunk_count(POOL)
        .queue_depth(16)
        .max_ports(4)
}

/// The scenario (see the module doc).
pub(super) fn scenario(demo: &Demo, node: &Node) -> Result<(), String> {
    let ex = node
        .create_exchange(STREAM, Pattern::RequestResponse, limits())
        .map_err(|e| format!("cannot create exchange {STREAM}: {e}"))?;
    report!(
        "[demo] exchange {STREAM}: chunks of {}, a pool of {POOL} ({}), for a {} stream",
        size(CHUNK_SIZE as u64),
        size(CHUNK_SIZE as u64 * u64::from(POOL)),
        size(u64::from(demo.opts.stream_mib) << 20)
    );
    let mut kids = demo.children();
    kids.spawn(&sleep_mode(demo.child(Role::StreamServer)))?;
    kids.wait_for("the stream server to attach", || ex.ports() >= 1)?;
    kids.spawn(&sleep_mode(demo.child(Role::StreamClient {
        mib: demo.opts.stream_mib,
    })))?;
    kids.finish()?;
    check_idle(&ex)
}

/// Both sides of the stream sleep as soon as they wait, whatever
/// `--spin-us`: a wake-up costs little next to a chunk's 256 KiB, and two
/// spinning processes that share a CPU (on a busy machine) would take turns
/// only at the scheduler's time slice, an order of magnitude slower.
fn sleep_mode(mut args: super::ChildArgs) -> super::ChildArgs {
    args.spin = Duration::ZERO;
    args
}

/// `256 KiB`, `64 MiB`, `1 GiB`; bytes otherwise.
pub fn size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 3] = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// The seed of stream `tag`'s words.
fn seed(tag: u64) -> u64 {
    tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Word `index` of stream `tag`.
fn word(tag: u64, index: u64) -> u64 {
    seed(tag) ^ index
}

/// Writes the part of stream `tag` at `offset` (a multiple of 8) into
/// `bytes`, in place.
pub fn fill(bytes: &mut [u8], tag: u64, offset: u64) {
    debug_assert_eq!(offset % 8, 0);
    let (seed, first) = (seed(tag), offset / 8);
    let mut words = bytes.chunks_exact_mut(8);
    let mut index = first;
    for w in &mut words {
        w.copy_from_slice(&(seed ^ index).to_le_bytes());
        index += 1;
    }
    let tail = words.into_remainder();
    let last = (seed ^ index).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// Checks, in place, that `bytes` is the part of stream `tag` at `offset`
/// (a multiple of 8); names the first wrong byte otherwise.
pub fn check(bytes: &[u8], tag: u64, offset: u64) -> Result<(), String> {
    let (seed, first) = (seed(tag), offset / 8);
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    // Branch-free over the whole chunk (it vectorizes); look for the culprit
    // only when something is wrong.
    let diff = words.enumerate().fold(0u64, |acc, (j, w)| {
        let got = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        acc | (got ^ seed ^ (first + j as u64))
    });
    let last = (seed ^ (first + (bytes.len() / 8) as u64)).to_le_bytes();
    if diff == 0 && tail == &last[..tail.len()] {
        return Ok(());
    }
    let expected = |k: usize| word(tag, first + (k / 8) as u64).to_le_bytes()[k % 8];
    let k = (0..bytes.len())
        .find(|&k| bytes[k] != expected(k))
        .unwrap_or(0);
    Err(format!(
        "stream {tag}: byte at offset {} is {:#04x}, expected {:#04x}",
        offset + k as u64,
        bytes[k],
        expected(k)
    ))
}

/// A stream request's payload: how many bytes to send.
fn order(bytes: u64) -> String {
    format!("read {bytes}")
}

fn parse_order(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload)
        .ok()?
        .strip_prefix("read ")?
        .parse()
        .ok()
}

impl Ctx {
    /// Answers stream requests with chunked responses, written in place,
    /// until the goodbye.
    pub(super) fn stream_server(&self) -> Res {
        let node = self.node("stream-server")?;
        let ex = node.open_exchange(STREAM)?;
        let chunk = ex.limits().chunk_size as u64;
        let server = ex.server()?;
        say!(
            self,
            "serving exchange {STREAM}: streams in chunks of {}",
            size(chunk)
        );
        loop {
            let request = server
                .receive_timeout(self.timeout())
                .context(|| "waiting for a stream request".into())?;
            let tag = request.tag();
            if tag == GOODBYE {
                say!(self, "got goodbye: {}", text(&request));
                request.respond(b"bye")?;
                break;
            }
            let Some(bytes) = parse_order(&request) else {
                return fail(format!("request {tag}: bad order {:?}", text(&request)));
            };
            let window = request.stream_window();
            if window == 0 {
                return fail(format!("request {tag} is not a stream request"));
            }
            say!(
                self,
                "stream request {tag}: {} with window {window}: writing {} chunks of {} in place",
                size(bytes),
                bytes.div_ceil(chunk),
                size(chunk)
            );
            let mut stream = request
                .respond_stream()
                .context(|| format!("opening stream {tag}"))?;
            let mut offset = 0u64;
            let mut outcome = Ok(());
            while offset < bytes {
                let len = chunk.min(bytes - offset);
                let mut loan = stream.loan(len as usize)?;
                fill(&mut loan, tag, offset);
                if let Err(e) = stream.send_loan(loan) {
                    outcome = Err(e);
                    break;
                }
                offset += len;
            }
            let sent = stream.sent();
            match outcome {
                Ok(()) => {
                    stream.end().context(|| format!("ending stream {tag}"))?;
                    say!(
                        self,
                        "stream {tag}: sent {sent} chunks ({}), then the end marker",
                        size(offset)
                    );
                }
                Err(StreamError::Cancelled) => say!(
                    self,
                    "stream {tag}: cancelled by the client after {sent} chunks ({}): stopped",
                    size(offset)
                ),
                Err(e) => return fail(format!("stream {tag}, chunk {sent}: {e}")),
            }
        }
        Ok(())
    }

    /// Reads a stream of `mib` MiB to the end, checking every byte in
    /// place; cancels a second one; says goodbye.
    pub(super) fn stream_client(&self, mib: u32) -> Res {
        let node = self.node("stream-client")?;
        let ex = node.open_exchange(STREAM)?;
        let chunk = ex.limits().chunk_size as u64;
        let client = ex.client()?;
        let bytes = u64::from(mib) << 20;

        say!(
            self,
            "requesting stream {TAG}: {} with window {WINDOW}",
            size(bytes)
        );
        let start = Instant::now();
        client
            .request_stream(TAG, order(bytes).as_bytes(), WINDOW)
            .context(|| format!("requesting stream {TAG}"))?;
        let (mut offset, mut chunks) = (0u64, 0u64);
        let mut shown = Vec::new();
        loop {
            let s = client
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for chunk {chunks} of stream {TAG}"))?;
            if s.tag() != TAG {
                return fail(format!("a response of tag {} in stream {TAG}", s.tag()));
            }
            if s.is_stream_end() {
                break;
            }
            if !s.is_stream_chunk() {
                return fail(format!("chunk {chunks} of stream {TAG} is no chunk: {s:?}"));
            }
            let want = chunk.min(bytes.saturating_sub(offset));
            if s.len() as u64 != want {
                return fail(format!(
                    "chunk {chunks} of stream {TAG} (offset {offset}): {} bytes, expected {want}",
                    s.len()
                ));
            }
            check(&s, TAG, offset)?;
            if chunks < SHOWN_CHUNKS {
                shown.push((chunks, offset, s.len()));
            }
            offset += want;
            chunks += 1;
        }
        let elapsed = start.elapsed();
        for (n, at, len) in shown {
            say!(
                self,
                "chunk {n}: {len} bytes at offset {at}, every byte as written"
            );
        }
        if offset != bytes {
            return fail(format!(
                "stream {TAG} ended after {offset} of {bytes} bytes"
            ));
        }
        if client.outstanding() != 0 {
            return fail(format!(
                "{} inbox slots still reserved after the end marker",
                client.outstanding()
            ));
        }
        say!(
            self,
            "end marker after {chunks} chunks: {offset} bytes, every byte checked in place"
        );
        let secs = elapsed.as_secs_f64().max(1e-9);
        let gbps = bytes as f64 / secs / 1e9;
        self.result(format!(
            "chunked response: {chunks} chunks of {}, {bytes} bytes ({}) in {secs:.4} s: {gbps:.2} GB/s, every byte checked in place (window {WINDOW}, sleep mode)",
            size(chunk),
            size(bytes),
        ));

        let cancelled_after = self.cancel_a_stream(&client)?;

        client.send(GOODBYE, b"goodbye")?;
        let bye = client
            .receive_timeout(self.timeout())
            .context(|| "waiting for the answer to goodbye".into())?;
        if bye.tag() != GOODBYE || bye.is_stream_chunk() || bye.is_question() {
            return fail(format!("goodbye answered by {bye:?}"));
        }
        say!(self, "server said {}", text(&bye));
        drop(bye);
        if client.outstanding() != 0 {
            return fail(format!(
                "{} inbox slots still reserved at the end",
                client.outstanding()
            ));
        }
        self.json(&format!(
            "{{\"tag\":{TAG},\"bytes\":{bytes},\"chunks\":{chunks},\"chunk_size\":{chunk},\"window\":{WINDOW},\"seconds\":{secs:.9},\"gb_per_s\":{gbps:.3},\"verified_bytes\":{offset},\"cancelled_tag\":{CANCELLED_TAG},\"cancelled_after_chunks\":{cancelled_after}}}"
        ));
        Ok(())
    }

    /// Requests a large stream, reads [`CANCEL_AFTER`] chunks and cancels
    /// it. Returns the chunks read.
    fn cancel_a_stream(&self, client: &shmex::Client) -> Result<u64, Box<dyn std::error::Error>> {
        let chunk = CHUNK_SIZE as u64;
        say!(
            self,
            "requesting stream {CANCELLED_TAG}: {}, to cancel after {CANCEL_AFTER} chunks",
            size(CANCELLED_BYTES)
        );
        client
            .request_stream(CANCELLED_TAG, order(CANCELLED_BYTES).as_bytes(), WINDOW)
            .context(|| format!("requesting stream {CANCELLED_TAG}"))?;
        for n in 0..CANCEL_AFTER {
            let s = client
                .receive_timeout(self.timeout())
                .context(|| format!("waiting for chunk {n} of stream {CANCELLED_TAG}"))?;
            if s.tag() != CANCELLED_TAG || !s.is_stream_chunk() {
                return Err(format!("chunk {n} of stream {CANCELLED_TAG}: got {s:?}").into());
            }
            check(&s, CANCELLED_TAG, n * chunk)?;
        }
        if !client.cancel(CANCELLED_TAG) {
            return Err(format!("no open stream {CANCELLED_TAG} to cancel").into());
        }
        say!(
            self,
            "cancelled stream {CANCELLED_TAG} after {CANCEL_AFTER} chunks (all as written): chunks still queued are released unread"
        );
        Ok(CANCEL_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check() {
        let mut buf = vec![0u8; 4096 + 5];
        fill(&mut buf, 3, 8 * 1000);
        check(&buf, 3, 8 * 1000).unwrap();
        // The same bytes are not the part at another offset, nor of another
        // stream.
        assert!(check(&buf, 3, 8 * 1001).is_err());
        assert!(check(&buf, 4, 8 * 1000).is_err());
        // One flipped bit is found, at its offset, in the words and in the
        // tail.
        for k in [0, 17, 4095, 4099] {
            let mut bad = buf.clone();
            bad[k] ^= 0x10;
            let e = check(&bad, 3, 8 * 1000).unwrap_err();
            assert!(e.contains(&format!("offset {}", 8000 + k)), "{e}");
        }
        // Parts written one by one make the same file as one write.
        let mut whole = vec![0u8; 64];
        fill(&mut whole, 9, 0);
        let mut parts = vec![0u8; 64];
        fill(&mut parts[..24], 9, 0);
        fill(&mut parts[24..], 9, 24);
        assert_eq!(whole, parts);
    }

    #[test]
    fn sizes_and_orders() {
        assert_eq!(size(256 * 1024), "256 KiB");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(size(3 << 19), "1536 KiB");
        assert_eq!(parse_order(order(123).as_bytes()), Some(123));
        assert_eq!(parse_order(b"write 5"), None);
    }
}
