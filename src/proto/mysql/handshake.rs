//! The connection phase as a state machine: the server greeting (Protocol::HandshakeV10), our
//! HandshakeResponse41, and the authentication exchange up to the OK (or ERR) that ends it.
//!
//! [`Handshake`] works on whole payloads: `connection.rs` does the framing and the sequence
//! ids, and hands every payload to [`Handshake::handle_payload`], which answers with the payload
//! to send back, if any. Plugins: `mysql_native_password`, and `caching_sha2_password` with its
//! fast path and its full authentication, in which the password is encrypted under the server's
//! RSA public key (given up front in [`Options`], or requested from the server) with RSA-OAEP.
//! Either plugin may be asked for by an AuthSwitchRequest, once.
//!
//! It does not do TLS (so never sends the password in clear: full authentication without a
//! public key fails with [`MysqlError::PublicKeyRequired`]), connection attributes, compression,
//! COM_CHANGE_USER, or any other plugin (`sha256_password`, `client_ed25519`,
//! `mysql_clear_password`, `mysql_old_password` are [`MysqlError::UnsupportedAuthPlugin`]).

use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::{CapabilityFlags, StatusFlags, UTF8MB4_GENERAL_CI};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;

use super::command::{decode_err, decode_ok, is_err, is_ok};
use super::reader::{Reader, put_lenenc_bytes};
use super::seeded_rng::SeededRng;
use super::{
    MYSQL_COLUMNS_MAX, MYSQL_PACKET_BYTES_MAX, MYSQL_PUBLIC_KEY_BYTES_MAX, MYSQL_RESULT_BYTES_MAX,
    MYSQL_RESULT_ROWS_MAX, MysqlError,
};

/// The name of the `mysql_native_password` plugin (MariaDB's default).
pub const AUTH_MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
/// The name of the `caching_sha2_password` plugin (MySQL 8's default).
pub const AUTH_CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// Bytes of the scramble (nonce) both plugins use.
const SCRAMBLE_BYTES: usize = 20;

/// `caching_sha2_password` over AuthMoreData: "0x03 value means success authentication. 0x04
/// value means continue" (with full authentication).
const FAST_AUTH_SUCCESS: u8 = 0x03;
const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// Our request for the server's RSA public key: "Public Key Request: fixed 0x02 value".
const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// The capabilities we ask for when the server offers them. Never `CLIENT_MULTI_STATEMENTS`,
/// `CLIENT_MULTI_RESULTS` or `CLIENT_PS_MULTI_RESULTS` (one result per command keeps the
/// response state machine simple; we call no stored procedures), `CLIENT_LOCAL_FILES` (a
/// server must never make us read files), `CLIENT_SSL`, `CLIENT_COMPRESS`,
/// `CLIENT_SESSION_TRACK`, `CLIENT_CONNECT_ATTRS`, `CLIENT_QUERY_ATTRIBUTES` or
/// `CLIENT_OPTIONAL_RESULTSET_METADATA`.
fn wanted_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// What a connection needs to log in.
#[derive(Clone)]
pub struct Options {
    pub user: String,
    pub password: Vec<u8>,
    /// The default database (`CLIENT_CONNECT_WITH_DB`), if any.
    pub database: Option<String>,
    /// The server's RSA public key as PEM (`-----BEGIN PUBLIC KEY-----`, or PKCS#1's
    /// `-----BEGIN RSA PUBLIC KEY-----`), for `caching_sha2_password` full authentication.
    /// Passing it up front saves a round trip and closes the door on a man in the middle
    /// handing us his own key.
    pub server_public_key_pem: Option<String>,
    /// Whether to ask the server for its RSA public key when full authentication needs one and
    /// none was given. On (the default) because the key travels in clear either way without
    /// TLS; turn it off where the key is pinned above.
    pub allow_public_key_retrieval: bool,
    /// Fresh random bytes from the operating system, drawn for this connection. Used only for
    /// the RSA-OAEP padding of full authentication.
    pub random_seed: [u8; 32],
    /// The limits of this connection: the named constants unless lowered.
    pub limits: Limits,
}

