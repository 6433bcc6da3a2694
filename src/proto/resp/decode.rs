//! Decoding one RESP2 or RESP3 reply from the front of a buffer.
//!
//! Two passes over the same grammar: the first frames the reply (checks every byte and limit,
//! finds where it ends) without allocating, the second builds the [`Value`] from bytes now known
//! to be complete and valid. So incomplete input costs no allocation, and a declared length or
//! count is refused from its header, before anything it announces is waited for. Both passes
//! recurse once per aggregate level, at most [`RESP_NESTING_DEPTH_MAX`] deep.
//!
//! Spec quotes are from RESP3.md (redis/redis-specifications), which also describes RESP2's
//! types, and from the RESP2 protocol page for the RESP2 nulls.
//!
//! It does not decode streamed RESP3 strings or aggregates (a typed error), and does not keep
//! attributes; it does not know which command a reply answers.

use super::{
    Decode, Limit, RESP_AGGREGATE_ELEMENTS_MAX, RESP_BULK_BYTES_MAX, RESP_LINE_BYTES_MAX,
    RESP_NESTING_DEPTH_MAX, RESP_REPLY_BYTES_MAX, RespError, Value,
};

/// Decodes the reply at the front of `buf`. `Partial` when `buf` ends before the reply does
/// (nothing consumed, nothing allocated); otherwise the reply and how many bytes it used, the
/// rest being the next reply's. Errors are final: the bytes can never become a valid reply.
pub fn decode_value(buf: &[u8]) -> Result<Decode<Value>, RespError> {
    Ok(match decode_reply(buf)? {
        Decoded::Partial { .. } => Decode::Partial,
        Decoded::Complete { value, consumed } => Decode::Complete { value, consumed },
    })
}

/// [`decode_value`] with a hint for the engine.
pub(super) enum Decoded {
    /// Nothing can be decided, a value or an error, before the buffer holds at least `needed`
    /// bytes: a lower bound on the position of the next byte that matters.
    Partial {
        needed: usize,
    },
    Complete {
        value: Value,
        consumed: usize,
    },
}

pub(super) fn decode_reply(buf: &[u8]) -> Result<Decoded, RespError> {
    let consumed = match frame(buf)? {
        Framed::Partial { needed } => return Ok(Decoded::Partial { needed }),
        Framed::Complete { consumed } => consumed,
    };
    let mut reader = Reader::new(&buf[..consumed]);
    match reader.read(0) {
        Ok(value) => Ok(Decoded::Complete { value, consumed }),
        Err(Stop::Error(error)) => Err(error),
        // The first pass framed exactly these bytes, and the second walks the same grammar
        // over them, so it cannot run short; if it ever did, waiting is the harmless answer.
        Err(Stop::Partial { needed }) => Ok(Decoded::Partial { needed }),
    }
}

/// Where one reply ends, checked but not built.
pub(super) enum Framed {
    Partial { needed: usize },
    Complete { consumed: usize },
}

pub(super) fn frame(buf: &[u8]) -> Result<Framed, RespError> {
    let mut reader = Reader::new(buf);
    match reader.skip(0) {
        Ok(()) => Ok(Framed::Complete {
            consumed: reader.pos,
        }),
        Err(Stop::Error(error)) => Err(error),
        // The reader sees at most RESP_REPLY_BYTES_MAX bytes, so a reply that needs more is
        // refused here, whether its bytes arrive in one read or many.
        Err(Stop::Partial { needed }) if needed > RESP_REPLY_BYTES_MAX => {
            Err(RespError::TooLarge(Limit::ReplyBytes))
        }
        Err(Stop::Partial { needed }) => Ok(Framed::Partial { needed }),
    }
}

/// Why a pass stopped before the end of a reply.
enum Stop {
    /// The buffer ends first; it must hold at least `needed` bytes before anything more can be
    /// decided (so an engine that skips decoding until then never refuses bytes later than a
    /// decoder fed everything at once).
    Partial {
        needed: usize,
    },
    Error(RespError),
}

impl From<RespError> for Stop {
    fn from(error: RespError) -> Stop {
        Stop::Error(error)
    }
}

type Step<T> = Result<T, Stop>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

