//! A guest's linear memory as WASI reads and writes it: little-endian fields at guest
//! addresses, every access bounds-checked (a pointer outside the memory is `EFAULT` for the
//! guest, never a panic in the host).

/// An access outside the guest's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// The guest's memory, each access checked: what a host function reads and writes.
pub struct Guest<'m>(
    /// The guest's linear memory.
    pub &'m mut [u8],
);

/// One `poll_oneoff` subscription, as read from the guest.
pub(crate) struct Subscription {
    pub userdata: u64,
    pub kind: SubKind,
}

/// What a subscription waits for.
#[derive(Clone, Copy)]
pub(crate) enum SubKind {
    /// Clock `id`: `timeout` nanoseconds from now, or at `timeout` on that clock when
    /// `absolute`.
    Clock { id: u32, timeout: u64, absolute: bool },
    /// A descriptor becoming readable (`write` false) or writable.
    Fd { fd: u32, write: bool },
    /// A tag preview 1 does not define.
    Unknown,
}

/// One `poll_oneoff` event, to write for the guest.
pub(crate) struct Event {
    pub userdata: u64,
    pub error: u16,
    /// 0 clock, 1 fd_read, 2 fd_write.
    pub kind: u8,
    pub nbytes: u64,
    /// `eventrwflags::fd_readwrite_hangup`.
    pub hangup: bool,
}

/// Size of a `subscription` and of an `event` in guest memory.
const SUBSCRIPTION: u32 = 48;
const EVENT: u32 = 32;

impl Guest<'_> {
    /// `len` bytes at `ptr`.
    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Fault> {
        let end = (ptr as usize).checked_add(len as usize).ok_or(Fault)?;
        self.0.get(ptr as usize..end).ok_or(Fault)
    }

    /// `len` bytes at `ptr`, to write.
    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Fault> {
        let end = (ptr as usize).checked_add(len as usize).ok_or(Fault)?;
        self.0.get_mut(ptr as usize..end).ok_or(Fault)
    }

    /// Writes `data` at `ptr`.
    pub fn bytes(&mut self, ptr: u32, data: &[u8]) -> Result<(), Fault> {
        self.slice_mut(ptr, u32::try_from(data.len()).map_err(|_| Fault)?)?.copy_from_slice(data);
        Ok(())
    }

    /// Writes a `u32` at `ptr`.
    pub fn u32(&mut self, ptr: u32, value: u32) -> Result<(), Fault> {
        self.bytes(ptr, &value.to_le_bytes())
    }

    /// Writes a `u64` at `ptr`.
    pub fn u64(&mut self, ptr: u32, value: u64) -> Result<(), Fault> {
        self.bytes(ptr, &value.to_le_bytes())
    }

    fn read<const N: usize>(&self, ptr: u32) -> Result<[u8; N], Fault> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(ptr, N as u32)?);
        Ok(out)
    }

    fn at(base: u32, index: u32, size: u32) -> Result<u32, Fault> {
        index.checked_mul(size).and_then(|o| base.checked_add(o)).ok_or(Fault)
    }

    /// The `index`th `iovec` (`buf`, `buf_len`) of an array at `base`.
    pub(crate) fn iovec(&self, base: u32, index: u32) -> Result<(u32, u32), Fault> {
        let raw: [u8; 8] = self.read(Self::at(base, index, 8)?)?;
        Ok((u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]), u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]])))
    }

    /// The `index`th subscription of an array at `base`.
    pub(crate) fn subscription(&self, base: u32, index: u32) -> Result<Subscription, Fault> {
        let at = Self::at(base, index, SUBSCRIPTION)?;
        let raw: [u8; SUBSCRIPTION as usize] = self.read(at)?;
        let u64_at = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().unwrap_or_default());
        let kind = match raw[8] {
            0 => SubKind::Clock { id: u32_at(16), timeout: u64_at(24), absolute: raw[40] & 1 != 0 },
            1 => SubKind::Fd { fd: u32_at(16), write: false },
            2 => SubKind::Fd { fd: u32_at(16), write: true },
            _ => SubKind::Unknown,
        };
        Ok(Subscription { userdata: u64_at(0), kind })
    }

    /// Writes the `index`th event of an array at `base`.
    pub(crate) fn event(&mut self, base: u32, index: u32, event: &Event) -> Result<(), Fault> {
        let mut raw = [0u8; EVENT as usize];
        raw[0..8].copy_from_slice(&event.userdata.to_le_bytes());
        raw[8..10].copy_from_slice(&event.error.to_le_bytes());
        raw[10] = event.kind;
        raw[16..24].copy_from_slice(&event.nbytes.to_le_bytes());
        raw[24..26].copy_from_slice(&u16::from(event.hangup).to_le_bytes());
        self.bytes(Self::at(base, index, EVENT)?, &raw)
    }
}
