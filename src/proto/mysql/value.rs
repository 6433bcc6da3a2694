//! Values in the binary protocol (Binary Protocol Value: the parameters of COM_STMT_EXECUTE and
//! the cells of binary result rows) and in text rows, as [`mysql_common::Value`].
//!
//! [`binary_param_type`] and [`encode_binary_value`] give the type and bytes a value is sent as;
//! [`decode_binary_value`] reads one cell of a given column type. Integers keep their sign from
//! the column's UNSIGNED flag (`Int` or `UInt`); strings, blobs, decimals, JSON, BIT, ENUM, SET
//! and geometry stay bytes (`Bytes`); dates and times become `Date` and `Time`.
//!
//! It does not convert values to Rust types, interpret character sets (text is the connection's
//! utf8mb4, left to the caller to check), or parse DECIMAL text.

use mysql_common::Value;
use mysql_common::constants::ColumnType;

use super::reader::{Reader, put_lenenc_bytes};
use super::{Decode, MysqlError};

/// The parameter type a value is sent as in COM_STMT_EXECUTE: "the type as in
/// enum_field_types" and whether "the highest bit [of the flag byte is] set if the type is
/// unsigned \[80\]".
pub fn binary_param_type(value: &Value) -> (ColumnType, bool) {
    match value {
        Value::NULL => (ColumnType::MYSQL_TYPE_NULL, false),
        Value::Bytes(_) => (ColumnType::MYSQL_TYPE_VAR_STRING, false),
        Value::Int(_) => (ColumnType::MYSQL_TYPE_LONGLONG, false),
        Value::UInt(_) => (ColumnType::MYSQL_TYPE_LONGLONG, true),
        Value::Float(_) => (ColumnType::MYSQL_TYPE_FLOAT, false),
        Value::Double(_) => (ColumnType::MYSQL_TYPE_DOUBLE, false),
        Value::Date(..) => (ColumnType::MYSQL_TYPE_DATETIME, false),
        Value::Time(..) => (ColumnType::MYSQL_TYPE_TIME, false),
    }
}

