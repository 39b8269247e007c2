//! What the machine is: CPU model, cores, kernel, load.

/// Facts about the machine a run measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo (lscpu's "Model name").
    pub cpu_model: String,
    /// Cores this process may use.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Whether /proc/cpuinfo shows the `hypervisor` flag (a virtual machine).
    pub virtualised: bool,
    /// 1-minute load average when read.
    pub load1: f64,
}

impl Machine {
    /// Reads the facts.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let cpu_model = field("model name").unwrap_or_else(|| "unknown".into());
        let virtualised = field("flags").is_some_and(|f| f.split(' ').any(|w| w == "hypervisor"));
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cores = crate::allowed_cores().len().max(1);
        Machine {
            cpu_model,
            cores,
            kernel,
            virtualised,
            load1: load_average(),
        }
    }
}

/// The 1-minute load average (0 when unreadable).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(0.0)
}

/// The commit of the shmex sources this crate was built against, with
/// `+dirty` when `core/` or `ipc/` had uncommitted changes (recorded by the
/// build script; "unknown" outside a git checkout).
pub fn shmex_commit() -> &'static str {
    env!("SHMEX_BENCH_SOURCE")
}

/// Percentage of CPU time (all cores) not idle during `window`, from
/// /proc/stat: what other processes use before a run starts (`None` when
/// unreadable).
pub fn cpu_busy_percent(window: std::time::Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((total, idle))
    }
    let (t1, i1) = sample()?;
    std::thread::sleep(window);
    let (t2, i2) = sample()?;
    let dt = t2.saturating_sub(t1);
    (dt > 0).then(|| 100.0 * (dt - i2.saturating_sub(i1).min(dt)) as f64 / dt as f64)
}
