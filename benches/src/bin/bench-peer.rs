//! The other side of every benchmark case: started by the measuring process
//! (`compare` or a criterion bench) with the case on its command line, it
//! sets up, prints `ready`, then runs batches on command (see
//! `shmex_benches::PeerProc`). Not meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = shmex_benches::PeerArgs::parse(&args).and_then(|a| shmex_benches::peer_main(&a));
    if let Err(e) = result {
        eprintln!("bench-peer {}: {e}", args.join(" "));
        std::process::exit(1);
    }
}
