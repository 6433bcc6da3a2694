//! A bounds-checked cursor over one reassembled payload, reading the protocol's basic data
//! types (fixed-length little-endian integers, length-encoded integers and strings,
//! NUL-terminated strings) and the writers for the same types.
//!
//! Every read that runs past the end of the payload is [`MysqlError::Malformed`] naming the
//! field, never a panic: the payload is complete by the time it gets here (framing is
//! `packet.rs`'s job), so running short means the server sent a bad packet, not that more bytes
//! are coming.

use super::MysqlError;

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The next byte without consuming it.
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MysqlError> {
        if n > self.bytes.len() {
            return Err(MysqlError::Malformed(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], MysqlError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, MysqlError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, MysqlError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, MysqlError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, MysqlError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// The rest of the payload (`string<EOF>`).
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// `int<lenenc>`. "If it is < 0xfb, treat it as a 1-byte integer. If it is 0xfc, it is
    /// followed by a 2-byte integer. If it is 0xfd, it is followed by a 3-byte integer. If it is
    /// 0xfe, it is followed by a 8-byte integer." 0xfb (NULL in a text row) and 0xff (the ERR
    /// header) are not integers.
    pub(super) fn lenenc_int(&mut self, what: &'static str) -> Result<u64, MysqlError> {
        match self.u8(what)? {
            small @ 0..=0xfa => Ok(u64::from(small)),
            0xfc => Ok(u64::from(self.u16(what)?)),
            0xfd => {
                let [a, b, c] = self.array(what)?;
                Ok(u64::from(u32::from_le_bytes([a, b, c, 0])))
            }
            0xfe => self.u64(what),
            _ => Err(MysqlError::Malformed(what)),
        }
    }

    /// `string<lenenc>`: a length-encoded integer, then that many bytes.
    pub(super) fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], MysqlError> {
        let length = self.lenenc_int(what)?;
        // A length past the payload cannot be satisfied, whatever it is.
        let length = usize::try_from(length).map_err(|_| MysqlError::Malformed(what))?;
        self.take(length, what)
    }

    /// `string<NUL>`: bytes up to a NUL, which is consumed and not returned.
    pub(super) fn nul_bytes(&mut self, what: &'static str) -> Result<&'a [u8], MysqlError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(MysqlError::Malformed(what))?;
        let text = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }
}

/// Appends `int<lenenc>`.
pub(super) fn put_lenenc_int(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0xfa => out.push(value as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(value as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(value as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// Appends `string<lenenc>`.
pub(super) fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc_int(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
