//! [`Submit`]: the options of one task submission.

/// The options of one task submission
/// ([`Submitter::send`](crate::Submitter::send) and friends): named instead
/// of positional, so a call site reads
/// `submitter.send(Submit::new().priority(3).tag(7), payload)`.
///
/// The default is priority 0 (lowest) and tag 0.
///
/// ```
/// use shmex::Submit;
/// assert_eq!(Submit::new(), Submit::default());
/// assert_ne!(Submit::new().priority(3).tag(7), Submit::new());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submit {
    pub(crate) priority: u8,
    pub(crate) tag: u64,
}

impl Submit {
    /// Priority 0, tag 0.
    #[must_use]
    pub fn new() -> Submit {
        Submit::default()
    }

    /// The task's priority: 0 .. [`PRIORITIES`](crate::PRIORITIES), higher
    /// first; a send with a priority out of range fails with
    /// [`SendError::InvalidPriority`](crate::SendError::InvalidPriority).
    #[must_use]
    pub fn priority(self, priority: u8) -> Submit {
        Submit { priority, ..self }
    }

    /// The task's tag, handed to the worker with the payload
    /// ([`Delivery::tag`](crate::Delivery::tag)).
    #[must_use]
    pub fn tag(self, tag: u64) -> Submit {
        Submit { tag, ..self }
    }
}
