//! Our own reader for classic pcap files (`pcap-savefile(5)`), the format `replay` spends
//! nearly all its time reading. libpcap's `pcap_next_ex` reads each record with two `fread`
//! calls through a 4 KiB stdio buffer (about 350,000 `read` system calls and two copies per
//! byte for a 1.4 GB file); this reader fills one fixed 1 MiB buffer with large `read`s and
//! hands out frames borrowed from it, so each byte is copied once, from the page cache, and
//! the peak memory is the buffer whatever the file size.
//!
//! # Format
//! A 24-byte file header (magic, version 2.4, time zone, accuracy, snapshot length, link type)
//! then records, each a 16-byte header (seconds, microseconds or nanoseconds, captured length,
//! original length) and the captured bytes. The magic gives the byte order and the timestamp
//! resolution: `a1b2c3d4` microseconds, `a1b23c4d` nanoseconds, in either order.
//!
//! # The same frames as libpcap
//! Only what [`Header::parse`] accepts is read here: the four magics, version 2.4, and a link
//! type `decode` knows with no FCS bits set. Anything else (pcapng, version 2.3 and older with
//! their swapped length fields, Kuznetzov's patched records, unknown link types) goes to
//! libpcap, so the two readers never disagree about a format. For the files read here, each
//! record is handled as libpcap 1.10 handles it, so the frames and timestamps are identical:
//! - a snapshot length of 0 or above 262,144 counts as 262,144 (`pcap_adjust_snapshot`);
//! - a captured length above 262,144 is an error (libpcap's "invalid packet capture length");
//! - a captured length above the snapshot length but not above 262,144 is cut to the
//!   snapshot length and the rest of the record skipped, as libpcap does;
//! - a zero-length record is an empty frame;
//! - seconds and sub-seconds are signed 32-bit values in a file of the host's byte order and
//!   unsigned ones in a file of the other order (libpcap assigns its `SWAPLONG`, an unsigned
//!   int, in the second case); nanoseconds are divided by 1000;
//! - end of file exactly at a record boundary ends the file; anywhere else it is an error.
//!
//! # Errors
//! A [`ReadError`] carries the byte offset of the record header where the file stops making
//! sense; every frame before it has been delivered (the same contract as libpcap's read
//! errors, plus the offset).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::io::{self, Read};

use crate::model::{LinkType, Timestamp};

/// libpcap's `MAXIMUM_SNAPLEN`: the largest record it accepts for every link type `decode`
/// reads.
pub const MAX_RECORD_BYTES: u32 = 262_144;

/// The file header's size.
pub const FILE_HEADER_BYTES: usize = 24;

/// A record header's size.
const RECORD_HEADER_BYTES: usize = 16;

/// The read buffer. It must hold the largest record with its header; 1 MiB makes a `read`
/// system call per 700 bulk packets and stays small against the 32 MB budget.
const BUFFER_BYTES: usize = 1 << 20;

const _: () = assert!(BUFFER_BYTES >= MAX_RECORD_BYTES as usize + RECORD_HEADER_BYTES);

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// What the file header says, once accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Multi-byte fields are big-endian.
    big_endian: bool,
    /// Sub-second fields are nanoseconds (microseconds otherwise).
    nanos: bool,
    /// The snapshot length, adjusted as libpcap adjusts it.
    snaplen: u32,
    /// The link type.
    pub link: LinkType,
}

