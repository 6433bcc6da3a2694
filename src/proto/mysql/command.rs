//! The command phase: what we send (COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE,
//! COM_STMT_CLOSE, COM_PING, COM_QUIT payloads) and the state machine that reads the server's
//! response to one command ([`Response`]): OK, ERR, a text or binary result set (column count,
//! column definitions, EOF or not per `CLIENT_DEPRECATE_EOF`, rows, terminator), or
//! COM_STMT_PREPARE_OK with its parameter and column definitions. Also the generic response
//! packets (OK, ERR, EOF) the handshake shares.
//!
//! Results over [`MYSQL_COLUMNS_MAX`], [`MYSQL_RESULT_ROWS_MAX`] or [`MYSQL_RESULT_BYTES_MAX`]
//! are followed to their end without keeping anything, then reported as too large: the server
//! cannot be told to stop, and reading on keeps the connection usable.
//!
//! It does not frame packets or track sequence ids (`connection.rs` does), and does not
//! implement cursors (COM_STMT_FETCH), COM_STMT_SEND_LONG_DATA, COM_STMT_RESET, LOCAL INFILE
//! or multiple result sets (never negotiated, so a server that sends them is malformed).

use mysql_common::Value;
use mysql_common::constants::{ColumnFlags, ColumnType, StatusFlags};

use super::connection::Event;
use super::handshake::Limits;
use super::reader::Reader;
use super::value::{binary_param_type, decode_binary_row, decode_text_row, encode_binary_value};
#[cfg(doc)]
use super::{MYSQL_COLUMNS_MAX, MYSQL_RESULT_BYTES_MAX, MYSQL_RESULT_ROWS_MAX};
use super::{MysqlError, ServerError};

/// Command bytes ("int<1> command"), from the MySQL source's `enum_server_command`.
const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_CLOSE: u8 = 0x19;

/// A prepared statement as the server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Statement {
    pub id: u32,
    /// Number of `?` placeholders; an execute must bind exactly this many values.
    pub params: u16,
    /// Number of columns its result sets have (0 for statements without one).
    pub columns: u16,
}

/// A command for the server. Each produces exactly one [`Event`] once its response is read,
/// except [`Command::Quit`], which produces none (the server closes the connection).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// COM_QUERY: SQL text, answered by OK, ERR or a text result set. Never put user input in
    /// it: bind values with a prepared statement.
    Query(String),
    /// COM_STMT_PREPARE: answered by [`Event::Prepared`] or ERR.
    Prepare(String),
    /// COM_STMT_EXECUTE with these values bound in order, answered by OK, ERR or a binary result
    /// set.
    Execute {
        statement: Statement,
        params: Vec<Value>,
    },
    /// COM_STMT_CLOSE. The server does not answer; [`Event::StatementClosed`] follows as soon as
    /// the bytes are handed out.
    CloseStatement(Statement),
    /// COM_PING, answered by [`Event::Pong`] or ERR.
    Ping,
    /// COM_QUIT: the server closes the connection.
    Quit,
}

/// One column (or parameter) definition (Protocol::ColumnDefinition41).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub schema: String,
    /// The table alias, as named in the query.
    pub table: String,
    pub org_table: String,
    /// The column alias, as named in the query.
    pub name: String,
    pub org_name: String,
    pub character_set: u16,
    pub column_length: u32,
    pub column_type: ColumnType,
    pub flags: ColumnFlags,
    pub decimals: u8,
}

impl Column {
    fn unsigned(&self) -> bool {
        self.flags.contains(ColumnFlags::UNSIGNED_FLAG)
    }
}

/// The outcome of a COM_QUERY or COM_STMT_EXECUTE that succeeded: a result set (columns and
/// rows, the counts from its terminator), or an OK packet (no columns).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    /// Text result sets give `Value::Bytes` or `Value::NULL`; binary ones typed values.
    pub rows: Vec<Vec<Value>>,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub warnings: u16,
    pub status: StatusFlags,
    /// The OK packet's human-readable info (e.g. `Rows matched: 1  Changed: 1  Warnings: 0`).
    pub info: String,
}

/// The answer to COM_STMT_PREPARE.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub statement: Statement,
    pub params: Vec<Column>,
    pub columns: Vec<Column>,
    pub warnings: u16,
}