/// A connection's limits. Each defaults to its named constant and can only be lowered (tests
/// lower them to reach them cheaply; a deployment may lower them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`MYSQL_PACKET_BYTES_MAX`].
    pub packet_bytes_max: usize,
    /// See [`MYSQL_COLUMNS_MAX`].
    pub columns_max: usize,
    /// See [`MYSQL_RESULT_ROWS_MAX`].
    pub result_rows_max: usize,
    /// See [`MYSQL_RESULT_BYTES_MAX`].
    pub result_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            packet_bytes_max: MYSQL_PACKET_BYTES_MAX,
            columns_max: MYSQL_COLUMNS_MAX,
            result_rows_max: MYSQL_RESULT_ROWS_MAX,
            result_bytes_max: MYSQL_RESULT_BYTES_MAX,
        }
    }
}

impl Limits {
    /// Each limit, at most its named constant.
    pub fn clamped(self) -> Limits {
        Limits {
            packet_bytes_max: self.packet_bytes_max.min(MYSQL_PACKET_BYTES_MAX),
            columns_max: self.columns_max.min(MYSQL_COLUMNS_MAX),
            result_rows_max: self.result_rows_max.min(MYSQL_RESULT_ROWS_MAX),
            result_bytes_max: self.result_bytes_max.min(MYSQL_RESULT_BYTES_MAX),
        }
    }
}

impl Options {
    pub fn new(
        user: impl Into<String>,
        password: impl Into<Vec<u8>>,
        random_seed: [u8; 32],
    ) -> Self {
        Options {
            user: user.into(),
            password: password.into(),
            database: None,
            server_public_key_pem: None,
            allow_public_key_retrieval: true,
            random_seed,
            limits: Limits::default(),
        }
    }

    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    pub fn server_public_key_pem(mut self, pem: impl Into<String>) -> Self {
        self.server_public_key_pem = Some(pem.into());
        self
    }

    pub fn allow_public_key_retrieval(mut self, allow: bool) -> Self {
        self.allow_public_key_retrieval = allow;
        self
    }

    /// Lowers limits (never raises them past the named constants).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits.clamped();
        self
    }
}

/// Never prints the password or the seed.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field(
                "server_public_key_pem",
                &self.server_public_key_pem.is_some(),
            )
            .field(
                "allow_public_key_retrieval",
                &self.allow_public_key_retrieval,
            )
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What the handshake learned about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// As the server wrote it, e.g. `8.4.3` or `5.5.5-10.11.14-MariaDB-0+deb12u2`.
    pub server_version: String,
    pub connection_id: u32,
    /// The capabilities both sides agreed on.
    pub capabilities: CapabilityFlags,
    /// The plugin that authenticated us.
    pub auth_plugin: &'static str,
    /// The status flags of the final OK packet.
    pub status: StatusFlags,
}

impl ServerInfo {
    /// Whether result sets end with an OK packet instead of EOF packets (`CLIENT_DEPRECATE_EOF`).
    pub fn deprecate_eof(&self) -> bool {
        self.capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }
}

/// Where the connection phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeState {
    /// Waiting for the server's Protocol::HandshakeV10.
    AwaitingGreeting,
    /// Our auth response (HandshakeResponse41, or the answer to an AuthSwitchRequest) is sent;
    /// OK, ERR, AuthSwitchRequest or AuthMoreData may follow.
    AwaitingAuthResult,
    /// `caching_sha2_password` said its fast path succeeded; the OK follows.
    AwaitingFastAuthOk,
    /// We asked for the server's RSA public key.
    AwaitingPublicKey,
    /// The RSA-encrypted password is sent; OK or ERR follows.
    AwaitingFullAuthResult,
    /// The server accepted us.
    Done,
    /// The server refused us, or broke the protocol.
    Failed,
}

/// What to do after a payload of the connection phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Send this payload (in the next packet of the exchange) and wait for the next one.
    Reply(Vec<u8>),
    /// Nothing to send; wait for the next payload.
    Wait,
    /// Authenticated: the command phase begins.
    Done(ServerInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    NativePassword,
    CachingSha2Password,
}

