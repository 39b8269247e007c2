//! One-way streaming and fan-in throughput of shmex, iceoryx2 and a Unix
//! socket, and shmex's task distribution (`tasks-<W>w-pf<P>`: tasks
//! submitted here, taken and acked by W worker processes with prefetch
//! limit P), between processes (elements = messages, or acked tasks).

mod common;

fn main() {
    common::run(|s| !s.case.is_latency());
}
