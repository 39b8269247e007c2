//! The message exchange patterns (`Pattern`): the one word every layer
//! uses to tell exchanges apart, with its code in the segment header.

/// Which message exchange pattern an exchange serves; fixes the roles its
/// ports may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Clients send tagged requests, servers answer each once.
    RequestResponse,
    /// Publishers publish under routing keys; subscribers receive what matches
    /// their topic pattern.
    PublishSubscribe,
    /// Many producers, one consumer.
    FanIn,
    /// Task distribution: submitters queue tasks, workers take them within
    /// a prefetch limit and ack or nack each; unacked tasks are redelivered.
    Tasks,
}

impl Pattern {
    /// Every pattern, in the order of their codes (the C binding's
    /// `SHMEX_PATTERN_*` values 1, 2, 3, 4).
    pub const ALL: [Pattern; 4] = [
        Pattern::RequestResponse,
        Pattern::PublishSubscribe,
        Pattern::FanIn,
        Pattern::Tasks,
    ];

    pub(crate) fn code(self) -> u32 {
        match self {
            Pattern::RequestResponse => 1,
            Pattern::PublishSubscribe => 2,
            Pattern::FanIn => 3,
            Pattern::Tasks => 4,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Pattern> {
        match code {
            1 => Some(Pattern::RequestResponse),
            2 => Some(Pattern::PublishSubscribe),
            3 => Some(Pattern::FanIn),
            4 => Some(Pattern::Tasks),
            _ => None,
        }
    }

    /// The pattern's one spelling: `request-response`, `publish-subscribe`,
    /// `fan-in`, `tasks`. The CLI (`shmex ls`, the supervisor's config and
    /// log), the docs and the C header's `SHMEX_PATTERN_*` names (upper case,
    /// `_` for `-`) use it; [`FromStr`](std::str::FromStr) parses it back
    /// (and also the older `pubsub`, `rpc`, `fanin`, `task-distribution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::RequestResponse => "request-response",
            Pattern::PublishSubscribe => "publish-subscribe",
            Pattern::FanIn => "fan-in",
            Pattern::Tasks => "tasks",
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "request-response" | "rpc" => Ok(Pattern::RequestResponse),
            "publish-subscribe" | "pubsub" => Ok(Pattern::PublishSubscribe),
            "fan-in" | "fanin" => Ok(Pattern::FanIn),
            "tasks" | "task-distribution" => Ok(Pattern::Tasks),
            _ => Err(format!(
                "unknown pattern {s:?} (request-response, publish-subscribe, fan-in, tasks)"
            )),
        }
    }
}
