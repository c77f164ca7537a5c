//! The one cursor every L7 decoder reads untrusted bytes through, modelled on rustls's
//! `Reader` (`rustls/src/msgs/codec.rs`).
//!
//! Every read is checked and returns `None` when the input is too short, so decoder code never
//! indexes a slice and never computes an offset itself. Nested, length-prefixed structures are
//! read with [`Reader::sub`] and friends, which bound the inner reader to the declared length:
//! a lying length field can at worst make the inner parse fail, never read past its parent.

/// A forward-only cursor over a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    full: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { full: buf, rest: buf }
    }

    /// A reader over the same buffer positioned at absolute offset `pos` (for DNS compression
    /// pointers), or `None` past the end.
    pub(crate) fn at(&self, pos: usize) -> Option<Reader<'a>> {
        let rest = self.full.get(pos..)?;
        Some(Reader { full: self.full, rest })
    }

    /// The absolute offset of the next byte.
    pub(crate) fn position(&self) -> usize {
        self.full.len().saturating_sub(self.rest.len())
    }

    /// Bytes not yet read.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The unread bytes, without consuming them.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// Takes every unread byte.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.rest;
        self.rest = &[];
        rest
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// Reads a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian 24-bit integer.
    pub(crate) fn u24(&mut self) -> Option<u32> {
        let [a, b, c] = self.array()?;
        Some(u32::from_be_bytes([0, a, b, c]))
    }

    /// Reads a big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a QUIC variable-length integer (RFC 9000 section 16).
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let rest_len = match first >> 6 {
            0 => 0,
            1 => 1,
            2 => 3,
            _ => 7,
        };
        let mut value = u64::from(first & 0x3f);
        for &b in self.take(rest_len)? {
            value = (value << 8) | u64::from(b);
        }
        Some(value)
    }

    /// A reader bounded to the next `len` bytes, which this reader skips.
    pub(crate) fn sub(&mut self, len: usize) -> Option<Reader<'a>> {
        self.take(len).map(Reader::new)
    }

    /// A sub-reader whose length is the next byte.
    pub(crate) fn sub_u8(&mut self) -> Option<Reader<'a>> {
        let len = self.u8()?;
        self.sub(usize::from(len))
    }

    /// A sub-reader whose length is the next big-endian `u16`.
    pub(crate) fn sub_u16(&mut self) -> Option<Reader<'a>> {
        let len = self.u16()?;
        self.sub(usize::from(len))
    }

    /// `Some(())` only when every byte has been read: the "all consumed" check.
    pub(crate) fn expect_empty(&self) -> Option<()> {
        self.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fail_cleanly_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert!(r.expect_empty().is_some());
    }

    #[test]
    fn sub_reader_is_bounded_by_its_length_prefix() {
        let mut r = Reader::new(&[2, 0xaa, 0xbb, 0xcc]);
        let mut inner = r.sub_u8().unwrap();
        assert_eq!(inner.u16(), Some(0xaabb));
        assert_eq!(inner.u8(), None);
        assert_eq!(r.u8(), Some(0xcc));
    }

    #[test]
    fn lying_length_prefix_fails_without_consuming_past_parent() {
        let mut r = Reader::new(&[0xff, 0xff, 1]);
        assert!(r.sub_u16().is_none());
    }

    #[test]
    fn quic_varints_follow_rfc9000_examples() {
        for (bytes, value) in [
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c][..], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d][..], 494_878_333),
            (&[0x7b, 0xbd][..], 15_293),
            (&[0x25][..], 37),
            (&[0x40, 0x25][..], 37),
        ] {
            assert_eq!(Reader::new(bytes).varint(), Some(value));
        }
        assert_eq!(Reader::new(&[0x80, 1]).varint(), None);
    }

    #[test]
    fn at_repositions_for_compression_pointers() {
        let r = Reader::new(&[9, 8, 7]);
        assert_eq!(r.at(2).unwrap().u8(), Some(7));
        assert!(r.at(4).is_none());
        assert_eq!(r.at(3).unwrap().left(), 0);
    }
}
