//! The ports a sender delivers to (`Targets`), cached and refreshed when
//! the port table changes.

use super::*;

/// A cached view of the ports a sender delivers to, refreshed when the
/// exchange's port epoch changes.
#[derive(Default)]
pub(crate) struct Targets {
    epoch: Option<u32>,
    pub list: Vec<Target>,
    /// The last routing key matched against `list`, and the indices into
    /// `list` it matched (publishers usually repeat keys).
    last_key: Option<String>,
    pub matched: Vec<usize>,
    /// When a full target was last checked for a dead process.
    last_dead_check: Option<std::time::Instant>,
    /// A full target's process was found dead: the next send runs a
    /// reclaim pass first (it cannot run inside the send's operation).
    reclaim_wanted: bool,
}

/// One port a sender delivers to.
pub(crate) struct Target {
    pub index: u32,
    /// The port's generation when the target was read: deliveries are
    /// stamped with it ([`stamp`]).
    pub generation: u32,
    pub node: u32,
    pub tag: u64,
    pub topic: Option<crate::topic::Topic>,
    /// This sender's last reading of the port's inbox head.
    pub head: u32,
    /// The port owner's node key (`node::node_key`).
    pub owner: u64,
}

impl Targets {
    /// Called when a delivery found a target's inbox full: at most every
    /// 100 ms, checks whether the process of one of the targets is gone, and
    /// if so asks for a reclaim pass before the next send.
    pub fn note_full(&mut self, node: &NodeInner) {
        let now = std::time::Instant::now();
        if self
            .last_dead_check
            .is_some_and(|t| now.duration_since(t) < SERVER_CHECK_INTERVAL)
        {
            return;
        }
        self.last_dead_check = Some(now);
        if self.list.iter().any(|t| !node.owner_alive(t.owner)) {
            self.reclaim_wanted = true;
        }
    }

    /// Runs the reclaim pass [`note_full`](Self::note_full) asked for.
    /// Call before entering the send's operation.
    pub fn reclaim_if_wanted(&mut self, ex: &ExchangeInner) {
        if std::mem::take(&mut self.reclaim_wanted) {
            ex.reclaim_now();
        }
    }

    /// Brings the list up to date with the port table (ports of `role`).
    pub fn refresh(&mut self, ex: &ExchangeInner, role: Role) {
        let epoch = ex.ports_epoch();
        if self.epoch == Some(epoch) {
            return;
        }
        self.list.clear();
        self.last_key = None;
        for i in 0..ex.limits.max_ports {
            let Some(p) = ex.port(i) else { break };
            // Read like a seqlock: the generation first, the fields, then
            // the generation again (`attach` moves it before it writes
            // them), so a target never pairs one attachment's generation
            // with the next one's pattern or node.
            let generation = p.generation.load(Ordering::Acquire);
            if p.state.load(Ordering::Acquire) != PORT_ACTIVE
                || p.role.load(Ordering::Relaxed) != role as u32
            {
                continue;
            }
            let topic = if role == Role::Subscriber {
                let len = p.pattern_len.load(Ordering::Relaxed) as usize;
                let bytes = load_bytes(&p.pattern, len);
                // A pattern that does not parse matches nothing.
                match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| crate::topic::Topic::parse(s).ok())
                {
                    Some(t) => Some(t),
                    None => continue,
                }
            } else {
                None
            };
            let Some(ring) = ex.ring(i) else { break };
            let target = Target {
                index: i,
                generation,
                node: p.node.load(Ordering::Relaxed),
                tag: p.tag.load(Ordering::Relaxed),
                topic,
                head: ring.head(),
                owner: p.owner.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if p.generation.load(Ordering::Relaxed) != generation {
                // Re-attached meanwhile (the epoch moved too): the next
                // refresh reads the new port.
                continue;
            }
            self.list.push(target);
        }
        self.epoch = Some(epoch);
    }

    /// Checks `key` and sets `matched` to the indices into `list` of the
    /// subscribers whose pattern matches it. Both are cached for the last key.
    pub fn match_key(&mut self, key: &str) -> Result<(), &'static str> {
        if self.last_key.as_deref() != Some(key) {
            crate::topic::check_key(key)?;
            self.matched.clear();
            for (i, t) in self.list.iter().enumerate() {
                if t.topic.as_ref().is_some_and(|p| p.matches(key)) {
                    self.matched.push(i);
                }
            }
            match &mut self.last_key {
                Some(k) => {
                    k.clear();
                    k.push_str(key);
                }
                None => self.last_key = Some(key.to_string()),
            }
        }
        Ok(())
    }
}