/// One item's header, and for simple types the whole item, borrowed from the buffer.
enum Header<'a> {
    SimpleString(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    BulkString(&'a [u8]),
    Null,
    Double(f64),
    Boolean(bool),
    BigNumber(&'a [u8]),
    Verbatim([u8; 3], &'a [u8]),
    /// The count as sent: elements, or pairs for maps and attributes. Within the limit.
    Aggregate(Aggregate, usize),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        // A reply needing more than the limit runs out of input and is refused in `frame`.
        let visible = buf.len().min(RESP_REPLY_BYTES_MAX);
        Reader {
            buf: &buf[..visible],
            pos: 0,
        }
    }

    fn type_byte(&mut self) -> Step<u8> {
        let byte = *self.buf.get(self.pos).ok_or(Stop::Partial {
            needed: self.pos + 1,
        })?;
        self.pos += 1;
        Ok(byte)
    }

    /// The text up to the next CRLF, which is consumed too.
    fn line(&mut self) -> Step<&'a [u8]> {
        let start = self.pos;
        let window_end = self.buf.len().min(start + RESP_LINE_BYTES_MAX + 1);
        let window = &self.buf[start..window_end];
        // "Simple strings cannot contain the <CR> nor the <LF> characters inside." The same
        // holds for every line-terminated item and length, so the first CR or LF must be the
        // CRLF that ends the line; a bare LF is never a line end.
        match window.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(at) if window[at] == b'\n' => Err(RespError::BadLineEnd.into()),
            Some(at) => {
                let cr = start + at;
                match self.buf.get(cr + 1) {
                    None => Err(Stop::Partial { needed: cr + 2 }),
                    Some(b'\n') => {
                        self.pos = cr + 2;
                        Ok(&self.buf[start..cr])
                    }
                    Some(_) => Err(RespError::BadLineEnd.into()),
                }
            }
            None if window.len() > RESP_LINE_BYTES_MAX => {
                Err(RespError::TooLarge(Limit::LineBytes).into())
            }
            None => Err(Stop::Partial {
                needed: self.buf.len() + 1,
            }),
        }
    }

    /// A length or count line: `None` for a RESP2 null (`-1`) where `null_allowed`.
    fn length(&mut self, null_allowed: bool) -> Step<Option<u64>> {
        let line = self.line()?;
        // RESP3 streamed types: "$?<CR><LF>" and "*?<CR><LF>" announce a length not known in
        // advance.
        if line == b"?" {
            return Err(RespError::Unsupported("streamed strings and aggregates").into());
        }
        // RESP2: "a Null Bulk String ... $-1\r\n" and "Null Arrays ... *-1\r\n". No other
        // negative length exists.
        if null_allowed && line == b"-1" {
            return Ok(None);
        }
        // "The length field is limited to the range of an unsigned 64 bit integer." Decimal
        // digits only; a value past u64 saturates and is then over every limit.
        if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
            return Err(RespError::BadLength.into());
        }
        Ok(Some(line.iter().fold(0u64, |n, digit| {
            n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
        })))
    }

    /// A blob's declared length, refused over the limit before its data is waited for.
    fn blob_length(length: u64) -> Step<usize> {
        match usize::try_from(length) {
            Ok(length) if length <= RESP_BULK_BYTES_MAX => Ok(length),
            _ => Err(RespError::TooLarge(Limit::BulkBytes).into()),
        }
    }

    /// An aggregate's declared count (`per_entry` elements each), refused over the limit.
    fn count(count: u64, per_entry: usize) -> Step<usize> {
        match usize::try_from(count) {
            Ok(count) if count <= RESP_AGGREGATE_ELEMENTS_MAX / per_entry => Ok(count),
            _ => Err(RespError::TooLarge(Limit::AggregateElements).into()),
        }
    }

    /// `length` bytes of data and the CRLF after them.
    fn blob(&mut self, length: usize) -> Step<&'a [u8]> {
        let start = self.pos;
        let end = start + length;
        // "$<length>\r\n<bytes>\r\n": the data is followed by CRLF, checked byte by byte as it
        // arrives so a wrong byte is refused at once. Nothing in the data itself can be wrong,
        // so the next byte that decides anything is the CR (then the LF).
        for (at, expected) in [(end, b'\r'), (end + 1, b'\n')] {
            match self.buf.get(at) {
                None => return Err(Stop::Partial { needed: at + 1 }),
                Some(&byte) if byte != expected => return Err(RespError::BadLineEnd.into()),
                Some(_) => {}
            }
        }
        self.pos = end + 2;
        Ok(&self.buf[start..end])
    }

    fn header(&mut self) -> Step<Header<'a>> {
        Ok(match self.type_byte()? {
            b'+' => Header::SimpleString(self.line()?),
            b'-' => Header::Error(self.line()?),
            // "Valid numbers are in the range of the signed 64 bit integer."
            b':' => Header::Integer(parse_integer(self.line()?).ok_or(bad("number"))?),
            b'$' => match self.length(true)? {
                None => Header::Null,
                Some(length) => Header::BulkString(self.blob(Self::blob_length(length)?)?),
            },
            // "The general form is !<length>\r\n<bytes>\r\n. It is exactly like the String
            // type."
            b'!' => {
                let length = self.length(false)?.ok_or(RespError::BadLength)?;
                Header::Error(self.blob(Self::blob_length(length)?)?)
            }
            // "the first three bytes provide information about the format of the following
            // string ... The fourth byte is always `:`."
            b'=' => {
                let length = self.length(false)?.ok_or(RespError::BadLength)?;
                let length = Self::blob_length(length)?;
                if length < 4 {
                    return Err(bad("verbatim string"));
                }
                match self.blob(length)? {
                    [a, b, c, b':', text @ ..] => Header::Verbatim([*a, *b, *c], text),
                    _ => return Err(bad("verbatim string")),
                }
            }
            b'*' => match self.length(true)? {
                None => Header::Null,
                Some(count) => Header::Aggregate(Aggregate::Array, Self::count(count, 1)?),
            },
            // "after the % character, what follows is not, like in the array, the number of
            // single items, but the number of field-value pairs."
            b'%' => {
                let pairs = self.length(false)?.ok_or(RespError::BadLength)?;
                Header::Aggregate(Aggregate::Map, Self::count(pairs, 2)?)
            }
            // "The attribute type is exactly like the Map type, but instead of the % first
            // byte, the | byte is used."
            b'|' => {
                let pairs = self.length(false)?.ok_or(RespError::BadLength)?;
                Header::Aggregate(Aggregate::Attribute, Self::count(pairs, 2)?)
            }
            b'~' => {
                let count = self.length(false)?.ok_or(RespError::BadLength)?;
                Header::Aggregate(Aggregate::Set, Self::count(count, 1)?)
            }
            b'>' => {
                let count = self.length(false)?.ok_or(RespError::BadLength)?;
                Header::Aggregate(Aggregate::Push, Self::count(count, 1)?)
            }
            // "The null type is encoded just as _\r\n"
            b'_' => match self.line()? {
                b"" => Header::Null,
                _ => return Err(bad("null")),
            },
            b',' => Header::Double(parse_double(self.line()?).ok_or(bad("double"))?),
            // "True and false values are just represented using #t\r\n and #f\r\n"
            b'#' => match self.line()? {
                b"t" => Header::Boolean(true),
                b"f" => Header::Boolean(false),
                _ => return Err(bad("boolean")),
            },
            // "Big numbers can be positive or negative, but they must not include a decimal
            // part."
            b'(' => {
                let text = self.line()?;
                let digits = text
                    .strip_prefix(b"-")
                    .or_else(|| text.strip_prefix(b"+"))
                    .unwrap_or(text);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(bad("big number"));
                }
                Header::BigNumber(text)
            }
            // Streamed string chunks (";<length>") and the end of a streamed aggregate (".").
            b';' | b'.' => {
                return Err(RespError::Unsupported("streamed strings and aggregates").into());
            }
            other => return Err(RespError::UnknownType(other).into()),
        })
    }

    /// Frames one value: everything checked, nothing kept.
    fn skip(&mut self, depth: usize) -> Step<()> {
        loop {
            let Header::Aggregate(kind, count) = self.header()? else {
                return Ok(());
            };
            let inner = enter(depth)?;
            let elements = match kind {
                Aggregate::Map | Aggregate::Attribute => count * 2,
                _ => count,
            };
            for _ in 0..elements {
                self.skip(inner)?;
            }
            // "When a client reads a reply and encounters an attribute type, it should read the
            // attribute, and continue reading the reply." The value it annotates follows.
            if kind != Aggregate::Attribute {
                return Ok(());
            }
        }
    }

    /// Builds one value from bytes `skip` has framed.
    fn read(&mut self, depth: usize) -> Step<Value> {
        loop {
            return Ok(match self.header()? {
                Header::SimpleString(text) => Value::SimpleString(text.to_vec()),
                Header::Error(text) => Value::Error(text.to_vec()),
                Header::Integer(n) => Value::Integer(n),
                Header::BulkString(bytes) => Value::BulkString(bytes.to_vec()),
                Header::Null => Value::Null,
                Header::Double(x) => Value::Double(x),
                Header::Boolean(b) => Value::Boolean(b),
                Header::BigNumber(text) => {
                    // Checked to be ASCII sign and digits in `header`.
                    Value::BigNumber(String::from_utf8_lossy(text).into_owned())
                }
                Header::Verbatim(format, text) => Value::Verbatim {
                    format,
                    text: text.to_vec(),
                },
                Header::Aggregate(Aggregate::Attribute, pairs) => {
                    let inner = enter(depth)?;
                    for _ in 0..pairs * 2 {
                        self.skip(inner)?;
                    }
                    continue;
                }
                Header::Aggregate(Aggregate::Map, pairs) => {
                    let inner = enter(depth)?;
                    let mut entries = Vec::with_capacity(self.capacity(pairs * 2) / 2);
                    for _ in 0..pairs {
                        let key = self.read(inner)?;
                        let value = self.read(inner)?;
                        entries.push((key, value));
                    }
                    Value::Map(entries)
                }
                Header::Aggregate(kind, count) => {
                    let inner = enter(depth)?;
                    let mut items = Vec::with_capacity(self.capacity(count));
                    for _ in 0..count {
                        items.push(self.read(inner)?);
                    }
                    match kind {
                        Aggregate::Set => Value::Set(items),
                        Aggregate::Push => Value::Push(items),
                        _ => Value::Array(items),
                    }
                }
            });
        }
    }

    /// Room to reserve for `count` elements: no more than the rest of the buffer can hold,
    /// since every item takes at least three bytes (`_\r\n`).
    fn capacity(&self, count: usize) -> usize {
        count.min((self.buf.len() - self.pos) / 3)
    }
}