impl Header {
    /// Accepts a classic pcap file header this reader handles the way libpcap does; `None`
    /// for anything else, which is then libpcap's to read.
    pub fn parse(bytes: &[u8; FILE_HEADER_BYTES]) -> Option<Header> {
        let (magic, rest) = bytes.split_first_chunk::<4>()?;
        let (big_endian, nanos) = match u32::from_le_bytes(*magic) {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            _ => return None,
        };
        let u16_at =
            |b: [u8; 2]| if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) };
        let u32_at =
            |b: [u8; 4]| if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
        let (major, rest) = rest.split_first_chunk::<2>()?;
        let (minor, rest) = rest.split_first_chunk::<2>()?;
        // Time zone and timestamp accuracy: always zero in practice, ignored by libpcap.
        let (_zone_and_accuracy, rest) = rest.split_first_chunk::<8>()?;
        let (snaplen, rest) = rest.split_first_chunk::<4>()?;
        let (linktype, _) = rest.split_first_chunk::<4>()?;
        if (u16_at(*major), u16_at(*minor)) != (2, 4) {
            return None;
        }
        // The upper 16 bits carry FCS information (`LT_LINKTYPE_EXT`), never set by the
        // writers we know of; leave such files to libpcap.
        let link = LinkType::from_linktype(i32::try_from(u32_at(*linktype)).ok()?);
        if matches!(link, LinkType::Other(_)) {
            return None;
        }
        let snaplen = match u32_at(*snaplen) {
            0 => MAX_RECORD_BYTES,
            n => n.min(MAX_RECORD_BYTES),
        };
        Some(Header { big_endian, nanos, snaplen, link })
    }

    fn u32_at(&self, b: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }

    /// A seconds or sub-seconds field as libpcap's `struct timeval` ends up holding it on a
    /// 64-bit host: sign-extended from a file in the host's byte order, zero-extended from a
    /// file in the other one (see the module docs).
    fn time_field(&self, raw: u32) -> i64 {
        if self.big_endian == cfg!(target_endian = "big") {
            i64::from(raw.cast_signed())
        } else {
            i64::from(raw)
        }
    }

    fn timestamp(&self, secs: u32, frac: u32) -> Timestamp {
        let secs = self.time_field(secs);
        let frac = self.time_field(frac);
        // Division by a non-zero constant cannot overflow for any i64 but MIN / -1.
        let micros = if self.nanos { frac.checked_div(1000).unwrap_or(0) } else { frac };
        Timestamp::from_parts(secs, micros)
    }
}

/// Where and why a classic pcap file stops making sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file ends inside a record header.
    #[error("the file ends {available} bytes into a 16-byte record header")]
    HeaderCut {
        /// Bytes of the header present.
        available: usize,
    },
    /// The file ends inside a record's captured bytes.
    #[error("a record of {captured} captured bytes runs past the end of the file")]
    RecordCut {
        /// The captured length the record header claims.
        captured: u32,
    },
    /// A record claims more captured bytes than any link type allows.
    #[error("a record claims {captured} captured bytes, more than the maximum of 262144")]
    RecordTooLarge {
        /// The captured length the record header claims.
        captured: u32,
    },
}

/// Why reading stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes at `offset` are not a record.
    #[error("corrupt at byte {offset}: {problem}")]
    Corrupt {
        /// The byte offset of the record header.
        offset: u64,
        /// What is wrong there.
        problem: Corruption,
    },
    /// The operating system failed to read.
    #[error("read failed at byte {offset}")]
    Io {
        /// The byte offset of the record being read.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// One record: its timestamp and captured bytes, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The capture time, in microseconds.
    pub ts: Timestamp,
    /// The captured bytes (at most the snapshot length).
    pub data: &'a [u8],
}

/// Reads the records of a classic pcap file from `input`, positioned just after the file
/// header.
pub struct Reader<R> {
    input: R,
    header: Header,
    buf: Box<[u8]>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// The file offset of `buf[pos]`.
    offset: u64,
    /// `input` has reported end of file.
    eof: bool,
}

