//! One-way streaming and fan-in throughput of shmex, iceoryx2 and a Unix
//! socket, and shmex's task distribution (`tasks-<W>w-pf<P>`: tasks
//! submitted here, taken and acked by W worker processes with prefetch
//! limit P), between processes (elements = messages, or acked tasks), and
//! streamed responses (`stream-response`: one 64 MiB response in 256 KiB
//! chunks per iteration, bytes; `memcpy` of the same bytes as the floor).

mod common;

fn main() {
    common::run(|s| !s.case.is_latency());
}
