//! The supervisor's event log: one line per event on stdout, flushed at
//! once; human-readable, or one JSON object per line (`--json`).
//!
//! Every JSON line has `"event"` first and `"unix_ms"` (wall-clock time of
//! the line) last; the fields in between depend on the event:
//!
//! | event | fields |
//! |---|---|
//! | `start` | namespace, root, node, id, pid, exchanges, hung_after_ms, tick_ms, kill_hung, pidfd |
//! | `exchange_up` | exchange, pattern, persistent, created |
//! | `exchange_recreated` | exchange, pattern, persistent, created, reason (`removed` / `replaced`) |
//! | `dead` | node, id, pid (its exit was seen through its pidfd) |
//! | `reclaimed` | node, id, pid, by (`supervisor`, or `other`: another pass, e.g. a heartbeat thread's); when by the supervisor: ports, chunks, requests_failed, exchanges_down, busy, pass_nodes, reclaim_us, and detect_us when its exit was seen |
//! | `left` | node, id, pid (exited after leaving the namespace cleanly) |
//! | `hung` | node, id, pid, heartbeat_age_ms, killed (with `--kill-hung`), error |
//! | `alive` | node, id, pid, heartbeat_age_ms, hung_ms |
//! | `busy` | exchanges (a reclaim pass skipped them: a live port is inside an operation) |
//! | `error` | message |
//! | `stop` | signal |
//!
//! A reclaim pass reports totals (ports, chunks, requests) for all the nodes
//! it reclaimed; `pass_nodes` says how many shared them.

use crate::json::Json;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where events go.
pub struct Log {
    json: bool,
}

/// One event: its name, its JSON fields and its human-readable line.
pub struct Event {
    name: &'static str,
    fields: Vec<(&'static str, Json)>,
    text: String,
}

impl Event {
    /// An event called `name` (the JSON `"event"`) whose human form is `text`.
    pub fn new(name: &'static str, text: impl Into<String>) -> Event {
        Event {
            name,
            fields: Vec::new(),
            text: text.into(),
        }
    }

    /// Adds a JSON field.
    pub fn field(mut self, key: &'static str, value: Json) -> Event {
        self.fields.push((key, value));
        self
    }

    /// Adds the fields naming a node.
    pub fn node(self, node: &NodeRef) -> Event {
        self.field("node", Json::str(&node.name))
            .field("id", Json::Num(node.id.into()))
            .field("pid", Json::Num(node.pid.into()))
    }

    fn to_json(&self) -> Json {
        let mut fields = Vec::with_capacity(self.fields.len() + 2);
        fields.push(("event", Json::str(self.name)));
        fields.extend(self.fields.iter().cloned());
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        fields.push(("unix_ms", Json::Num(unix_ms)));
        Json::Object(fields)
    }
}

/// A node as the supervisor knows it: registry slot and process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// Registry slot.
    pub id: u32,
    /// Node name.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot).
    pub start_time: u64,
}

impl NodeRef {
    /// Same slot, same process.
    pub fn same(&self, other: &NodeRef) -> bool {
        self.id == other.id && self.pid == other.pid && self.start_time == other.start_time
    }

    /// `name (pid N)`, for human-readable lines.
    pub fn label(&self) -> String {
        format!("{} (pid {})", self.name, self.pid)
    }
}

impl From<&shmex::NodeInfo> for NodeRef {
    fn from(n: &shmex::NodeInfo) -> NodeRef {
        NodeRef {
            id: n.id,
            name: n.name.clone(),
            pid: n.pid,
            start_time: n.start_time,
        }
    }
}

impl Log {
    /// Human-readable lines, or JSON when `json`.
    pub fn new(json: bool) -> Log {
        Log { json }
    }

    /// Writes one event as one line and flushes it. A closed or failing
    /// stdout is ignored: losing the log must not stop supervision.
    pub fn emit(&self, event: Event) {
        let mut line = if self.json {
            event.to_json().to_string()
        } else {
            event.text
        };
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// A duration for humans: `180 µs`, `2.5 ms`, `1.2 s`.
pub fn human_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us} µs")
    } else if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `1 chunk`, `2 chunks`.
pub fn plural(n: impl Into<u64>, what: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Microseconds, saturated to `u64`.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_duration(Duration::from_micros(180)), "180 µs");
        assert_eq!(human_duration(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(human_duration(Duration::from_micros(306_400)), "306 ms");
        assert_eq!(human_duration(Duration::from_millis(1200)), "1.2 s");
        assert_eq!(plural(1u32, "port"), "1 port");
        assert_eq!(plural(0u32, "port"), "0 ports");
    }

    #[test]
    fn json_line() {
        let n = NodeRef {
            id: 3,
            name: "w\"1".into(),
            pid: 77,
            start_time: 5,
        };
        let e = Event::new("dead", "x").node(&n);
        let s = e.to_json().to_string();
        assert!(
            s.starts_with(r#"{"event":"dead","node":"w\"1","id":3,"pid":77,"unix_ms":"#),
            "{s}"
        );
        assert!(s.ends_with('}'));
    }
}
