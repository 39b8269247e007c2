//! One-way streaming and fan-in throughput of shmex, iceoryx2 and a Unix
//! socket, between processes (elements = messages).

mod common;

fn main() {
    common::run(|s| !s.case.is_latency());
}
