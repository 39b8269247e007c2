//! Reclaim: cleaning up after dead processes.
use crate::error::{OpenError, SegmentError};
use crate::node::{NodeInner, Reclaimed};
use std::sync::Arc;

pub(crate) fn reclaim_dead(_node: &Arc<NodeInner>) -> Result<Reclaimed, SegmentError> {
    Ok(Reclaimed::default())
}

pub(crate) fn remove_exchange(_node: &Arc<NodeInner>, _name: &str) -> Result<(), OpenError> {
    Ok(())
}