impl Plugin {
    fn from_name(name: &[u8]) -> Option<Plugin> {
        match name {
            b"mysql_native_password" => Some(Plugin::NativePassword),
            b"caching_sha2_password" => Some(Plugin::CachingSha2Password),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Plugin::NativePassword => AUTH_MYSQL_NATIVE_PASSWORD,
            Plugin::CachingSha2Password => AUTH_CACHING_SHA2_PASSWORD,
        }
    }
}

/// The connection phase of one connection.
#[derive(Clone)]
pub struct Handshake {
    state: HandshakeState,
    user: String,
    password: Vec<u8>,
    database: Option<String>,
    public_key: Option<rsa::PublicKey>,
    allow_public_key_retrieval: bool,
    rng: SeededRng,
    packet_bytes_max: usize,
    /// Known once the greeting is decoded.
    server_version: String,
    connection_id: u32,
    capabilities: CapabilityFlags,
    plugin: Plugin,
    scramble: [u8; SCRAMBLE_BYTES],
    /// An AuthSwitchRequest was answered; a second one is a protocol violation.
    switched: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("state", &self.state)
            .field("user", &self.user)
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Checks the options (names must not contain NUL, a given public key must parse).
    pub fn new(options: &Options) -> Result<Handshake, MysqlError> {
        if options.user.contains('\0') {
            return Err(MysqlError::InvalidOption("user name contains NUL"));
        }
        if options
            .database
            .as_deref()
            .is_some_and(|d| d.contains('\0'))
        {
            return Err(MysqlError::InvalidOption("database name contains NUL"));
        }
        let public_key = match &options.server_public_key_pem {
            None => None,
            Some(pem) => Some(
                parse_public_key(pem.as_bytes())
                    .map_err(|_| MysqlError::InvalidOption("server public key does not parse"))?,
            ),
        };
        Ok(Handshake {
            state: HandshakeState::AwaitingGreeting,
            user: options.user.clone(),
            password: options.password.clone(),
            database: options.database.clone(),
            public_key,
            allow_public_key_retrieval: options.allow_public_key_retrieval,
            rng: SeededRng::new(options.random_seed),
            packet_bytes_max: options.limits.clamped().packet_bytes_max,
            server_version: String::new(),
            connection_id: 0,
            capabilities: CapabilityFlags::empty(),
            plugin: Plugin::NativePassword,
            scramble: [0; SCRAMBLE_BYTES],
            switched: false,
        })
    }

    pub fn state(&self) -> HandshakeState {
        self.state
    }

    /// Handles one whole payload from the server. An error leaves the handshake
    /// [`HandshakeState::Failed`] for good.
    pub fn handle_payload(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        let step = match self.state {
            HandshakeState::AwaitingGreeting => self.handle_greeting(payload),
            HandshakeState::AwaitingAuthResult => self.handle_auth_result(payload),
            HandshakeState::AwaitingFastAuthOk | HandshakeState::AwaitingFullAuthResult => {
                self.handle_final(payload)
            }
            HandshakeState::AwaitingPublicKey => self.handle_public_key(payload),
            HandshakeState::Done | HandshakeState::Failed => Err(MysqlError::Malformed(
                "packet after the connection phase ended",
            )),
        };
        if step.is_err() {
            self.state = HandshakeState::Failed;
        }
        step
    }

    fn handle_greeting(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        // "It starts with the client connect()ing to the server which may send a ERR packet and
        // finish the handshake or send a Initial Handshake Packet." An ERR this early has no
        // SQL state (host blocked, too many connections).
        if is_err(payload) {
            return Err(MysqlError::Server(decode_err(payload)?));
        }
        let greeting = decode_greeting(payload)?;
        // "Since 3.21.0 the Protocol::HandshakeV10 is sent"; earlier ones we do not speak.
        if greeting.protocol_version != 10 {
            return Err(MysqlError::Unsupported("protocol version other than 10"));
        }
        let required = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        if !greeting.capabilities.contains(required) {
            return Err(MysqlError::Unsupported(
                "server lacks CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION or CLIENT_PLUGIN_AUTH",
            ));
        }
        // "The client should only announce the capabilities in the Handshake Response Packet
        // that it has in common with the server."
        let mut capabilities = wanted_capabilities() & greeting.capabilities;
        if self.database.is_some()
            && greeting
                .capabilities
                .contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB)
        {
            capabilities |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        }
        self.capabilities = capabilities;
        self.server_version = String::from_utf8_lossy(greeting.server_version).into_owned();
        self.connection_id = greeting.connection_id;
        self.scramble = scramble_of(&greeting.auth_plugin_data)?;
        // Answer in the server's default plugin when we speak it; otherwise in
        // mysql_native_password, and the server switches us to the account's plugin if that
        // differs (AuthSwitchRequest).
        self.plugin =
            Plugin::from_name(greeting.auth_plugin_name).unwrap_or(Plugin::NativePassword);