/// The depth inside an aggregate found at `depth`, if that is within the limit.
fn enter(depth: usize) -> Step<usize> {
    if depth >= RESP_NESTING_DEPTH_MAX {
        return Err(RespError::TooLarge(Limit::NestingDepth).into());
    }
    Ok(depth + 1)
}

fn bad(what: &'static str) -> Stop {
    Stop::Error(RespError::BadValue(what))
}

/// A number: an optional sign, then decimal digits, within `i64`.
fn parse_integer(text: &[u8]) -> Option<i64> {
    let digits = text
        .strip_prefix(b"-")
        .or_else(|| text.strip_prefix(b"+"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A double as RESP3 writes it, or as Redis before 7.2 did.
fn parse_double(text: &[u8]) -> Option<f64> {
    let (negative, unsigned) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    // "the double reply may return positive or negative infinity, and NaN as the following
    // three strings: ,inf ,-inf ,nan ... Redis prior to version 7.2 may return any
    // representation of NaN produced by libc, such as "-nan", "NAN" or "nan(char-sequence)"."
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if let Some(rest) = unsigned
        .get(..3)
        .filter(|nan| nan.eq_ignore_ascii_case(b"nan"))
        .map(|_| &unsigned[3..])
    {
        let libc_suffix = rest.first() == Some(&b'(') && rest.last() == Some(&b')');
        return (rest.is_empty() || libc_suffix).then_some(f64::NAN);
    }
    // "The integral part consists of one or more decimal digits. The optional fractional part
    // consists of a dot (.) followed by one or more decimal digits. The optional exponent part
    // consists of E or e, an optional + or - and one or more decimal digits."
    let mut rest = unsigned;
    let digits = |rest: &mut &[u8]| {
        let count = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        *rest = &rest[count..];
        count > 0
    };
    if !digits(&mut rest) {
        return None;
    }
    if let [b'.', after @ ..] = rest {
        rest = after;
        if !digits(&mut rest) {
            return None;
        }
    }
    if let [b'e' | b'E', after @ ..] = rest {
        rest = match after {
            [b'+' | b'-', signed @ ..] => signed,
            _ => after,
        };
        if !digits(&mut rest) {
            return None;
        }
    }
    if !rest.is_empty() {
        return None;
    }
    // The grammar above is a subset of what `f64::from_str` takes.
    std::str::from_utf8(text).ok()?.parse().ok()
}
