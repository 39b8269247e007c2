//! Round-trip latency of shmex, iceoryx2, a Unix socket and the floors,
//! between two processes. Group names: `case/size/mode[/touched]`.

mod common;

fn main() {
    common::run(|s| s.case.is_latency());
}
