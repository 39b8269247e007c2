//! One module per system; each has a driving side (timed, in this process)
//! and a peer side (in `bench-peer`) for the cases it takes part in
//! (`memcpy` has no peer; `shmex-c` runs a C program of its own that forks
//! its peer).

use crate::{DriverSide, PeerArgs, PeerSide, Result, Run, Spec, System};

pub mod floor;
pub mod futex;
pub mod iceoryx2;
pub mod memcpy;
pub mod shmex;
pub mod shmex_c;
pub mod uds;

/// Creates the driving side of `system` for `spec` (cell `cell` of `run`),
/// before its peers start.
pub fn driver_side(
    run: &Run,
    cell: u32,
    spec: Spec,
    system: System,
) -> Result<Box<dyn DriverSide>> {
    match system {
        System::Shmex => shmex::driver(run, cell, spec, false),
        System::ShmexTyped => shmex::driver(run, cell, spec, true),
        System::ShmexC => shmex_c::driver(run, cell, spec),
        System::Iceoryx2 => iceoryx2::driver(run, cell, spec),
        System::Uds => uds::driver(run, cell, spec),
        System::Floor => floor::driver(run, cell, spec),
        System::Futex => futex::driver(run, cell, spec),
        System::Memcpy => memcpy::driver(run, cell, spec),
    }
}

/// Creates the peer side described by `args` (inside `bench-peer`).
pub fn peer_side(args: &PeerArgs) -> Result<Box<dyn PeerSide>> {
    match args.system {
        System::Shmex | System::ShmexTyped => shmex::peer(args),
        System::Iceoryx2 => iceoryx2::peer(args),
        System::Uds => uds::peer(args),
        System::Floor => floor::peer(args),
        System::Futex => futex::peer(args),
        System::Memcpy => Err(crate::err("memcpy runs in one process: it has no peer")),
        System::ShmexC => Err(crate::err(
            "shmex-c runs the C ping-pong, which forks its own peer",
        )),
    }
}
