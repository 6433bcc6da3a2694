//! The MySQL engine (`ringchat::proto::mysql`) and store against a real MariaDB 10.11, for what
//! the recorded fixtures of `src/proto/mysql` cannot show: logins as several accounts
//! (`mysql_native_password`, an empty password, wrong passwords), prepared statements and text
//! queries with NULLs, 4-byte UTF-8, integer extremes, DOUBLE, DATETIME, TIME and values of
//! 1 MiB and 17 MiB (the 16 MiB packet split crossed in both directions), server errors (also
//! one that ends a result set after its rows began) leaving the connection usable, and the
//! store's query timeout discarding the connection that timed out.
//!
//! The engine is driven here over `rt::connect` by [`Client`], a driver as small as the store's
//! own, so that any SQL can be sent; every wait is bounded by a deadline on the connection. Not
//! here: `caching_sha2_password`, which needs MySQL 8 (not installable here; the engine's
//! constructed exchanges in `src/proto/mysql/tests.rs` cover it).

use std::time::{Duration, Instant};

use ringchat::proto::mysql::packet::{PACKET_HEADER_BYTES, PACKET_PAYLOAD_BYTES_MAX};
use ringchat::proto::mysql::{
    AUTH_MYSQL_NATIVE_PASSWORD, ColumnFlags, ColumnType, Command, Connection, Event, MysqlError,
    Options, QueryResult, ServerError, ServerInfo, Statement, Value,
};
use ringchat::rt::{self, Backend, Conn};
use ringchat::store::mysql::{MysqlConfig, MysqlStore};
use ringchat::store::{CreateUser, NewUser, StoreError};
use ringchat_proto_tests::MariaDb;

/// The longest any one command (or login) may take before the driver gives up: generous for
/// 17 MiB in a debug build, and still a bound, so a stuck engine fails instead of hanging.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// How soon a refused login must be reported.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(5);

