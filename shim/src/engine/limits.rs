//! The store's resource limiter: enforces the plan's cap on the guest's linear memory.
//!
//! The plan caps the guest's *total* linear memory, while wasmtime's stock `StoreLimits`
//! caps each memory separately; a component (e.g. one built with the WASI adapter) has
//! several core instances and memories, so the stock limiter would let it use a multiple of
//! the cap. This limiter sums all memories of the store instead.
//!
//! Growth past the cap is refused, not trapped: `memory.grow` returns -1 and the guest's
//! allocator reports out-of-memory the way it would on any OS, instead of the cgroup
//! OOM-killing the whole container.

use wasmtime::ResourceLimiter;

/// Per-store memory accounting.
#[derive(Debug, Default)]
pub(crate) struct GuestLimiter {
    /// Cap on the sum of all linear memories, in bytes; `None` for no cap.
    max_memory: Option<usize>,
    /// Bytes currently granted to all linear memories of the store.
    granted: usize,
    /// A growth was refused already (logged once).
    refused: bool,
}

impl GuestLimiter {
    pub(crate) fn new(max_memory_bytes: Option<u64>) -> Self {
        Self {
            // A cap above the address space is no cap.
            max_memory: max_memory_bytes.and_then(|b| usize::try_from(b).ok()),
            granted: 0,
            refused: false,
        }
    }
}

impl GuestLimiter {
    /// Whether a memory growth was refused at the cap.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    /// The cap in bytes (`usize::MAX` for none).
    pub(crate) fn cap(&self) -> usize {
        self.max_memory.unwrap_or(usize::MAX)
    }

    /// Bytes granted to all memories so far: memories never shrink, so this is the peak.
    pub(crate) fn granted(&self) -> usize {
        self.granted
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self.granted.saturating_sub(current).saturating_add(desired);
        if let Some(cap) = self.max_memory.filter(|&cap| total > cap) {
            // Once per guest at warn (the reason a container ends badly must be in the log),
            // after that at debug: a guest may retry allocations many times.
            if !self.refused {
                self.refused = true;
                log::warn!(
                    "guest memory limit reached: growth to {} MiB refused (cap {} MiB, set below \
                     the container's memory limit)",
                    total >> 20,
                    cap >> 20
                );
            } else {
                log::debug!("refusing guest memory growth to {total} bytes in total");
            }
            return Ok(false);
        }
        // Counted before the growth happens. If wasmtime then fails to map the memory the
        // bytes stay counted: `memory_grow_failed` cannot tell that case from a failure that
        // happened before `memory_growing` was consulted, and subtracting in the latter case
        // would let a guest erode the cap. Over-counting after a host mmap failure is the
        // safe direction.
        self.granted = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by their declared maximum only; their memory is host memory
        // charged to the container's cgroup.
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_sum_of_all_memories() -> wasmtime::Result<()> {
        let mut limiter = GuestLimiter::new(Some(100));
        assert!(limiter.memory_growing(0, 60, None)?);
        // A second memory may only take what is left.
        assert!(!limiter.memory_growing(0, 50, None)?);
        assert!(limiter.memory_growing(0, 40, None)?);
        // Growing the first memory counts only the difference.
        assert!(!limiter.memory_growing(60, 61, None)?);
        Ok(())
    }

    #[test]
    fn no_cap_still_honours_declared_maximum() -> wasmtime::Result<()> {
        let mut limiter = GuestLimiter::new(None);
        assert!(limiter.memory_growing(0, 1 << 30, None)?);
        assert!(!limiter.memory_growing(0, 20, Some(10))?);
        Ok(())
    }
}