        let auth_response = self.auth_response();
        let mut out = Vec::with_capacity(64 + self.user.len() + auth_response.len());
        out.extend_from_slice(&capabilities.bits().to_le_bytes());
        let max_packet = u32::try_from(self.packet_bytes_max).unwrap_or(u32::MAX);
        out.extend_from_slice(&max_packet.to_le_bytes());
        // utf8mb4_general_ci: full UTF-8 (emoji included) on MariaDB 10.6+ and MySQL 8 alike;
        // MySQL 8's own default (255, utf8mb4_0900_ai_ci) does not exist on MariaDB.
        out.push(UTF8MB4_GENERAL_CI as u8);
        out.extend_from_slice(&[0; 23]);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            put_lenenc_bytes(&mut out, &auth_response);
        } else {
            // The auth responses of both plugins are 32 bytes at most.
            out.push(auth_response.len() as u8);
            out.extend_from_slice(&auth_response);
        }
        if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) {
            let database = self.database.as_deref().unwrap_or_default();
            out.extend_from_slice(database.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(self.plugin.name().as_bytes());
        out.push(0);
        self.state = HandshakeState::AwaitingAuthResult;
        Ok(HandshakeStep::Reply(out))
    }

    /// The scrambled password for the current plugin and scramble; empty for an empty password
    /// (both plugins send nothing then).
    fn auth_response(&self) -> Vec<u8> {
        match self.plugin {
            Plugin::NativePassword => scramble_native(&self.scramble, &self.password)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
            Plugin::CachingSha2Password => scramble_sha256(&self.scramble, &self.password)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        }
    }

    fn handle_auth_result(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        match payload.first() {
            Some(0x00) if is_ok(payload) => self.done(payload),
            Some(0xff) => Err(MysqlError::Server(decode_err(payload)?)),
            Some(0xfe) => self.handle_auth_switch(payload),
            // "Protocol::AuthMoreData: int<1> 0x01; string<EOF> authentication method data".
            Some(0x01) if self.plugin == Plugin::CachingSha2Password => match payload.get(1..) {
                Some([FAST_AUTH_SUCCESS]) => {
                    self.state = HandshakeState::AwaitingFastAuthOk;
                    Ok(HandshakeStep::Wait)
                }
                Some([PERFORM_FULL_AUTHENTICATION]) => self.start_full_authentication(),
                _ => Err(MysqlError::Malformed(
                    "caching_sha2_password: AuthMoreData is neither 0x03 nor 0x04",
                )),
            },
            Some(0x01) => Err(MysqlError::Malformed(
                "AuthMoreData for mysql_native_password",
            )),
            _ => Err(MysqlError::Malformed(
                "expected OK, ERR, AuthSwitchRequest or AuthMoreData",
            )),
        }
    }

    /// "Protocol::AuthSwitchRequest: int<1> 0xFE; string<NUL> plugin name; string<EOF> auth
    /// plugin data". The client answers with the plugin's response to the new data.
    fn handle_auth_switch(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        if self.switched {
            return Err(MysqlError::Malformed("second AuthSwitchRequest"));
        }
        self.switched = true;
        let mut reader = Reader::new(&payload[1..]);
        // "Protocol::OldAuthSwitchRequest ... 0xfe alone": switch to mysql_old_password.
        if reader.is_empty() {
            return Err(MysqlError::UnsupportedAuthPlugin(
                "mysql_old_password".to_string(),
            ));
        }
        let name = reader.nul_bytes("AuthSwitchRequest plugin name")?;
        let data = reader.rest();
        let Some(plugin) = Plugin::from_name(name) else {
            return Err(MysqlError::UnsupportedAuthPlugin(
                String::from_utf8_lossy(name).into_owned(),
            ));
        };
        self.plugin = plugin;
        self.scramble = scramble_of(data)?;
        self.state = HandshakeState::AwaitingAuthResult;
        Ok(HandshakeStep::Reply(self.auth_response()))
    }

    fn start_full_authentication(&mut self) -> Result<HandshakeStep, MysqlError> {
        // "If connection uses SSL: client sends a clear password answer. Else: if client
        // doesn't know server RSA public key: client sends a public key request."
        if self.public_key.is_some() {
            let encrypted = self.encrypt_password()?;
            self.state = HandshakeState::AwaitingFullAuthResult;
            return Ok(HandshakeStep::Reply(encrypted));
        }
        if !self.allow_public_key_retrieval {
            return Err(MysqlError::PublicKeyRequired);
        }
        self.state = HandshakeState::AwaitingPublicKey;
        Ok(HandshakeStep::Reply(vec![REQUEST_PUBLIC_KEY]))
    }

    fn handle_public_key(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        match payload.first() {
            Some(0xff) => Err(MysqlError::Server(decode_err(payload)?)),
            // "Public Key Response: fixed 0x01 value; public key data."
            Some(0x01) => {
                let pem = &payload[1..];
                if pem.len() > MYSQL_PUBLIC_KEY_BYTES_MAX {
                    return Err(MysqlError::PublicKey(
                        "longer than MYSQL_PUBLIC_KEY_BYTES_MAX",
                    ));
                }
                self.public_key = Some(parse_public_key(pem)?);
                let encrypted = self.encrypt_password()?;
                self.state = HandshakeState::AwaitingFullAuthResult;
                Ok(HandshakeStep::Reply(encrypted))
            }
            _ => Err(MysqlError::Malformed(
                "expected the public key (0x01) or ERR",
            )),
        }
    }

    /// "RSA encrypted value of XOR(password, seed) using server public key
    /// (RSA_PKCS1_OAEP_PADDING)": the password with its terminating NUL, XORed with the
    /// scramble repeated, then RSA-OAEP with SHA-1 (MySQL 8.0.5 and later).
    fn encrypt_password(&mut self) -> Result<Vec<u8>, MysqlError> {
        let key = self
            .public_key
            .as_ref()
            .expect("callers set the public key first");
        let mut plain = Vec::with_capacity(self.password.len() + 1);
        plain.extend_from_slice(&self.password);
        plain.push(0);
        for (byte, mask) in plain.iter_mut().zip(self.scramble.iter().cycle()) {
            *byte ^= mask;
        }
        key.oaep_encrypt_with_rng::<sha1::Sha1, _>(&mut self.rng, &plain)
            .map_err(|_| {
                MysqlError::PublicKey("cannot encrypt the password (too long for the key?)")
            })
    }

    fn handle_final(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        match payload.first() {
            Some(0x00) if is_ok(payload) => self.done(payload),
            Some(0xff) => Err(MysqlError::Server(decode_err(payload)?)),
            _ => Err(MysqlError::Malformed(
                "expected OK or ERR to end authentication",
            )),
        }
    }

    fn done(&mut self, payload: &[u8]) -> Result<HandshakeStep, MysqlError> {
        let ok = decode_ok(payload)?;
        self.state = HandshakeState::Done;
        Ok(HandshakeStep::Done(ServerInfo {
            server_version: std::mem::take(&mut self.server_version),
            connection_id: self.connection_id,
            capabilities: self.capabilities,
            auth_plugin: self.plugin.name(),
            status: ok.status,
        }))
    }
}