/// Appends `value` in Binary Protocol Value form for its [`binary_param_type`]. NULL appends
/// nothing: it travels in the NULL bitmap.
pub fn encode_binary_value(value: &Value, out: &mut Vec<u8>) {
    match *value {
        Value::NULL => {}
        Value::Bytes(ref bytes) => put_lenenc_bytes(out, bytes),
        Value::Int(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::UInt(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Float(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Date(year, month, day, hour, minute, second, micros) => {
            // "To save space the packet can be compressed: if year, month, day, hour, minutes,
            // seconds and micro_seconds are all 0, length is 0 and no other field is sent; if
            // hour, seconds and micro_seconds are all 0, length is 4 and no other field is
            // sent; if micro_seconds is 0, length is 7 and micro_seconds is not sent."
            let time_zero = hour == 0 && minute == 0 && second == 0 && micros == 0;
            if time_zero && year == 0 && month == 0 && day == 0 {
                out.push(0);
                return;
            }
            out.push(if time_zero {
                4
            } else if micros == 0 {
                7
            } else {
                11
            });
            out.extend_from_slice(&year.to_le_bytes());
            out.extend_from_slice(&[month, day]);
            if !time_zero {
                out.extend_from_slice(&[hour, minute, second]);
                if micros != 0 {
                    out.extend_from_slice(&micros.to_le_bytes());
                }
            }
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            // "if days, hours, minutes, seconds and micro_seconds are all 0, length is 0 and no
            // other field is sent; if micro_seconds is 0, length is 8 and micro_seconds is not
            // sent." A negative zero keeps its sign, so it takes the long form.
            let zero = days == 0 && hours == 0 && minutes == 0 && seconds == 0 && micros == 0;
            if zero && !negative {
                out.push(0);
                return;
            }
            out.push(if micros == 0 { 8 } else { 12 });
            out.push(u8::from(negative));
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&[hours, minutes, seconds]);
            if micros != 0 {
                out.extend_from_slice(&micros.to_le_bytes());
            }
        }
    }
}

/// Decodes one non-NULL cell of a binary row, of `column_type` (unsigned per the column's
/// UNSIGNED flag), from the start of `input`. `Partial` when `input` ends inside the value:
/// inside a complete row payload, the caller treats that as malformed.
pub fn decode_binary_value(
    input: &[u8],
    column_type: ColumnType,
    unsigned: bool,
) -> Result<Decode<Value>, MysqlError> {
    use ColumnType::*;
    let fixed = |n: usize| -> Option<&[u8]> { input.get(..n) };
    let complete = |value, consumed| Ok(Decode::Complete { value, consumed });
    match column_type {
        MYSQL_TYPE_LONGLONG => match fixed(8) {
            None => Ok(Decode::Partial),
            Some(b) => {
                let raw = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                if unsigned {
                    complete(Value::UInt(raw), 8)
                } else {
                    complete(Value::Int(raw as i64), 8)
                }
            }
        },
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => match fixed(4) {
            None => Ok(Decode::Partial),
            Some(b) => {
                let raw = u32::from_le_bytes(b.try_into().expect("4 bytes"));
                if unsigned {
                    complete(Value::UInt(u64::from(raw)), 4)
                } else {
                    complete(Value::Int(i64::from(raw as i32)), 4)
                }
            }
        },
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => match fixed(2) {
            None => Ok(Decode::Partial),
            Some(b) => {
                let raw = u16::from_le_bytes(b.try_into().expect("2 bytes"));
                if unsigned || column_type == MYSQL_TYPE_YEAR {
                    complete(Value::UInt(u64::from(raw)), 2)
                } else {
                    complete(Value::Int(i64::from(raw as i16)), 2)
                }
            }
        },
        MYSQL_TYPE_TINY => match fixed(1) {
            None => Ok(Decode::Partial),
            Some(b) => {
                if unsigned {
                    complete(Value::UInt(u64::from(b[0])), 1)
                } else {
                    complete(Value::Int(i64::from(b[0] as i8)), 1)
                }
            }
        },
        MYSQL_TYPE_DOUBLE => match fixed(8) {
            None => Ok(Decode::Partial),
            Some(b) => complete(
                Value::Double(f64::from_le_bytes(b.try_into().expect("8 bytes"))),
                8,
            ),
        },
        MYSQL_TYPE_FLOAT => match fixed(4) {
            None => Ok(Decode::Partial),
            Some(b) => complete(
                Value::Float(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
                4,
            ),
        },
        MYSQL_TYPE_DATE | MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP => {
            let Some(&length) = input.first() else {
                return Ok(Decode::Partial);
            };
            if !matches!(length, 0 | 4 | 7 | 11) {
                return Err(MysqlError::Malformed("date length is not 0, 4, 7 or 11"));
            }
            let Some(body) = input.get(1..1 + usize::from(length)) else {
                return Ok(Decode::Partial);
            };
            let mut r = Reader::new(body);
            let mut date = (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
            if length >= 4 {
                date.0 = r.u16("date")?;
                date.1 = r.u8("date")?;
                date.2 = r.u8("date")?;
            }
            if length >= 7 {
                date.3 = r.u8("date")?;
                date.4 = r.u8("date")?;
                date.5 = r.u8("date")?;
            }
            if length == 11 {
                date.6 = r.u32("date")?;
            }
            let (y, mo, d, h, mi, s, us) = date;
            complete(Value::Date(y, mo, d, h, mi, s, us), 1 + usize::from(length))
        }
        MYSQL_TYPE_TIME => {
            let Some(&length) = input.first() else {
                return Ok(Decode::Partial);
            };
            if !matches!(length, 0 | 8 | 12) {
                return Err(MysqlError::Malformed("time length is not 0, 8 or 12"));
            }
            let Some(body) = input.get(1..1 + usize::from(length)) else {
                return Ok(Decode::Partial);
            };
            let mut r = Reader::new(body);
            let mut time = (false, 0u32, 0u8, 0u8, 0u8, 0u32);
            if length >= 8 {
                time.0 = match r.u8("time")? {
                    0 => false,
                    1 => true,
                    _ => return Err(MysqlError::Malformed("time sign is not 0 or 1")),
                };
                time.1 = r.u32("time")?;
                time.2 = r.u8("time")?;
                time.3 = r.u8("time")?;
                time.4 = r.u8("time")?;
            }
            if length == 12 {
                time.5 = r.u32("time")?;
            }
            let (negative, days, h, m, s, us) = time;
            complete(
                Value::Time(negative, days, h, m, s, us),
                1 + usize::from(length),
            )
        }
        // Every other type the server sends is "string<lenenc>": MYSQL_TYPE_STRING, VARCHAR,
        // VAR_STRING, ENUM, SET, the BLOBs, GEOMETRY, BIT, DECIMAL, NEWDECIMAL, JSON, VECTOR.
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_VECTOR => decode_lenenc_bytes(input),
        // A NULL column's cells are all in the NULL bitmap; one outside it carries no bytes.
        MYSQL_TYPE_NULL => complete(Value::NULL, 0),
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_TYPED_ARRAY
        | MYSQL_TYPE_UNKNOWN => Err(MysqlError::Malformed(
            "column type that the binary protocol does not send",
        )),
    }
}

/// A `string<lenenc>` at the start of `input`, `Partial` when cut short.
fn decode_lenenc_bytes(input: &[u8]) -> Result<Decode<Value>, MysqlError> {
    let Some(&first) = input.first() else {
        return Ok(Decode::Partial);
    };
    let prefix = match first {
        0..=0xfa => 1,
        0xfc => 3,
        0xfd => 4,
        0xfe => 9,
        _ => return Err(MysqlError::Malformed("invalid length-encoded string")),
    };
    if input.len() < prefix {
        return Ok(Decode::Partial);
    }
    let length = Reader::new(input).lenenc_int("length-encoded string")?;
    let Some(end) = usize::try_from(length)
        .ok()
        .and_then(|length| length.checked_add(prefix))
    else {
        return Err(MysqlError::Malformed(
            "length-encoded string longer than memory",
        ));
    };
    match input.get(prefix..end) {
        None => Ok(Decode::Partial),
        Some(bytes) => Ok(Decode::Complete {
            value: Value::Bytes(bytes.to_vec()),
            consumed: end,
        }),
    }
}

/// Decodes a whole ProtocolBinary::ResultsetRow payload (header byte included) against the
/// column types.
pub(super) fn decode_binary_row(
    payload: &[u8],
    columns: &[(ColumnType, bool)],
) -> Result<Vec<Value>, MysqlError> {
    let mut r = Reader::new(payload);
    // "int<1> packet_header [0x00]"
    if r.u8("binary row header")? != 0x00 {
        return Err(MysqlError::Malformed("binary row header is not 0x00"));
    }
    // "NULL bitmap, length= (column_count + 7 + 2) / 8"; the first two bits are unused.
    let bitmap = r.take((columns.len() + 7 + 2) / 8, "binary row NULL bitmap")?;
    let mut rest = r.rest();
    let mut row = Vec::with_capacity(columns.len());
    for (index, &(column_type, unsigned)) in columns.iter().enumerate() {
        let bit = index + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            row.push(Value::NULL);
            continue;
        }
        match decode_binary_value(rest, column_type, unsigned)? {
            Decode::Partial => return Err(MysqlError::Malformed("binary row ends inside a value")),
            Decode::Complete { value, consumed } => {
                row.push(value);
                rest = &rest[consumed..];
            }
        }
    }
    if !rest.is_empty() {
        return Err(MysqlError::Malformed(
            "bytes after the last value of a binary row",
        ));
    }
    Ok(row)
}

/// Decodes a whole ProtocolText::ResultsetRow payload: "NULL is sent as 0xFB; everything else
/// is converted to a string and is sent as string<lenenc>".
pub(super) fn decode_text_row(payload: &[u8], columns: usize) -> Result<Vec<Value>, MysqlError> {
    let mut r = Reader::new(payload);
    let mut row = Vec::with_capacity(columns);
    for _ in 0..columns {
        if r.peek() == Some(0xfb) {
            r.u8("text row NULL")?;
            row.push(Value::NULL);
        } else {
            row.push(Value::Bytes(r.lenenc_bytes("text row value")?.to_vec()));
        }
    }
    if !r.is_empty() {
        return Err(MysqlError::Malformed(
            "bytes after the last value of a text row",
        ));
    }
    Ok(row)
}