/// Bytes the driver reads at a time, at least.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why the driver got no event.
#[derive(Debug)]
enum Failure {
    /// The engine failed (a refused login is `Engine(MysqlError::Server(..))`).
    Engine(MysqlError),
    /// The connection's deadline passed first.
    TimedOut,
    /// The server closed the connection.
    Closed,
    Io(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Engine(e) => write!(f, "engine: {e}"),
            Failure::TimedOut => write!(f, "no answer within {STEP_DEADLINE:?}"),
            Failure::Closed => write!(f, "the server closed the connection"),
            Failure::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

/// One engine connection over `rt::connect`.
struct Client {
    conn: Conn,
    engine: Connection,
    input: Vec<u8>,
    output: Vec<u8>,
    server: ServerInfo,
    /// Bytes written for the last command, packet headers included.
    sent: usize,
}

impl Client {
    async fn login(
        port: u16,
        user: &str,
        password: &str,
        database: Option<&str>,
    ) -> Result<Client, Failure> {
        let conn = rt::connect(([127, 0, 0, 1], port).into())
            .await
            .map_err(Failure::Io)?;
        let mut options = Options::new(user, password.as_bytes().to_vec(), [9; 32]);
        if let Some(database) = database {
            options = options.database(database);
        }
        let engine = Connection::new(&options).map_err(Failure::Engine)?;
        let mut client = Client {
            conn,
            engine,
            input: Vec::new(),
            output: Vec::new(),
            server: placeholder_server_info(),
            sent: 0,
        };
        client.conn.set_timeout(STEP_DEADLINE);
        let event = client.next_event().await;
        client.conn.set_deadline(None);
        match event? {
            Event::HandshakeDone(server) => client.server = server,
            other => panic!("expected the handshake to finish, got {}", shown(&other)),
        }
        Ok(client)
    }

    /// Writes what the engine has to send, then reads until it reports an event.
    async fn next_event(&mut self) -> Result<Event, Failure> {
        loop {
            self.output.clear();
            let written = self.engine.poll_transmit(&mut self.output);
            self.sent += written;
            if written > 0 {
                let (result, buf) = self.conn.write_all(std::mem::take(&mut self.output)).await;
                self.output = buf;
                result.map_err(Failure::Io)?;
            }
            if let Some(event) = self.engine.poll_event() {
                return Ok(event);
            }
            if self.input.capacity() - self.input.len() < READ_CHUNK_BYTES / 2 {
                self.input.reserve(READ_CHUNK_BYTES);
            }
            let (result, buf) = self.conn.read(std::mem::take(&mut self.input)).await;
            self.input = buf;
            match result {
                Ok(0) if self.conn.timed_out() => return Err(Failure::TimedOut),
                Ok(0) => return Err(Failure::Closed),
                Ok(_) => {}
                Err(e) => return Err(Failure::Io(e)),
            }
            let consumed = self
                .engine
                .handle_input(&self.input)
                .map_err(Failure::Engine)?;
            self.input.drain(..consumed);
        }
    }

    /// Runs one command to its event, within [`STEP_DEADLINE`].
    async fn run(&mut self, command: Command) -> Event {
        let what = short(&format!("{command:?}"));
        self.engine
            .queue(command)
            .unwrap_or_else(|e| panic!("queue {what}: {e}"));
        self.sent = 0;
        self.conn.set_timeout(STEP_DEADLINE);
        let event = self.next_event().await;
        self.conn.set_deadline(None);
        event.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn query(&mut self, sql: &str) -> QueryResult {
        match self.run(Command::Query(sql.into())).await {
            Event::QueryResult(r) => r,
            other => panic!("{}: {}", short(sql), shown(&other)),
        }
    }

    async fn prepare(&mut self, sql: &str) -> Statement {
        match self.run(Command::Prepare(sql.into())).await {
            Event::Prepared(p) => p.statement,
            other => panic!("prepare {}: {}", short(sql), shown(&other)),
        }
    }

    async fn execute(&mut self, statement: Statement, params: Vec<Value>) -> QueryResult {
        match self.run(Command::Execute { statement, params }).await {
            Event::QueryResult(r) => r,
            other => panic!("execute {statement:?}: {}", shown(&other)),
        }
    }

    /// Runs a command the server must refuse, and returns its ERR packet.
    async fn refused(&mut self, command: Command) -> ServerError {
        match self.run(command).await {
            Event::Error(e) => e,
            other => panic!("expected an ERR packet, got {}", shown(&other)),
        }
    }

    /// Checks that the connection still works and is the same session as at login.
    async fn assert_usable(&mut self) {
        let rows = self.query("SELECT CONNECTION_ID(), 1 + 1").await.rows;
        assert_eq!(
            rows,
            [[text(&self.server.connection_id.to_string()), text("2")]]
        );
    }
}

fn placeholder_server_info() -> ServerInfo {
    ServerInfo {
        server_version: String::new(),
        connection_id: 0,
        capabilities: ringchat::proto::mysql::CapabilityFlags::empty(),
        auth_plugin: "",
        status: ringchat::proto::mysql::StatusFlags::empty(),
    }
}

/// A text-protocol cell.
fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn short(s: &str) -> String {
    let mut s = s.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn shown(event: &Event) -> String {
    short(&format!("{event:?}"))
}

/// A value for messages: large byte strings by length and first bytes only.
fn describe(value: &Value) -> String {
    match value {
        Value::Bytes(b) if b.len() > 64 => format!("Bytes(len {}, {:?}..)", b.len(), &b[..16]),
        other => format!("{other:?}"),
    }
}

fn describe_row(row: &[Value]) -> String {
    row.iter().map(describe).collect::<Vec<_>>().join(", ")
}

fn assert_row(got: &[Vec<Value>], want: &[Value], what: &str) {
    assert!(
        got.len() == 1 && got[0] == want,
        "{what}: got {} rows: [{}], want [{}]",
        got.len(),
        got.first().map(|r| describe_row(r)).unwrap_or_default(),
        describe_row(want)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Deterministic bytes of every value (xorshift), so a shifted or truncated copy never passes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `len` or a few more bytes of text: multi-byte UTF-8 (2- and 4-byte characters) when
/// `multibyte`, else ASCII letters; never a quote or a backslash, so it can stand in SQL text
/// as a literal.
fn text_of(len: usize, multibyte: bool) -> String {
    let mut s = String::with_capacity(len + 8);
    let mut i = 0u32;
    while s.len() < len {
        if multibyte && i.is_multiple_of(5) {
            s.push_str("🦀ñ");
        }
        s.push(char::from(b'a' + (i % 26) as u8));
        i += 1;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Logins
// ---------------------------------------------------------------------------------------------

const NATIVE_USER: &str = "native_user";
/// Non-ASCII on purpose: the scramble hashes the password's UTF-8 bytes.
const NATIVE_PASSWORD: &str = "pässwörd 🦀";
const EMPTY_USER: &str = "empty_user";

fn create_login_accounts(db: &MariaDb) {
    db.root_sql(&format!(
        "SET NAMES utf8mb4; \
         CREATE USER '{NATIVE_USER}'@'%' IDENTIFIED VIA mysql_native_password \
           USING PASSWORD('{NATIVE_PASSWORD}'); \
         GRANT ALL ON {db}.* TO '{NATIVE_USER}'@'%'; \
         CREATE USER '{EMPTY_USER}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); \
         GRANT ALL ON {db}.* TO '{EMPTY_USER}'@'%';",
        db = MariaDb::DATABASE
    ));
    let plugins = db.root_sql(&format!(
        "SELECT user, plugin, authentication_string = '' FROM mysql.user \
         WHERE user IN ('{NATIVE_USER}', '{EMPTY_USER}') ORDER BY user"
    ));
    assert_eq!(
        plugins,
        format!(
            "{EMPTY_USER}\tmysql_native_password\t1\n{NATIVE_USER}\tmysql_native_password\t0\n"
        )
    );
}

/// Logs in with what must be refused, and returns the server's error, checking that it came
/// quickly (a refusal must not look like a hang).
async fn refused_login(
    port: u16,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> ServerError {
    let start = Instant::now();
    let result = Client::login(port, user, password, database).await;
    let took = start.elapsed();
    assert!(took < REFUSAL_DEADLINE, "refusal took {took:?}");
    match result {
        Err(Failure::Engine(MysqlError::Server(e))) => e,
        Err(other) => panic!("{user}/{password:?}: expected an ERR packet, got {other}"),
        Ok(_) => panic!("{user}/{password:?}: logged in"),
    }
}

#[test]
fn logins_with_native_password_empty_password_and_refusals() {
    let db = MariaDb::start();
    create_login_accounts(&db);
    let port = db.port;
    let database = Some(MariaDb::DATABASE);
    rt::run_local(Backend::Uring, async move {
        let mut c = Client::login(port, NATIVE_USER, NATIVE_PASSWORD, database)
            .await
            .unwrap();
        assert_eq!(c.server.auth_plugin, AUTH_MYSQL_NATIVE_PASSWORD);
        assert!(
            c.server.server_version.contains("MariaDB"),
            "{}",
            c.server.server_version
        );
        let r = c
            .query(
                "SELECT CURRENT_USER(), DATABASE(), @@character_set_client, @@collation_connection",
            )
            .await;
        assert_eq!(
            r.rows,
            [[
                text("native_user@%"),
                text(MariaDb::DATABASE),
                text("utf8mb4"),
                text("utf8mb4_general_ci")
            ]]
        );
        c.assert_usable().await;

        // An empty password, and no database.
        let mut e = Client::login(port, EMPTY_USER, "", None).await.unwrap();
        assert_eq!(e.server.auth_plugin, AUTH_MYSQL_NATIVE_PASSWORD);
        let r = e.query("SELECT CURRENT_USER(), DATABASE()").await;
        assert_eq!(r.rows, [[text("empty_user@%"), Value::NULL]]);
        e.assert_usable().await;

        // Refusals: ERR 1045 (28000) for a wrong password either way round, 1044 (42000) for a
        // database the account may not use; each reported at once, as a typed error.
        for (user, password) in [
            (NATIVE_USER, "wrong"),
            (NATIVE_USER, ""),
            (NATIVE_USER, "pässwörd"),
            (EMPTY_USER, "x"),
            ("no_such_user", "x"),
        ] {
            let e = refused_login(port, user, password, database).await;
            assert_eq!((e.code, e.state.as_str()), (1045, "28000"), "{user}: {e}");
            assert!(e.message.contains("Access denied"), "{e}");
        }
        let e = refused_login(port, NATIVE_USER, NATIVE_PASSWORD, Some("mysql")).await;
        assert_eq!((e.code, e.state.as_str()), (1044, "42000"), "{e}");

        // Through the store: a wrong password is Unavailable with the server's code, quickly;
        // an account without a password works.
        let mut bad = MysqlConfig::from_url(&format!(
            "mysql://{NATIVE_USER}:wrong@127.0.0.1:{port}/{}",
            MariaDb::DATABASE
        ))
        .unwrap();
        bad.acquire_timeout = Duration::from_secs(30);
        let start = Instant::now();
        match MysqlStore::connect(bad).await {
            Err(StoreError::Unavailable { detail, .. }) => {
                assert!(detail.contains("1045"), "{detail}")
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a wrong password logged in"),
        }
        assert!(start.elapsed() < REFUSAL_DEADLINE, "{:?}", start.elapsed());
        let empty = MysqlConfig::from_url(&format!(
            "mysql://{EMPTY_USER}@127.0.0.1:{port}/{}",
            MariaDb::DATABASE
        ))
        .unwrap();
        let store = MysqlStore::connect(empty).await.unwrap();
        let created = store
            .create_user(NewUser {
                username: "nobody-needs-a-password".into(),
                email: "n@example.com".into(),
                password_hash: "h".into(),
            })
            .await
            .unwrap();
        assert!(matches!(created, CreateUser::Created(_)), "{created:?}");
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Values: prepared statements (binary rows) and text queries
// ---------------------------------------------------------------------------------------------

const KINDS_TABLE: &str = "(id BIGINT PRIMARY KEY, i BIGINT NULL, u BIGINT UNSIGNED NULL, \
    d DOUBLE NULL, dt DATETIME(6) NULL, tm TIME(6) NULL, t LONGTEXT NULL, b LONGBLOB NULL) \
    DEFAULT CHARSET=utf8mb4";

/// The non-id columns of one row, as bound and as a binary row gives them back.
struct Row {
    id: i64,
    values: Vec<Value>,
}

fn rows() -> Vec<Row> {
    let utf8 = "ñandú 🦀 日本語 𝄞 \u{0}'\"\\ end";
    let every_byte: Vec<u8> = (0..=255).collect();
    let null = || Value::NULL;
    vec![
        Row {
            id: 1,
            values: vec![
                Value::Int(i64::MIN),
                Value::UInt(u64::MAX),
                Value::Double(1.5),
                Value::Date(2024, 2, 29, 23, 59, 58, 123_456),
                Value::Time(true, 1, 2, 3, 4, 5),
                Value::Bytes(utf8.as_bytes().to_vec()),
                Value::Bytes(every_byte),
            ],
        },
        Row {
            id: 2,
            values: vec![
                Value::Int(i64::MAX),
                Value::UInt(0),
                Value::Double(-2.5e300),
                Value::Date(1000, 1, 1, 0, 0, 0, 0),
                Value::Time(false, 0, 0, 0, 0, 0),
                Value::Bytes(Vec::new()),
                Value::Bytes(Vec::new()),
            ],
        },
        Row {
            id: 3,
            values: vec![null(), null(), null(), null(), null(), null(), null()],
        },
        Row {
            id: 4,
            values: vec![
                Value::Int(0),
                null(),
                Value::Double(0.1),
                null(),
                null(),
                Value::Bytes(text_of(1024 * 1024, true).into_bytes()),
                Value::Bytes(noise(1024 * 1024, 4)),
            ],
        },
        Row {
            id: 5,
            values: vec![
                null(),
                null(),
                null(),
                null(),
                null(),
                Value::Bytes(text_of(PACKET_PAYLOAD_BYTES_MAX + 1024 * 1024, false).into_bytes()),
                null(),
            ],
        },
        Row {
            id: 6,
            values: vec![
                null(),
                null(),
                null(),
                null(),
                null(),
                null(),
                Value::Bytes(noise(PACKET_PAYLOAD_BYTES_MAX + 1024 * 1024 + 7, 6)),
            ],
        },
    ]
}

/// How a text result writes each value of [`rows`].
fn as_text(value: &Value) -> Value {
    match value {
        Value::NULL => Value::NULL,
        Value::Int(i) => text(&i.to_string()),
        Value::UInt(u) => text(&u.to_string()),
        Value::Bytes(b) => Value::Bytes(b.clone()),
        Value::Date(y, mo, d, h, mi, s, us) => text(&format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(negative, days, h, m, s, us) => text(&format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if *negative { "-" } else { "" },
            days * 24 + u32::from(*h)
        )),
        // Compared by value: the server's spelling of a double is its own.
        Value::Double(_) | Value::Float(_) => value.clone(),
    }
}

/// A text cell compared with [`as_text`]'s expectation (doubles parsed).
fn text_cell_matches(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Bytes(b), Value::Double(d)) => {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                == Some(*d)
        }
        _ => got == want,
    }
}

/// `value` as an SQL literal, for the text path.
fn literal(value: &Value, column: &str) -> String {
    match value {
        Value::NULL => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Double(d) => format!("{d:e}"),
        Value::Bytes(b) if column == "b" => format!("X'{}'", hex(b)),
        // Only row 1's text has quotes, backslashes and NUL; they are escaped.
        Value::Bytes(b) => {
            let s = std::str::from_utf8(b).expect("text columns hold UTF-8");
            format!(
                "'{}'",
                s.replace('\\', "\\\\")
                    .replace('\'', "\\'")
                    .replace('"', "\\\"")
                    .replace('\0', "\\0")
            )
        }
        Value::Date(..) | Value::Time(..) => match as_text(value) {
            Value::Bytes(b) => format!("'{}'", String::from_utf8(b).expect("ASCII")),
            _ => unreachable!("as_text writes dates and times as text"),
        },
        Value::Float(_) => unreachable!("rows() binds no FLOAT"),
    }
}

const COLUMNS: [&str; 7] = ["i", "u", "d", "dt", "tm", "t", "b"];

fn values_round_trip(backend: Backend) {
    let db = MariaDb::start();
    // A 17 MiB value needs packets larger than the default 16 MiB limit, both ways.
    db.root_sql("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024");
    let port = db.port;
    rt::run_local(backend, async move {
        let mut c = Client::login(
            port,
            MariaDb::USER,
            MariaDb::PASSWORD,
            Some(MariaDb::DATABASE),
        )
        .await
        .unwrap();
        assert_eq!(
            c.query("SELECT @@max_allowed_packet").await.rows,
            [[text("67108864")]]
        );
        c.query(&format!("CREATE TABLE kinds {KINDS_TABLE}")).await;
        c.query(&format!("CREATE TABLE kinds_text {KINDS_TABLE}"))
            .await;
        let rows = rows();

        // Prepared: bound values in, binary rows out.
        let insert = c
            .prepare(
                "INSERT INTO kinds (id, i, u, d, dt, tm, t, b) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .await;
        assert_eq!((insert.params, insert.columns), (8, 0));
        for row in &rows {
            let mut params = vec![Value::Int(row.id)];
            params.extend(row.values.iter().cloned());
            let r = c.execute(insert, params).await;
            assert_eq!((r.affected_rows, r.warnings), (1, 0), "row {}", row.id);
        }
        let select = c
            .prepare("SELECT i, u, d, dt, tm, t, b FROM kinds WHERE id = ?")
            .await;
        for row in &rows {
            let r = c.execute(select, vec![Value::Int(row.id)]).await;
            assert_row(&r.rows, &row.values, &format!("binary row {}", row.id));
            if row.id == 1 {
                let types: Vec<ColumnType> = r.columns.iter().map(|c| c.column_type).collect();
                assert_eq!(
                    types,
                    [
                        ColumnType::MYSQL_TYPE_LONGLONG,
                        ColumnType::MYSQL_TYPE_LONGLONG,
                        ColumnType::MYSQL_TYPE_DOUBLE,
                        ColumnType::MYSQL_TYPE_DATETIME,
                        ColumnType::MYSQL_TYPE_TIME,
                        ColumnType::MYSQL_TYPE_BLOB,
                        ColumnType::MYSQL_TYPE_BLOB,
                    ]
                );
                assert!(r.columns[1].flags.contains(ColumnFlags::UNSIGNED_FLAG));
                assert!(!r.columns[0].flags.contains(ColumnFlags::UNSIGNED_FLAG));
            }
        }
        // NULL parameters select by NULL, and come back as NULL columns.
        let by_null = c
            .prepare("SELECT ?, ? IS NULL, COUNT(*) FROM kinds WHERE i <=> ? AND u <=> ?")
            .await;
        let r = c
            .execute(
                by_null,
                vec![Value::NULL, Value::NULL, Value::NULL, Value::NULL],
            )
            .await;
        assert_eq!(r.rows, [[Value::NULL, Value::Int(1), Value::Int(3)]]);
        let r = c
            .execute(
                by_null,
                vec![
                    Value::Bytes("🦀".as_bytes().to_vec()),
                    Value::Int(7),
                    Value::Int(i64::MIN),
                    Value::UInt(u64::MAX),
                ],
            )
            .await;
        assert_eq!(
            r.rows,
            [[
                Value::Bytes("🦀".as_bytes().to_vec()),
                Value::Int(0),
                Value::Int(1)
            ]]
        );

        // The server sees characters, not bytes: a 4-byte emoji is one utf8mb4 character.
        let utf8 = match &rows[0].values[5] {
            Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            _ => unreachable!(),
        };
        let r = c
            .query("SELECT CHAR_LENGTH(t), HEX(t), LENGTH(b), HEX(b) FROM kinds WHERE id = 1")
            .await;
        assert_eq!(
            r.rows,
            [[
                text(&utf8.chars().count().to_string()),
                text(&hex(utf8.as_bytes())),
                text("256"),
                text(&hex(&(0..=255).collect::<Vec<u8>>()))
            ]]
        );
        let r = c
            .query("SELECT id, LENGTH(t), LENGTH(b) FROM kinds WHERE id IN (5, 6) ORDER BY id")
            .await;
        let lengths: Vec<Value> = rows[4..]
            .iter()
            .flat_map(|row| {
                let len = |v: &Value| match v {
                    Value::Bytes(b) => text(&b.len().to_string()),
                    _ => Value::NULL,
                };
                [
                    text(&row.id.to_string()),
                    len(&row.values[5]),
                    len(&row.values[6]),
                ]
            })
            .collect();
        assert_eq!(r.rows.concat(), lengths);

        // Text queries: the same values in as literals (row 5's 17 MiB text crosses the split
        // on the way out), and every row out as text (rows 5 and 6 cross it on the way in).
        for row in rows.iter().filter(|r| r.id != 6) {
            let literals: Vec<String> = row
                .values
                .iter()
                .zip(COLUMNS)
                .map(|(v, column)| literal(v, column))
                .collect();
            let r = c
                .query(&format!(
                    "INSERT INTO kinds_text (id, {}) VALUES ({}, {})",
                    COLUMNS.join(", "),
                    row.id,
                    literals.join(", ")
                ))
                .await;
            assert_eq!((r.affected_rows, r.warnings), (1, 0), "text row {}", row.id);
        }
        let same = COLUMNS
            .iter()
            .map(|c| format!("CAST(k.{c} AS BINARY) <=> CAST(x.{c} AS BINARY)"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let r = c
            .query(&format!(
                "SELECT COUNT(*) FROM kinds k JOIN kinds_text x USING (id) WHERE {same}"
            ))
            .await;
        assert_eq!(
            r.rows,
            [[text("5")]],
            "bound and literal values stored alike"
        );
        for row in &rows {
            let r = c
                .query(&format!(
                    "SELECT {} FROM kinds WHERE id = {}",
                    COLUMNS.join(", "),
                    row.id
                ))
                .await;
            let want: Vec<Value> = row.values.iter().map(as_text).collect();
            assert!(
                r.rows.len() == 1
                    && r.rows[0].len() == want.len()
                    && r.rows[0]
                        .iter()
                        .zip(&want)
                        .all(|(g, w)| text_cell_matches(g, w)),
                "text row {}: got [{}], want [{}]",
                row.id,
                r.rows.first().map(|r| describe_row(r)).unwrap_or_default(),
                describe_row(&want)
            );
        }
        // A value made by the server, over the split, in both result formats.
        let r = c.query("SELECT REPEAT('ab', 9 * 1024 * 1024)").await;
        assert_row(
            &r.rows,
            &[text(&"ab".repeat(9 * 1024 * 1024))],
            "REPEAT as text",
        );
        let repeat = c.prepare("SELECT REPEAT(?, ?)").await;
        let r = c
            .execute(
                repeat,
                vec![
                    Value::Bytes("ñ🦀".as_bytes().to_vec()),
                    Value::Int(3 * 1024 * 1024),
                ],
            )
            .await;
        assert_row(
            &r.rows,
            &[text(&"ñ🦀".repeat(3 * 1024 * 1024))],
            "REPEAT binary",
        );

        // Payloads of exactly 2^24-1 bytes: one full packet, then an empty one, both ways.
        // COM_QUERY: the command byte and the SQL.
        let sql_around = "SELECT LENGTH('')".len();
        let n = PACKET_PAYLOAD_BYTES_MAX - 1 - sql_around;
        let r = c
            .query(&format!("SELECT LENGTH('{}')", "q".repeat(n)))
            .await;
        assert_eq!(c.sent, PACKET_PAYLOAD_BYTES_MAX + 2 * PACKET_HEADER_BYTES);
        assert_eq!(r.rows, [[text(&n.to_string())]]);
        // COM_STMT_EXECUTE with one string: 0x17, id (4), flags (1), iterations (4), NULL
        // bitmap (1), new-params flag (1), type (2), then a 4-byte length and the bytes.
        let length = c.prepare("SELECT LENGTH(?)").await;
        let n = PACKET_PAYLOAD_BYTES_MAX - 18;
        let r = c.execute(length, vec![Value::Bytes(vec![b'p'; n])]).await;
        assert_eq!(c.sent, PACKET_PAYLOAD_BYTES_MAX + 2 * PACKET_HEADER_BYTES);
        assert_eq!(r.rows, [[Value::Int(n as i64)]]);
        // A text row of one value: a 4-byte length and the bytes.
        let n = PACKET_PAYLOAD_BYTES_MAX - 4;
        let r = c.query(&format!("SELECT REPEAT('r', {n})")).await;
        assert_row(
            &r.rows,
            &[Value::Bytes(vec![b'r'; n])],
            "text row of 2^24-1",
        );
        // A binary row of one value: header (1), NULL bitmap (1), a 4-byte length, the bytes.
        let n = PACKET_PAYLOAD_BYTES_MAX - 6;
        let r = c
            .execute(repeat, vec![text("s"), Value::Int(n as i64)])
            .await;
        assert_row(
            &r.rows,
            &[Value::Bytes(vec![b's'; n])],
            "binary row of 2^24-1",
        );
        c.assert_usable().await;
    })
    .unwrap();
}

#[test]
fn values_round_trip_uring() {
    values_round_trip(Backend::Uring);
}

#[test]
fn values_round_trip_epoll() {
    values_round_trip(Backend::Epoll);
}

// ---------------------------------------------------------------------------------------------
// Server errors
// ---------------------------------------------------------------------------------------------

fn server_errors_leave_the_connection_usable(backend: Backend) {
    let db = MariaDb::start();
    let port = db.port;
    rt::run_local(backend, async move {
        let mut c = Client::login(port, MariaDb::USER, MariaDb::PASSWORD, Some(MariaDb::DATABASE))
            .await
            .unwrap();
        c.query("CREATE TABLE nums (id INT PRIMARY KEY, v INT NOT NULL)")
            .await;
        c.query("INSERT INTO nums VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)")
            .await;
        c.query("CREATE TABLE pairs (k INT NOT NULL, x INT NOT NULL)").await;
        c.query("INSERT INTO pairs VALUES (1, 10), (2, 20), (4, 40), (4, 41)")
            .await;

        let text_cases: [(&str, u16, &str); 4] = [
            ("SELEC 1", 1064, "42000"),
            ("SELECT * FROM no_such_table", 1146, "42S02"),
            ("SELECT no_such_column FROM nums", 1054, "42S22"),
            // Rows 1 to 3 are sent before row 4's subquery finds two rows: the ERR packet ends
            // a result set that has begun.
            (
                "SELECT id, (SELECT x FROM pairs WHERE pairs.k = nums.id) FROM nums ORDER BY id",
                1242,
                "21000",
            ),
        ];
        for (sql, code, state) in text_cases {
            let e = c.refused(Command::Query(sql.into())).await;
            assert_eq!((e.code, e.state.as_str()), (code, state), "{sql}: {e}");
            assert!(!e.message.is_empty());
            c.assert_usable().await;
        }

        for (sql, code, state) in [
            ("SELEC ?", 1064, "42000"),
            ("SELECT * FROM no_such_table WHERE id = ?", 1146, "42S02"),
        ] {
            let e = c.refused(Command::Prepare(sql.into())).await;
            assert_eq!((e.code, e.state.as_str()), (code, state), "{sql}: {e}");
            c.assert_usable().await;
        }

        let insert = c.prepare("INSERT INTO nums (id, v) VALUES (?, ?)").await;
        for (params, code, state) in [
            (vec![Value::Int(1), Value::Int(9)], 1062, "23000"),
            (vec![Value::Int(9), Value::NULL], 1048, "23000"),
        ] {
            let e = c
                .refused(Command::Execute {
                    statement: insert,
                    params: params.clone(),
                })
                .await;
            assert_eq!((e.code, e.state.as_str()), (code, state), "{params:?}: {e}");
            c.assert_usable().await;
        }
        // The statement survives its errors.
        let r = c.execute(insert, vec![Value::Int(6), Value::Int(6)]).await;
        assert_eq!(r.affected_rows, 1);

        let pairs = c
            .prepare("SELECT id, (SELECT x FROM pairs WHERE pairs.k = nums.id) FROM nums WHERE id >= ? ORDER BY id")
            .await;
        let e = c
            .refused(Command::Execute {
                statement: pairs,
                params: vec![Value::Int(1)],
            })
            .await;
        assert_eq!((e.code, e.state.as_str()), (1242, "21000"), "{e}");
        c.assert_usable().await;
        let r = c.execute(pairs, vec![Value::Int(5)]).await;
        assert_eq!(
            r.rows,
            [
                [Value::Int(5), Value::NULL],
                [Value::Int(6), Value::NULL]
            ]
        );
        assert!(matches!(c.run(Command::Ping).await, Event::Pong));
    })
    .unwrap();
}

#[test]
fn server_errors_leave_the_connection_usable_uring() {
    server_errors_leave_the_connection_usable(Backend::Uring);
}

#[test]
fn server_errors_leave_the_connection_usable_epoll() {
    server_errors_leave_the_connection_usable(Backend::Epoll);
}

// ---------------------------------------------------------------------------------------------
// Query timeout
// ---------------------------------------------------------------------------------------------

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password_hash: format!("hash-of-{name}"),
    }
}

/// A statement that outlives the query timeout (an UPDATE waiting for a row lock that another
/// session holds, as long as that session wants) fails with `Timeout` about when the timeout
/// says, and the pool does not hand out that connection again: its answer would arrive later
/// and be taken for the answer to the next statement.
fn query_timeout_discards_the_connection(backend: Backend) {
    let db = MariaDb::start();
    let mut cfg = MysqlConfig::from_url(&db.url()).unwrap();
    cfg.pool_min = 1;
    cfg.pool_max = 1;
    cfg.query_timeout = Duration::from_millis(500);
    cfg.acquire_timeout = Duration::from_secs(5);
    let port = db.port;
    rt::run_local(backend, async move {
        let store = MysqlStore::connect(cfg).await.unwrap();
        let CreateUser::Created(locked) = store.create_user(new_user("locked")).await.unwrap()
        else {
            panic!("not created");
        };
        let CreateUser::Created(free) = store.create_user(new_user("free")).await.unwrap() else {
            panic!("not created");
        };
        assert_eq!(store.open_connections(), 1);

        let mut holder = Client::login(
            port,
            MariaDb::USER,
            MariaDb::PASSWORD,
            Some(MariaDb::DATABASE),
        )
        .await
        .unwrap();
        holder.query("BEGIN").await;
        holder
            .query(&format!(
                "SELECT id FROM users WHERE id = {locked} FOR UPDATE"
            ))
            .await;

        let start = Instant::now();
        let err = store
            .set_password_hash(locked, "waits-for-the-lock")
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
            "timed out after {took:?}"
        );
        assert_eq!(
            store.open_connections(),
            0,
            "the timed-out connection went back to the pool"
        );

        // The pool opens a fresh connection, which works while the lock is still held.
        assert_eq!(
            store.user_by_id(locked).await.unwrap().unwrap().username,
            "locked"
        );
        store.set_password_hash(free, "changed").await.unwrap();
        assert_eq!(store.open_connections(), 1);
        let again = store
            .set_password_hash(locked, "also-waits")
            .await
            .unwrap_err();
        assert!(matches!(again, StoreError::Timeout { .. }), "{again:?}");
        assert_eq!(store.open_connections(), 0);

        holder.query("ROLLBACK").await;
        holder.assert_usable().await;
        let creds = store
            .credentials_by_email("free@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((creds.id, creds.password_hash.as_str()), (free, "changed"));
        assert_eq!(store.users_by_ids(&[locked, free]).await.unwrap().len(), 2);
        assert_eq!(store.open_connections(), 1);
    })
    .unwrap();
}

#[test]
fn query_timeout_discards_the_connection_uring() {
    query_timeout_discards_the_connection(Backend::Uring);
}

#[test]
fn query_timeout_discards_the_connection_epoll() {
    query_timeout_discards_the_connection(Backend::Epoll);
}