/// The fields of Protocol::HandshakeV10 we use, borrowed from the payload.
#[derive(Debug)]
struct Greeting<'a> {
    protocol_version: u8,
    server_version: &'a [u8],
    connection_id: u32,
    capabilities: CapabilityFlags,
    /// Both parts of the scramble, the terminating NUL of the second part included.
    auth_plugin_data: Vec<u8>,
    auth_plugin_name: &'a [u8],
}

fn decode_greeting(payload: &[u8]) -> Result<Greeting<'_>, MysqlError> {
    let mut r = Reader::new(payload);
    let protocol_version = r.u8("greeting: protocol version")?;
    if protocol_version != 10 {
        return Ok(Greeting {
            protocol_version,
            server_version: &[],
            connection_id: 0,
            capabilities: CapabilityFlags::empty(),
            auth_plugin_data: Vec::new(),
            auth_plugin_name: &[],
        });
    }
    let server_version = r.nul_bytes("greeting: server version")?;
    let connection_id = r.u32("greeting: thread id")?;
    let part1 = r.take(8, "greeting: auth-plugin-data-part-1")?;
    let _filler = r.u8("greeting: filler")?;
    let capabilities_low = r.u16("greeting: capability flags")?;
    // "if more data in the packet": servers too old to send the rest lack
    // CLIENT_PROTOCOL_41, which the caller refuses.
    if r.is_empty() {
        return Ok(Greeting {
            protocol_version,
            server_version,
            connection_id,
            capabilities: CapabilityFlags::from_bits_truncate(u32::from(capabilities_low)),
            auth_plugin_data: part1.to_vec(),
            auth_plugin_name: &[],
        });
    }
    let _character_set = r.u8("greeting: character set")?;
    let _status = r.u16("greeting: status flags")?;
    let capabilities_high = r.u16("greeting: capability flags 2")?;
    let capabilities = CapabilityFlags::from_bits_truncate(
        u32::from(capabilities_low) | u32::from(capabilities_high) << 16,
    );
    let auth_plugin_data_len = r.u8("greeting: auth plugin data length")?;
    // "string[10] reserved. All 0s." (MariaDB keeps its extended capabilities in the last four.)
    r.take(10, "greeting: reserved")?;
    let mut auth_plugin_data = part1.to_vec();
    if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        // "$len=MAX(13, length of auth-plugin-data - 8)"
        let len = usize::from(auth_plugin_data_len).saturating_sub(8).max(13);
        auth_plugin_data.extend_from_slice(r.take(len, "greeting: auth-plugin-data-part-2")?);
    }
    let auth_plugin_name = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        // "string<NUL> auth-plugin name". MySQL 5.5.7 to 5.5.9 left the NUL out (bug #59453),
        // so the end of the payload ends the name too.
        let rest = r.rest();
        match rest.iter().position(|&b| b == 0) {
            Some(end) => &rest[..end],
            None => rest,
        }
    } else {
        &[]
    };
    Ok(Greeting {
        protocol_version,
        server_version,
        connection_id,
        capabilities,
        auth_plugin_data,
        auth_plugin_name,
    })
}

/// The 20-byte scramble from the auth plugin data of a greeting or an AuthSwitchRequest, which
/// servers end with a NUL that is not part of it.
fn scramble_of(data: &[u8]) -> Result<[u8; SCRAMBLE_BYTES], MysqlError> {
    data.get(..SCRAMBLE_BYTES)
        .and_then(|s| <[u8; SCRAMBLE_BYTES]>::try_from(s).ok())
        .ok_or(MysqlError::Malformed(
            "auth plugin data shorter than 20 bytes",
        ))
}

/// Parses an RSA public key in PEM, SubjectPublicKeyInfo (what MySQL sends) or PKCS#1.
fn parse_public_key(pem: &[u8]) -> Result<rsa::PublicKey, MysqlError> {
    let text = std::str::from_utf8(pem).map_err(|_| MysqlError::PublicKey("not UTF-8"))?;
    let text = text.trim_matches(|c: char| c == '\0' || c.is_ascii_whitespace());
    rsa::PublicKey::from_public_key_pem(text)
        .or_else(|_| rsa::PublicKey::from_pkcs1_pem(text))
        .map_err(|_| MysqlError::PublicKey("not an RSA public key in PEM"))
}
