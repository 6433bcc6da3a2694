//! [`Value`]: one decoded RESP2 or RESP3 reply, and small accessors for the shapes ringchat
//! reads (bulk strings, integers, arrays).
//!
//! It does not decode or encode (see `decode.rs` and `encode.rs`), and it does not interpret
//! replies of particular commands: turning an XREVRANGE reply into messages is `crate::store`'s
//! job.

/// One reply. RESP2's two nulls (`$-1`, `*-1`) and RESP3's `_` are all [`Value::Null`]; simple
/// and blob errors are both [`Value::Error`]. Maps and sets keep the order and repetitions the
/// server sent (RESP3 calls both unordered, and ringchat only reads small ones).
///
/// Equality is wire equality: two doubles are equal when they have the same bits or are both
/// NaN, so a decoded value always equals itself.
#[derive(Debug, Clone)]
pub enum Value {
    /// `+OK`: a line of text without CR or LF.
    SimpleString(Vec<u8>),
    /// `-ERR ...` or `!<len>` (RESP3 blob error): the error code and message.
    Error(Vec<u8>),
    /// `:<n>`: a signed 64-bit number.
    Integer(i64),
    /// `$<len>`: binary-safe bytes.
    BulkString(Vec<u8>),
    /// `_`, `$-1` or `*-1`.
    Null,
    /// `*<n>`: an ordered sequence.
    Array(Vec<Value>),
    /// `%<n>`: field-value pairs, in the order sent.
    Map(Vec<(Value, Value)>),
    /// `~<n>`: elements, in the order sent.
    Set(Vec<Value>),
    /// `,<double>`, including `inf`, `-inf` and NaN.
    Double(f64),
    /// `#t` or `#f`.
    Boolean(bool),
    /// `(<digits>`: a number outside the 64-bit range, as its decimal text (an optional `-`
    /// and at least one digit).
    BigNumber(String),
    /// `=<len>`: text to show as it is, with its three-byte format (`txt`, `mkd`).
    Verbatim { format: [u8; 3], text: Vec<u8> },
    /// `><n>`: out-of-band data the server sent on its own, not a reply to a command.
    Push(Vec<Value>),
}

impl Value {
    /// The bytes of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::SimpleString(bytes) | Value::BulkString(bytes) => Some(bytes),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The number of an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array, set or push.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => Some(items),
            _ => None,
        }
    }

    /// The elements of an array, set or push, by value.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (SimpleString(a), SimpleString(b)) => a == b,
            (Error(a), Error(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (BulkString(a), BulkString(b)) => a == b,
            (Null, Null) => true,
            (Array(a), Array(b)) | (Set(a), Set(b)) | (Push(a), Push(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
            (Boolean(a), Boolean(b)) => a == b,
            (BigNumber(a), BigNumber(b)) => a == b,
            (
                Verbatim { format, text },
                Verbatim {
                    format: other_format,
                    text: other_text,
                },
            ) => format == other_format && text == other_text,
            _ => false,
        }
    }
}

impl Eq for Value {}
