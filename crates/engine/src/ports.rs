//! Port blocks: each task gets `PORT_STRIDE` ports of its own (`ATELIER_PORT`…), the first
//! free block from `PORT_BASE`. A creation takes its task's id and block in one transaction and
//! holds the block in memory (`Inner::reserved_ports`) until the task's row holds it, so two
//! creations in flight never choose the same one.

use crate::error::{EngineError, Result};
use crate::inner::Inner;
use domain::TaskId;

/// First port handed to tasks; blocks are laid out every `PORT_STRIDE` ports from here.
const PORT_BASE: u32 = 20_000;
const PORT_STRIDE: u32 = 100;

/// A port block chosen for a task whose row is not written yet; released when dropped (the
/// creation ended: the row then holds the block, or the creation failed).
pub(crate) struct PortReservation<'a> {
    inner: &'a Inner,
    port: u16,
}

impl PortReservation<'_> {
    /// The first port of the block.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortReservation<'_> {
    fn drop(&mut self) {
        self.inner
            .reserved_ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.port);
    }
}

/// A new task id (committed, never reused: see `allocate_task_id`) and a free port block,
/// reserved until the returned guard is dropped.
pub(crate) fn reserve_id_and_ports(inner: &Inner) -> Result<(TaskId, PortReservation<'_>)> {
    let (id, port) = inner.store.write(|tx| {
        let mut used = tx.ports_in_use()?;
        let mut reserved = inner
            .reserved_ports
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        used.extend(reserved.iter().copied());
        let port = free_port_block(&used)?;
        let id = tx.allocate_task_id()?;
        reserved.insert(port);
        Ok::<_, EngineError>((id, port))
    })?;
    Ok((id, PortReservation { inner, port }))
}

/// The first free block of ports for a new task: blocks start at `PORT_BASE`, every
/// `PORT_STRIDE` ports, and must fit below 65536.
fn free_port_block(used: &[u16]) -> Result<u16> {
    (0u32..)
        .map(|k| PORT_BASE + k * PORT_STRIDE)
        .take_while(|p| *p + PORT_STRIDE <= u32::from(u16::MAX))
        .filter_map(|p| u16::try_from(p).ok())
        .find(|p| !used.contains(p))
        .ok_or_else(|| {
            EngineError::Conflict(
                "no free port block is left: delete finished tasks to free their ports".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_blocks_take_the_first_free_one() {
        assert_eq!(free_port_block(&[]).unwrap(), 20_000);
        assert_eq!(free_port_block(&[20_000, 20_200]).unwrap(), 20_100);
        let all: Vec<u16> = (0..455).map(|k| 20_000 + k * 100).collect();
        assert_eq!(*all.last().unwrap(), 65_400);
        assert!(matches!(
            free_port_block(&all),
            Err(EngineError::Conflict(_))
        ));
        assert_eq!(free_port_block(&all[..454]).unwrap(), 65_400);
    }
}