/// Which limit a result broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultLimit {
    /// More than [`MYSQL_COLUMNS_MAX`] columns, or parameters in a prepared statement.
    Columns,
    /// More than [`MYSQL_RESULT_ROWS_MAX`] rows.
    Rows,
    /// More than [`MYSQL_RESULT_BYTES_MAX`] bytes of rows.
    Bytes,
}

/// What the command in flight expects back, and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Query,
    Execute,
    Prepare,
    Ping,
    /// `notify` is false for the close we send ourselves for a statement whose prepare result
    /// was too large (the caller never saw it).
    Close {
        statement: Statement,
        notify: bool,
    },
    Quit,
}

/// A command encoded at `queue` time (so that every refusal happens there), waiting to be sent.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) kind: Kind,
    pub(super) payload: Vec<u8>,
}

impl Command {
    /// Encodes the payload (without packet framing). Refuses an execute whose value count does
    /// not match the statement.
    pub(super) fn encode(self) -> Result<Queued, MysqlError> {
        let (kind, payload) = match self {
            Command::Query(sql) => (Kind::Query, with_command(COM_QUERY, sql.as_bytes())),
            Command::Prepare(sql) => (
                Kind::Prepare,
                with_command(COM_STMT_PREPARE, sql.as_bytes()),
            ),
            Command::Ping => (Kind::Ping, vec![COM_PING]),
            Command::Quit => (Kind::Quit, vec![COM_QUIT]),
            Command::CloseStatement(statement) => (
                Kind::Close {
                    statement,
                    notify: true,
                },
                encode_close(statement.id),
            ),
            Command::Execute { statement, params } => {
                if params.len() != usize::from(statement.params) {
                    return Err(MysqlError::ParamCount {
                        expected: statement.params,
                        found: params.len(),
                    });
                }
                (Kind::Execute, encode_execute(statement.id, &params))
            }
        };
        Ok(Queued { kind, payload })
    }
}

fn with_command(command: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + body.len());
    payload.push(command);
    payload.extend_from_slice(body);
    payload
}

/// "COM_STMT_CLOSE: int<1> status [0x19]; int<4> statement_id".
pub(super) fn encode_close(statement_id: u32) -> Vec<u8> {
    let mut payload = vec![COM_STMT_CLOSE];
    payload.extend_from_slice(&statement_id.to_le_bytes());
    payload
}

/// COM_STMT_EXECUTE: "int<1> status [0x17]; int<4> statement_id; int<1> flags; int<4>
/// iteration_count (always 1); if num_params > 0: binary<var> null_bitmap, length (num_params +
/// 7) / 8; int<1> new_params_bind_flag; if new_params_bind_flag: binary<var> parameter_types;
/// binary<var> parameter_values". We always send the types (flag 1): values may change type
/// between executions, and it costs two bytes a parameter.
fn encode_execute(statement_id: u32, params: &[Value]) -> Vec<u8> {
    let values_len: usize = params
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => 9 + b.len(),
            _ => 12,
        })
        .sum();
    let mut payload =
        Vec::with_capacity(11 + params.len().div_ceil(8) + 2 * params.len() + values_len);
    payload.push(COM_STMT_EXECUTE);
    payload.extend_from_slice(&statement_id.to_le_bytes());
    // CURSOR_TYPE_NO_CURSOR: the whole result comes at once.
    payload.push(0x00);
    payload.extend_from_slice(&1u32.to_le_bytes());
    if params.is_empty() {
        return payload;
    }
    let bitmap_start = payload.len();
    payload.resize(bitmap_start + params.len().div_ceil(8), 0);
    for (index, value) in params.iter().enumerate() {
        if *value == Value::NULL {
            payload[bitmap_start + index / 8] |= 1 << (index % 8);
        }
    }
    payload.push(1);
    for value in params {
        let (column_type, unsigned) = binary_param_type(value);
        payload.push(column_type as u8);
        payload.push(if unsigned { 0x80 } else { 0x00 });
    }
    for value in params {
        encode_binary_value(value, &mut payload);
    }
    payload
}