impl<R: Read> Reader<R> {
    /// A reader of the records that follow a file header accepted as `header`.
    pub fn new(input: R, header: Header) -> Self {
        Reader {
            input,
            header,
            buf: vec![0; BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: FILE_HEADER_BYTES as u64,
            eof: false,
        }
    }

    /// Calls `f` with every record, in order, until a clean end of file.
    ///
    /// The records in the buffer are walked as a slice (no per-record refill check, offset
    /// bookkeeping or `Result`); the buffer is refilled only when the next record does not
    /// fit in what is left.
    ///
    /// # Errors
    /// [`ReadError`] with the offset of the record header that could not be read; every
    /// record before it was delivered. The reader stops there: a later call delivers
    /// nothing.
    pub fn for_each(&mut self, mut f: impl FnMut(Record<'_>)) -> Result<(), ReadError> {
        let header = self.header;
        loop {
            let unread = self.buf.get(self.pos..self.end).unwrap_or_default();
            let mut rest = unread;
            // The first record that is not wholly in the buffer, or is too large.
            let mut problem = None;
            while let Some((fields, body)) = rest.split_first_chunk::<RECORD_HEADER_BYTES>() {
                let [secs, frac, captured, _original] = split_fields(fields);
                let captured = header.u32_at(captured);
                if captured > MAX_RECORD_BYTES {
                    problem = Some(Corruption::RecordTooLarge { captured });
                    break;
                }
                // At most 262,144 (checked above), so the cast is lossless.
                let Some((data, tail)) = body.split_at_checked(captured as usize) else {
                    problem = Some(Corruption::RecordCut { captured });
                    break;
                };
                let kept = data.get(..header.snaplen as usize).unwrap_or(data);
                let ts = header.timestamp(header.u32_at(secs), header.u32_at(frac));
                f(Record { ts, data: kept });
                rest = tail;
            }
            let done = unread.len().saturating_sub(rest.len());
            self.pos = self.pos.saturating_add(done);
            self.offset = self.offset.saturating_add(done as u64);
            let need = match problem {
                Some(Corruption::RecordTooLarge { .. }) => return Err(self.corrupt(problem)),
                Some(Corruption::RecordCut { captured }) => {
                    RECORD_HEADER_BYTES.saturating_add(captured as usize)
                }
                _ => RECORD_HEADER_BYTES,
            };
            self.fill(need)?;
            match self.available() {
                0 => return Ok(()),
                n if n < RECORD_HEADER_BYTES => {
                    let problem = Some(Corruption::HeaderCut { available: n });
                    return Err(self.corrupt(problem));
                }
                n if n < need => return Err(self.corrupt(problem)),
                _ => {}
            }
        }
    }

    /// Stops the reader and reports `problem` at the current record.
    #[cold]
    fn corrupt(&mut self, problem: Option<Corruption>) -> ReadError {
        let offset = self.offset;
        self.stop();
        let problem = problem.unwrap_or(Corruption::HeaderCut { available: 0 });
        ReadError::Corrupt { offset, problem }
    }

    fn available(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Makes every later call return `None`: the reader does not resynchronise after damage.
    fn stop(&mut self) {
        self.pos = self.end;
        self.eof = true;
    }

    /// Moves the unread bytes to the front of the buffer and reads until it is full or the
    /// input ends, so that at least `need` bytes are available unless the file is shorter.
    #[cold]
    fn fill(&mut self, need: usize) -> Result<(), ReadError> {
        if self.eof || self.available() >= need {
            return Ok(());
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end = self.available();
        self.pos = 0;
        while self.end < self.buf.len() {
            let Some(free) = self.buf.get_mut(self.end..) else { break };
            match self.input.read(free) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end = self.end.saturating_add(n).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let offset = self.offset;
                    self.stop();
                    return Err(ReadError::Io { offset, source });
                }
            }
        }
        Ok(())
    }
}

/// The four 32-bit fields of a record header, in file order.
fn split_fields(h: &[u8; RECORD_HEADER_BYTES]) -> [[u8; 4]; 4] {
    let mut out = [[0; 4]; 4];
    for (field, chunk) in out.iter_mut().zip(h.chunks_exact(4)) {
        field.copy_from_slice(chunk);
    }
    out
}
