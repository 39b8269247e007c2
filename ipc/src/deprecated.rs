//! The names the verb renames of issue 17 replaced (see CHANGELOG.md),
//! kept for one release as deprecated one-line calls of the new ones.

use std::time::Duration;

use crate::{
    Client, DeadLetter, Delivery, Loan, OwnedLoan, Published, Publisher, RecvError, ResponseStream,
    SendError, StreamError, Submit, Submitter, Worker,
};

impl Client {
    /// Renamed to [`send`](Self::send).
    #[deprecated(note = "renamed to `send`")]
    pub fn request(&self, tag: u64, payload: &[u8]) -> Result<(), SendError> {
        self.send(tag, payload)
    }

    /// Renamed to [`send_loan`](Self::send_loan).
    #[deprecated(note = "renamed to `send_loan`")]
    pub fn send_request(&self, tag: u64, loan: Loan<'_>) -> Result<(), SendError> {
        self.send_loan(tag, loan)
    }
}

impl Publisher {
    /// Renamed to [`send`](Self::send).
    #[deprecated(note = "renamed to `send`")]
    pub fn publish(&self, key: &str, payload: &[u8]) -> Result<Published, SendError> {
        self.send(key, payload)
    }

    /// Renamed to [`send_loan`](Self::send_loan).
    #[deprecated(note = "renamed to `send_loan`")]
    pub fn publish_loan(&self, key: &str, loan: Loan<'_>) -> Result<Published, SendError> {
        self.send_loan(key, loan)
    }

    /// Renamed to [`send_owned`](Self::send_owned).
    #[deprecated(note = "renamed to `send_owned`")]
    pub fn publish_owned(&self, key: &str, loan: OwnedLoan) -> Result<Published, SendError> {
        self.send_owned(key, loan)
    }
}

impl Submitter {
    /// Renamed to [`send`](Self::send), which takes the priority and tag as
    /// a [`Submit`].
    #[deprecated(note = "renamed to `send(Submit::new().priority(p).tag(t), payload)`")]
    pub fn submit(&self, priority: u8, tag: u64, payload: &[u8]) -> Result<(), SendError> {
        self.send(Submit::new().priority(priority).tag(tag), payload)
    }

    /// Renamed to [`send_timeout`](Self::send_timeout), which takes the
    /// priority and tag as a [`Submit`].
    #[deprecated(
        note = "renamed to `send_timeout(Submit::new().priority(p).tag(t), payload, timeout)`"
    )]
    pub fn submit_timeout(
        &self,
        priority: u8,
        tag: u64,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_timeout(Submit::new().priority(priority).tag(tag), payload, timeout)
    }

    /// Renamed to [`send_loan`](Self::send_loan), which takes the priority
    /// and tag as a [`Submit`].
    #[deprecated(note = "renamed to `send_loan(Submit::new().priority(p).tag(t), loan)`")]
    pub fn submit_loan(&self, priority: u8, tag: u64, loan: Loan<'_>) -> Result<(), SendError> {
        self.send_loan(Submit::new().priority(priority).tag(tag), loan)
    }
}

impl Worker {
    /// Renamed to [`try_receive`](Self::try_receive).
    #[deprecated(note = "renamed to `try_receive`")]
    pub fn try_take(&self) -> Result<Option<Delivery<'_>>, RecvError> {
        self.try_receive()
    }

    /// Renamed to [`receive`](Self::receive).
    #[deprecated(note = "renamed to `receive`")]
    pub fn take(&self) -> Result<Delivery<'_>, RecvError> {
        self.receive()
    }

    /// Renamed to [`receive_timeout`](Self::receive_timeout).
    #[deprecated(note = "renamed to `receive_timeout`")]
    pub fn take_timeout(&self, timeout: Duration) -> Result<Delivery<'_>, RecvError> {
        self.receive_timeout(timeout)
    }

    /// Renamed to [`try_receive_dead_letter`](Self::try_receive_dead_letter).
    #[deprecated(note = "renamed to `try_receive_dead_letter`")]
    pub fn take_dead_letter(&self) -> Result<Option<DeadLetter<'_>>, RecvError> {
        self.try_receive_dead_letter()
    }
}

impl ResponseStream<'_> {
    /// Renamed to [`send`](Self::send) (which took a loan before; a loan
    /// now goes to [`send_loan`](Self::send_loan)).
    #[deprecated(note = "renamed to `send`")]
    pub fn send_copy(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.send(bytes)
    }

    /// Renamed to [`send_loan_timeout`](Self::send_loan_timeout).
    #[deprecated(note = "renamed to `send_loan_timeout`")]
    pub fn send_timeout(&mut self, loan: Loan<'_>, timeout: Duration) -> Result<(), StreamError> {
        self.send_loan_timeout(loan, timeout)
    }
}