/// A decoded OK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ok {
    pub(super) affected_rows: u64,
    pub(super) last_insert_id: u64,
    pub(super) status: StatusFlags,
    pub(super) warnings: u16,
    pub(super) info: String,
}

/// "OK: header = 0 and length of packet >= 7".
pub(super) fn is_ok(payload: &[u8]) -> bool {
    payload.first() == Some(&0x00) && payload.len() >= 7
}

pub(super) fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&0xff)
}

/// OK_Packet (header 0x00, or 0xFE where it ends a result set under `CLIENT_DEPRECATE_EOF`):
/// "int<1> header; int<lenenc> affected_rows; int<lenenc> last_insert_id; if capabilities &
/// CLIENT_PROTOCOL_41 { int<2> status_flags; int<2> warnings } ... else string<EOF> info"
/// (we never negotiate CLIENT_SESSION_TRACK).
pub(super) fn decode_ok(payload: &[u8]) -> Result<Ok, MysqlError> {
    let mut r = Reader::new(payload);
    let header = r.u8("OK header")?;
    if header != 0x00 && header != 0xfe {
        return Err(MysqlError::Malformed("OK header is neither 0x00 nor 0xFE"));
    }
    let affected_rows = r.lenenc_int("OK affected_rows")?;
    let last_insert_id = r.lenenc_int("OK last_insert_id")?;
    let status = StatusFlags::from_bits_truncate(r.u16("OK status_flags")?);
    let warnings = r.u16("OK warnings")?;
    let info = String::from_utf8_lossy(r.rest()).into_owned();
    Ok(Ok {
        affected_rows,
        last_insert_id,
        status,
        warnings,
        info,
    })
}

/// ERR_Packet: "int<1> header [0xFF]; int<2> error_code; if capabilities & CLIENT_PROTOCOL_41 {
/// string[1] sql_state_marker [#]; string[5] sql_state }; string<EOF> error_message". An ERR
/// sent before the handshake has no marker and no state.
pub(super) fn decode_err(payload: &[u8]) -> Result<ServerError, MysqlError> {
    let mut r = Reader::new(payload);
    if r.u8("ERR header")? != 0xff {
        return Err(MysqlError::Malformed("ERR header is not 0xFF"));
    }
    let code = r.u16("ERR error_code")?;
    let state = if r.peek() == Some(b'#') && r.remaining() >= 6 {
        r.u8("ERR sql_state_marker")?;
        String::from_utf8_lossy(r.take(5, "ERR sql_state")?).into_owned()
    } else {
        "HY000".to_string()
    };
    let message = String::from_utf8_lossy(r.rest()).into_owned();
    Ok(ServerError {
        code,
        state,
        message,
    })
}

/// EOF_Packet: "int<1> header 0xFE; if capabilities & CLIENT_PROTOCOL_41 { int<2> warnings;
/// int<2> status_flags }". "You must check whether the packet length is less than 9 to make
/// sure that it is a EOF_Packet packet."
fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < 9
}

fn decode_eof(payload: &[u8]) -> Result<(u16, StatusFlags), MysqlError> {
    let mut r = Reader::new(payload);
    r.u8("EOF header")?;
    let warnings = r.u16("EOF warnings")?;
    let status = StatusFlags::from_bits_truncate(r.u16("EOF status_flags")?);
    Ok((warnings, status))
}

/// Protocol::ColumnDefinition41: "string<lenenc> catalog (always "def"); string<lenenc> schema;
/// string<lenenc> table; string<lenenc> org_table; string<lenenc> name; string<lenenc>
/// org_name; int<lenenc> length of fixed length fields [0x0c]; int<2> character_set; int<4>
/// column_length; int<1> type; int<2> flags; int<1> decimals; (2 bytes filler)".
pub(super) fn decode_column(payload: &[u8]) -> Result<Column, MysqlError> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut r = Reader::new(payload);
    let _catalog = r.lenenc_bytes("column catalog")?;
    let schema = text(r.lenenc_bytes("column schema")?);
    let table = text(r.lenenc_bytes("column table")?);
    let org_table = text(r.lenenc_bytes("column org_table")?);
    let name = text(r.lenenc_bytes("column name")?);
    let org_name = text(r.lenenc_bytes("column org_name")?);
    let fixed_length = r.lenenc_int("column fixed fields length")?;
    if fixed_length < 10 {
        return Err(MysqlError::Malformed(
            "column fixed fields shorter than 10 bytes",
        ));
    }
    let character_set = r.u16("column character_set")?;
    let column_length = r.u32("column column_length")?;
    let column_type = ColumnType::try_from(r.u8("column type")?)
        .map_err(|_| MysqlError::Malformed("unknown column type"))?;
    let flags = ColumnFlags::from_bits_truncate(r.u16("column flags")?);
    let decimals = r.u8("column decimals")?;
    Ok(Column {
        schema,
        table,
        org_table,
        name,
        org_name,
        character_set,
        column_length,
        column_type,
        flags,
        decimals,
    })
}

