//! [`Limits`]: the sizes of an exchange, fixed at creation, their setters
//! and their validation ([`Limits::segment_size`]).

use crate::error::OpenError;
use crate::layout::{ExchangeLayout, RawLimits};
use crate::pattern::Pattern;

/// Largest exchange segment [`Limits::segment_size`] accepts (64 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 64 << 30;
const MIN_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1);
const MAX_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Sizes of an exchange, fixed at creation. Built from
/// [`Limits::default`] with the setters named like the fields:
/// `Limits::default().chunk_size(64).chunk_count(16)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload in bytes (1 B ..= 1 GiB). Default 4096.
    pub chunk_size: usize,
    /// Chunks in the pool: payloads that can be in flight at once across the
    /// whole exchange (1 ..= 2^24). Default 256. Chunks released to a port's
    /// caches (return ring, spare, deferred release) stay reachable: a loan
    /// that finds the pool dry empties every port's caches into it first.
    pub chunk_count: u32,
    /// Descriptors each port's inbox holds; a power of two (2 ..= 2^20).
    /// Default 64.
    pub queue_depth: u32,
    /// Ports that can be attached at once (1 ..= 1024). Default 16.
    pub max_ports: u32,
    /// File mode of the segment: 0o600 (default), or 0o660, which is allowed
    /// only in a namespace shared with a group
    /// ([`NodeBuilder::share_group`](crate::NodeBuilder::share_group)),
    /// where every segment is 0660 anyway.
    pub mode: u32,
    /// Task exchanges: how long a worker may hold a task unacknowledged
    /// before it is taken back and redelivered (1 ms ..= 7 days, default
    /// 30 s).
    pub ack_timeout: std::time::Duration,
    /// Task exchanges: deliveries after which an unacknowledged task goes to
    /// the dead-letter queue instead of being redelivered (1 ..= 255,
    /// default 5).
    pub max_deliveries: u32,
    /// Keep the exchange up when its creator dies and when its last handle
    /// closes (default `false`: a transient exchange goes down when its
    /// creator dies, and is removed when its last handle closes). A
    /// persistent exchange is removed only by
    /// [`Node::remove_exchange`](crate::Node::remove_exchange).
    pub persistent: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk_size: 4096,
            chunk_count: 256,
            queue_depth: 64,
            max_ports: 16,
            mode: 0o600,
            ack_timeout: std::time::Duration::from_secs(30),
            max_deliveries: 5,
            persistent: false,
        }
    }
}

impl Limits {
    pub(crate) fn raw(&self, pattern: Pattern) -> RawLimits {
        RawLimits {
            tasks: pattern == Pattern::Tasks,
            chunk_size: self.chunk_size as u64,
            chunk_count: self.chunk_count,
            queue_depth: self.queue_depth,
            max_ports: self.max_ports,
        }
    }

    /// Bytes of shared memory an exchange of `pattern` with these limits
    /// needs, or why the limits are invalid. Compare with the free space of
    /// the root folder (containers often give `/dev/shm` only 64 MiB).
    pub fn segment_size(&self, pattern: Pattern) -> Result<usize, OpenError> {
        if self.mode != 0o600 && self.mode != 0o660 {
            return Err(OpenError::InvalidLimits {
                reason: format!("mode {:o} must be 600 or 660", self.mode),
            });
        }
        if pattern == Pattern::Tasks
            && !(MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(&self.ack_timeout)
        {
            return Err(OpenError::InvalidLimits {
                reason: format!(
                    "ack_timeout {} ms not in 1 ms..=7 days",
                    self.ack_timeout.as_millis()
                ),
            });
        }
        if pattern == Pattern::Tasks && !(1..=255).contains(&self.max_deliveries) {
            return Err(OpenError::InvalidLimits {
                reason: format!("max_deliveries {} not in 1..=255", self.max_deliveries),
            });
        }
        let total = ExchangeLayout::compute(&self.raw(pattern))
            .map(|l| l.total)
            .map_err(|reason| OpenError::InvalidLimits { reason })?;
        if total as u64 > MAX_SEGMENT_SIZE {
            return Err(OpenError::InvalidLimits {
                reason: format!(
                    "the segment would need {total} bytes, more than the {MAX_SEGMENT_SIZE} allowed"
                ),
            });
        }
        Ok(total)
    }
}

/// Chainable setters, one per field and named like it, each consuming and
/// returning the limits. They never fail: a value out of range is reported by
/// [`Limits::segment_size`] and when the exchange is created.
///
/// ```
/// use shmex::{Limits, Pattern};
///
/// let limits = Limits::default().chunk_size(64).chunk_count(16);
/// assert_eq!((limits.chunk_size, limits.chunk_count), (64, 16));
/// assert!(limits.segment_size(Pattern::FanIn).is_ok());
/// assert!(Limits::default().chunk_count(0).segment_size(Pattern::FanIn).is_err());
///
/// // Fields can still be read and assigned.
/// let mut limits = Limits::default();
/// limits.persistent = true;
/// assert!(limits.persistent);
/// ```
///
/// The struct is `#[non_exhaustive]`: outside this crate it cannot be
/// written as a literal, so fields added later break no caller.
///
/// ```compile_fail,E0639
/// let limits = shmex::Limits {
///     chunk_size: 64,
///     ..shmex::Limits::default()
/// };
/// ```
impl Limits {
    /// Sets the largest payload in bytes: 1 B ..= 1 GiB (default 4096).
    #[must_use]
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets the chunks in the pool, the payloads that can be in flight at
    /// once across the whole exchange: 1 ..= 2^24 (default 256).
    #[must_use]
    pub fn chunk_count(mut self, chunk_count: u32) -> Self {
        self.chunk_count = chunk_count;
        self
    }

    /// Sets the descriptors each port's inbox holds: a power of two,
    /// 2 ..= 2^20 (default 64).
    #[must_use]
    pub fn queue_depth(mut self, queue_depth: u32) -> Self {
        self.queue_depth = queue_depth;
        self
    }

    /// Sets the ports that can be attached at once: 1 ..= 1024 (default 16).
    #[must_use]
    pub fn max_ports(mut self, max_ports: u32) -> Self {
        self.max_ports = max_ports;
        self
    }

    /// Sets the file mode of the segment: 0o600 (default), or 0o660, which
    /// is allowed only in a namespace shared with a group
    /// ([`NodeBuilder::share_group`](crate::NodeBuilder::share_group)).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Task exchanges: sets how long a worker may hold a task
    /// unacknowledged before it is taken back and redelivered:
    /// 1 ms ..= 7 days (default 30 s).
    #[must_use]
    pub fn ack_timeout(mut self, ack_timeout: std::time::Duration) -> Self {
        self.ack_timeout = ack_timeout;
        self
    }

    /// Task exchanges: sets the deliveries after which an unacknowledged
    /// task goes to the dead-letter queue instead of being redelivered:
    /// 1 ..= 255 (default 5).
    #[must_use]
    pub fn max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries;
        self
    }

    /// Sets whether the exchange stays up when its creator dies and when its
    /// last handle closes (default `false`); a persistent exchange is
    /// removed only by
    /// [`Node::remove_exchange`](crate::Node::remove_exchange).
    #[must_use]
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }
}