/// Where the response to the command in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseState {
    /// The first packet: OK, ERR, a column count, or COM_STMT_PREPARE_OK.
    First,
    /// Column definitions of a result set, this many still to come.
    ColumnDefinitions { remaining: u64 },
    /// The EOF after the column definitions (without `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    /// Rows, until the terminator (EOF, or OK with the 0xFE header) or an ERR.
    Rows,
    /// Parameter definitions of a prepared statement, this many still to come.
    PrepareParams { remaining: u16 },
    /// The EOF after the parameter definitions.
    PrepareParamsEof,
    /// Column definitions of a prepared statement, this many still to come.
    PrepareColumns { remaining: u16 },
    /// The EOF after the prepared statement's column definitions.
    PrepareColumnsEof,
}

/// Reads the response to one command.
#[derive(Debug, Clone)]
pub(super) struct Response {
    kind: Kind,
    state: ResponseState,
    deprecate_eof: bool,
    limits: Limits,
    columns: Vec<Column>,
    column_types: Vec<(ColumnType, bool)>,
    column_count: usize,
    rows: Vec<Vec<Value>>,
    row_count: usize,
    row_bytes: usize,
    /// Set once a limit is passed: from then on nothing is kept.
    too_large: Option<ResultLimit>,
    statement: Option<Statement>,
    params: Vec<Column>,
    warnings: u16,
}

impl Response {
    pub(super) fn new(kind: Kind, deprecate_eof: bool, limits: Limits) -> Response {
        Response {
            kind,
            state: ResponseState::First,
            deprecate_eof,
            limits,
            columns: Vec::new(),
            column_types: Vec::new(),
            column_count: 0,
            rows: Vec::new(),
            row_count: 0,
            row_bytes: 0,
            too_large: None,
            statement: None,
            params: Vec::new(),
            warnings: 0,
        }
    }

    /// A statement the server prepared but whose definitions we dropped as too large: the
    /// caller never learns of it, so the connection closes it.
    pub(super) fn orphan_statement(&self) -> Option<Statement> {
        match (self.kind, self.too_large) {
            (Kind::Prepare, Some(_)) => self.statement,
            _ => None,
        }
    }

    fn limit(&mut self, limit: ResultLimit) {
        if self.too_large.is_none() {
            self.too_large = Some(limit);
        }
        // Give back what was kept; nothing more will be.
        self.rows = Vec::new();
        self.columns = Vec::new();
        self.params = Vec::new();
    }

    /// Handles one whole payload; returns the event once the response is complete.
    pub(super) fn handle_payload(&mut self, payload: &[u8]) -> Result<Option<Event>, MysqlError> {
        // "ERR_Packet ... if any error occurs": it may come first, or end a result set early
        // (a query killed while it streams rows). No row or definition starts with 0xFF: it is
        // not a length-encoded integer, and binary rows start with 0x00.
        if is_err(payload) {
            return Ok(Some(Event::Error(decode_err(payload)?)));
        }
        match self.state {
            ResponseState::First => self.handle_first(payload),
            ResponseState::ColumnDefinitions { remaining } => {
                if self.too_large.is_none() {
                    let column = decode_column(payload)?;
                    self.column_types
                        .push((column.column_type, column.unsigned()));
                    self.columns.push(column);
                }
                self.state = if remaining > 1 {
                    ResponseState::ColumnDefinitions {
                        remaining: remaining - 1,
                    }
                } else if self.deprecate_eof {
                    ResponseState::Rows
                } else {
                    ResponseState::ColumnsEof
                };
                Ok(None)
            }
            ResponseState::ColumnsEof => {
                // "If the CLIENT_DEPRECATE_EOF client capability flag is not set, EOF_Packet".
                if !is_eof(payload) {
                    return Err(MysqlError::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
                self.state = ResponseState::Rows;
                Ok(None)
            }
            ResponseState::Rows => self.handle_row(payload),
            ResponseState::PrepareParams { remaining } => {
                if self.too_large.is_none() {
                    self.params.push(decode_column(payload)?);
                }
                if remaining > 1 {
                    self.state = ResponseState::PrepareParams {
                        remaining: remaining - 1,
                    };
                    return Ok(None);
                }
                if !self.deprecate_eof {
                    self.state = ResponseState::PrepareParamsEof;
                    return Ok(None);
                }
                Ok(self.after_prepare_params())
            }
            ResponseState::PrepareParamsEof => {
                if !is_eof(payload) {
                    return Err(MysqlError::Malformed(
                        "expected EOF after parameter definitions",
                    ));
                }
                Ok(self.after_prepare_params())
            }
            ResponseState::PrepareColumns { remaining } => {
                if self.too_large.is_none() {
                    self.columns.push(decode_column(payload)?);
                }
                if remaining > 1 {
                    self.state = ResponseState::PrepareColumns {
                        remaining: remaining - 1,
                    };
                    return Ok(None);
                }
                if !self.deprecate_eof {
                    self.state = ResponseState::PrepareColumnsEof;
                    return Ok(None);
                }
                Ok(Some(self.prepared()))
            }
            ResponseState::PrepareColumnsEof => {
                if !is_eof(payload) {
                    return Err(MysqlError::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
                Ok(Some(self.prepared()))
            }
        }
    }

    fn handle_first(&mut self, payload: &[u8]) -> Result<Option<Event>, MysqlError> {
        match self.kind {
            Kind::Ping => {
                if !is_ok(payload) {
                    return Err(MysqlError::Malformed("expected OK or ERR for COM_PING"));
                }
                decode_ok(payload)?;
                Ok(Some(Event::Pong))
            }
            Kind::Prepare => self.handle_prepare_ok(payload),
            Kind::Query | Kind::Execute => {
                // "The query response packet is a meta packet which can be one of: ERR_Packet,
                // OK_Packet, LOCAL INFILE Request, Text Resultset."
                match payload.first() {
                    Some(0x00) => {
                        let ok = decode_ok(payload)?;
                        Ok(Some(Event::QueryResult(QueryResult {
                            columns: Vec::new(),
                            rows: Vec::new(),
                            affected_rows: ok.affected_rows,
                            last_insert_id: ok.last_insert_id,
                            warnings: ok.warnings,
                            status: ok.status,
                            info: ok.info,
                        })))
                    }
                    // LOCAL INFILE needs CLIENT_LOCAL_FILES, which we never send.
                    Some(0xfb) => Err(MysqlError::Malformed(
                        "LOCAL INFILE request without CLIENT_LOCAL_FILES",
                    )),
                    _ => {
                        // "int<lenenc> column_count", and the whole payload is that integer.
                        let mut r = Reader::new(payload);
                        let count = r.lenenc_int("column count")?;
                        if !r.is_empty() {
                            return Err(MysqlError::Malformed("bytes after the column count"));
                        }
                        if count == 0 {
                            return Err(MysqlError::Malformed("result set of zero columns"));
                        }
                        match usize::try_from(count) {
                            Ok(count) if count <= self.limits.columns_max => {
                                self.column_count = count;
                                self.columns.reserve_exact(count);
                                self.column_types.reserve_exact(count);
                            }
                            _ => self.limit(ResultLimit::Columns),
                        }
                        self.state = ResponseState::ColumnDefinitions { remaining: count };
                        Ok(None)
                    }
                }
            }
            Kind::Close { .. } | Kind::Quit => {
                Err(MysqlError::Malformed("response to a command that has none"))
            }
        }
    }

    /// COM_STMT_PREPARE_OK: "int<1> status [0x00]; int<4> statement_id; int<2> num_columns;
    /// int<2> num_params; int<1> reserved_1 [00] filler; if (packet_length > 12) { int<2>
    /// warning_count }"; then num_params definitions and num_columns definitions.
    fn handle_prepare_ok(&mut self, payload: &[u8]) -> Result<Option<Event>, MysqlError> {
        let mut r = Reader::new(payload);
        if r.u8("COM_STMT_PREPARE_OK status")? != 0x00 {
            return Err(MysqlError::Malformed("expected COM_STMT_PREPARE_OK or ERR"));
        }
        let id = r.u32("COM_STMT_PREPARE_OK statement_id")?;
        let columns = r.u16("COM_STMT_PREPARE_OK num_columns")?;
        let params = r.u16("COM_STMT_PREPARE_OK num_params")?;
        r.u8("COM_STMT_PREPARE_OK filler")?;
        if payload.len() > 12 {
            self.warnings = r.u16("COM_STMT_PREPARE_OK warning_count")?;
        }
        self.statement = Some(Statement {
            id,
            params,
            columns,
        });
        let columns_max = self.limits.columns_max;
        if usize::from(params) > columns_max || usize::from(columns) > columns_max {
            self.limit(ResultLimit::Columns);
        } else {
            self.params.reserve_exact(usize::from(params));
            self.columns.reserve_exact(usize::from(columns));
        }
        if params > 0 {
            self.state = ResponseState::PrepareParams { remaining: params };
            return Ok(None);
        }
        Ok(self.after_prepare_params())
    }

    fn after_prepare_params(&mut self) -> Option<Event> {
        let columns = self.statement.map_or(0, |s| s.columns);
        if columns > 0 {
            self.state = ResponseState::PrepareColumns { remaining: columns };
            return None;
        }
        Some(self.prepared())
    }

    fn prepared(&mut self) -> Event {
        if let Some(limit) = self.too_large {
            return Event::ResultTooLarge(limit);
        }
        Event::Prepared(Prepared {
            statement: self.statement.expect("set by COM_STMT_PREPARE_OK"),
            params: std::mem::take(&mut self.params),
            columns: std::mem::take(&mut self.columns),
            warnings: self.warnings,
        })
    }

    fn handle_row(&mut self, payload: &[u8]) -> Result<Option<Event>, MysqlError> {
        // The terminator. Without CLIENT_DEPRECATE_EOF it is an EOF_Packet ("length of packet <
        // 9"); with it an OK_Packet with the 0xFE header, which may be longer but never 2^24-1
        // bytes or more (a text row starting with 0xFE holds a value of at least 2^24 bytes).
        let terminator = if self.deprecate_eof {
            payload.first() == Some(&0xfe) && payload.len() < 0xff_ffff
        } else {
            is_eof(payload)
        };
        if terminator {
            let (affected_rows, last_insert_id, warnings, status, info) = if self.deprecate_eof {
                let ok = decode_ok(payload)?;
                (
                    ok.affected_rows,
                    ok.last_insert_id,
                    ok.warnings,
                    ok.status,
                    ok.info,
                )
            } else {
                let (warnings, status) = decode_eof(payload)?;
                (0, 0, warnings, status, String::new())
            };
            if status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) {
                return Err(MysqlError::Malformed(
                    "more results announced without CLIENT_MULTI_RESULTS",
                ));
            }
            if let Some(limit) = self.too_large {
                return Ok(Some(Event::ResultTooLarge(limit)));
            }
            return Ok(Some(Event::QueryResult(QueryResult {
                columns: std::mem::take(&mut self.columns),
                rows: std::mem::take(&mut self.rows),
                affected_rows,
                last_insert_id,
                warnings,
                status,
                info,
            })));
        }
        self.row_count += 1;
        self.row_bytes = self.row_bytes.saturating_add(payload.len());
        if self.row_count > self.limits.result_rows_max {
            self.limit(ResultLimit::Rows);
        } else if self.row_bytes > self.limits.result_bytes_max {
            self.limit(ResultLimit::Bytes);
        }
        if self.too_large.is_some() {
            return Ok(None);
        }
        let row = match self.kind {
            Kind::Execute => decode_binary_row(payload, &self.column_types)?,
            _ => decode_text_row(payload, self.column_count)?,
        };
        self.rows.push(row);
        Ok(None)
    }
}
