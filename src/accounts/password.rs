//! Password hashes as PHC strings: new ones in argon2id, and verification of both argon2id and
//! the reference's scrypt (shared/spec/compat.md, "MySQL data model").
//!
//! - [`hash_argon2id`] hashes with OWASP's recommended argon2id parameters (19 MiB, 2 passes,
//!   1 lane), a 16-byte salt from the OS, and a 32-byte output, written as
//!   `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
//! - [`verify`] checks a password against a stored PHC string, either that argon2id form or the
//!   reference's `$scrypt$ln=14,r=8,p=1$<salt>$<hash>`, and says whether the stored hash should
//!   be replaced by a new one ([`Verified::Ok`]'s `needs_upgrade`): every scrypt hash, and
//!   argon2id hashes weaker than today's parameters.
//! - [`dummy_verify`] costs what verifying a current hash costs, for logins with an unknown
//!   email, so that they take as long as a wrong password.
//!
//! Design choices. Both PHC forms are parsed here rather than by the `password-hash` crate (which
//! the argon2 and scrypt crates offer behind features; scrypt's uses the same `ln`, `r`, `p`
//! names as the reference). Parsing ourselves lets every parameter of a stored hash be checked
//! against a named bound (`STORED_*`) before anything is allocated, where those crates accept
//! anything that does not overflow, so a hostile or corrupt database row cannot make a worker
//! allocate gigabytes or spin for minutes; and it keeps both schemes' checks in one place. Nothing here panics on a stored string; what cannot be verified is
//! [`Verified::Unsupported`], the database's fault. Derived keys are compared in constant time.
//!
//! These functions are CPU-heavy (tens of milliseconds each in release): callers on a core's
//! event loop run them on [`crate::rt::Workers`], never inline.
//!
//! Not here: pepper/secret keys, zeroizing derived keys, bcrypt or other schemes, and the
//! timing difference between an unknown email (an argon2id-cost dummy) and a known one whose
//! stored hash is still the reference's scrypt (ln=14 costs a different time); that difference
//! shrinks as users log in and their hashes are upgraded.

use std::fmt;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Version};
use base64ct::{Base64Unpadded, Encoding};

/// argon2id memory for new hashes, in KiB (OWASP Password Storage Cheat Sheet: m=19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// argon2id passes for new hashes (OWASP: t=2).
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id lanes for new hashes (OWASP: p=1).
pub const ARGON2_LANES: u32 = 1;
/// Salt bytes for new hashes (the PHC string format recommends 16).
pub const ARGON2_SALT_BYTES: usize = 16;
/// Output bytes for new hashes.
pub const ARGON2_HASH_BYTES: usize = 32;

/// The longest stored PHC string looked at; anything longer is refused unparsed.
pub const PHC_STRING_BYTES_MAX: usize = 512;
/// The shortest salt accepted in a stored hash (argon2's own minimum).
pub const STORED_SALT_BYTES_MIN: usize = 8;
/// The longest salt accepted in a stored hash.
pub const STORED_SALT_BYTES_MAX: usize = 64;
/// The shortest derived key accepted in a stored hash.
pub const STORED_HASH_BYTES_MIN: usize = 16;
/// The longest derived key accepted in a stored hash.
pub const STORED_HASH_BYTES_MAX: usize = 64;
/// The most memory a stored argon2id hash may ask for, in KiB (256 MiB: 13 times today's).
pub const STORED_ARGON2_MEMORY_KIB_MAX: u32 = 256 * 1024;
/// The most passes a stored argon2id hash may ask for.
pub const STORED_ARGON2_ITERATIONS_MAX: u32 = 16;
/// The most lanes a stored argon2id hash may ask for (they run one after another here).
pub const STORED_ARGON2_LANES_MAX: u32 = 16;
/// The largest log2(N) a stored scrypt hash may ask for (the reference uses 14).
pub const STORED_SCRYPT_LOG_N_MAX: u32 = 20;
/// The largest block size r a stored scrypt hash may ask for (the reference uses 8).
pub const STORED_SCRYPT_BLOCK_SIZE_MAX: u32 = 32;
/// The largest parallelism p a stored scrypt hash may ask for (the reference uses 1).
pub const STORED_SCRYPT_PARALLELISM_MAX: u32 = 16;
/// The most memory a stored scrypt hash may ask for, 128·r·(N + p) bytes (256 MiB; the
/// reference's ln=14, r=8 needs 16 MiB). With r=8 this caps log2(N) at 18.
pub const STORED_SCRYPT_MEMORY_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// The most decimal digits in a PHC parameter value (the PHC string format's limit).
const PHC_DECIMAL_DIGITS_MAX: usize = 10;
/// The longest algorithm identifier the PHC string format allows.
const PHC_ID_BYTES_MAX: usize = 32;
/// `v=19`: argon2 version 1.3, the only one new hashes use.
const ARGON2_VERSION_CURRENT: u32 = 0x13;
/// `v=16`: argon2 version 1.0, also what a PHC string without `v=` means.
const ARGON2_VERSION_LEGACY: u32 = 0x10;

/// Hashing a new password failed. Both causes are ringchat's own (internal), never the
/// client's: the REST layer answers 500.
#[derive(Debug)]
pub enum PasswordError {
    /// The OS random number generator did not give a salt.
    Random(getrandom::Error),
    /// argon2 refused its inputs (cannot happen with our constants and a password of at most
    /// 4 GiB).
    Argon2(argon2::Error),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Random(e) => write!(f, "internal: no random salt from the OS: {e}"),
            PasswordError::Argon2(e) => write!(f, "internal: argon2id hashing failed: {e}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The password matches. `needs_upgrade`: store a fresh [`hash_argon2id`] of it, because
    /// the stored hash is scrypt or weaker than today's argon2id parameters.
    Ok { needs_upgrade: bool },
    /// The password does not match.
    Wrong,
    /// The stored string is not a hash this module can check (unknown scheme, malformed, or
    /// parameters beyond the `STORED_*` bounds). The database's fault: log the reason (it never
    /// quotes the salt or hash) and answer as for a wrong password.
    Unsupported(String),
}

/// Hashes `password` with argon2id at today's parameters, with a fresh random salt.
pub fn hash_argon2id(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; ARGON2_SALT_BYTES];
    getrandom::fill(&mut salt).map_err(PasswordError::Random)?;
    let mut hash = [0u8; ARGON2_HASH_BYTES];
    let params = Argon2Params {
        version: ARGON2_VERSION_CURRENT,
        memory_kib: ARGON2_MEMORY_KIB,
        iterations: ARGON2_ITERATIONS,
        lanes: ARGON2_LANES,
    };
    params
        .context(ARGON2_HASH_BYTES)
        .map_err(PasswordError::Argon2)?
        .hash_password_into(password, &salt, &mut hash)
        .map_err(PasswordError::Argon2)?;
    Ok(encode_argon2id(&params, &salt, &hash))
}

/// Checks `password` against the stored PHC string `phc`. Never panics on any `phc`.
pub fn verify(password: &[u8], phc: &str) -> Verified {
    match verify_phc(password, phc) {
        Ok(verified) => verified,
        Err(reason) => Verified::Unsupported(reason),
    }
}

/// Does the work of verifying a password against a current argon2id hash and throws the
/// answer away: for logins whose email is unknown, so that they cost what a wrong password
/// costs. The dummy hash is made once, lazily; its salt and "hash" are random bytes, not a hash
/// of anything, so no password matches it.
pub fn dummy_verify(password: &[u8]) {
    std::hint::black_box(verify(password, dummy_phc()));
}

/// The dummy hash [`dummy_verify`] checks against, made on first use.
fn dummy_phc() -> &'static str {
    static DUMMY_PHC: OnceLock<String> = OnceLock::new();
    DUMMY_PHC.get_or_init(|| {
        let mut salt = [0u8; ARGON2_SALT_BYTES];
        let mut hash = [0u8; ARGON2_HASH_BYTES];
        // Zeros would do as well if the OS had no randomness: nothing here is secret.
        let _ = getrandom::fill(&mut salt);
        let _ = getrandom::fill(&mut hash);
        let params = Argon2Params {
            version: ARGON2_VERSION_CURRENT,
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            lanes: ARGON2_LANES,
        };
        encode_argon2id(&params, &salt, &hash)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Argon2Params {
    version: u32,
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
}

impl Argon2Params {
    fn context(&self, hash_bytes: usize) -> Result<Argon2<'static>, argon2::Error> {
        let version = if self.version == ARGON2_VERSION_LEGACY {
            Version::V0x10
        } else {
            Version::V0x13
        };
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.lanes,
            Some(hash_bytes),
        )?;
        Ok(Argon2::new(Algorithm::Argon2id, version, params))
    }

    /// Weaker than what [`hash_argon2id`] writes today.
    fn is_weaker_than_current(&self) -> bool {
        self.version != ARGON2_VERSION_CURRENT
            || self.memory_kib < ARGON2_MEMORY_KIB
            || self.iterations < ARGON2_ITERATIONS
    }
}

fn encode_argon2id(params: &Argon2Params, salt: &[u8], hash: &[u8]) -> String {
    let mut salt_b64 = [0u8; STORED_SALT_BYTES_MAX * 4 / 3 + 4];
    let mut hash_b64 = [0u8; STORED_HASH_BYTES_MAX * 4 / 3 + 4];
    let salt_b64 = Base64Unpadded::encode(salt, &mut salt_b64)
        .expect("the buffer fits STORED_SALT_BYTES_MAX, more than any salt we write");
    let hash_b64 = Base64Unpadded::encode(hash, &mut hash_b64)
        .expect("the buffer fits STORED_HASH_BYTES_MAX, more than any hash we write");
    format!(
        "$argon2id$v={}$m={},t={},p={}${salt_b64}${hash_b64}",
        params.version, params.memory_kib, params.iterations, params.lanes
    )
}

/// A stored PHC string taken apart: `$<id>[$v=<version>]$<params>$<salt>$<hash>`.
struct Phc<'a> {
    id: &'a str,
    version: Option<&'a str>,
    params: &'a str,
    salt: &'a str,
    hash: &'a str,
}

fn split_phc(phc: &str) -> Result<Phc<'_>, String> {
    if phc.len() > PHC_STRING_BYTES_MAX {
        return Err(format!(
            "stored password hash: longer than {PHC_STRING_BYTES_MAX} bytes"
        ));
    }
    let Some(rest) = phc.strip_prefix('$') else {
        return Err("stored password hash: not a PHC string (no leading '$')".into());
    };
    let fields: Vec<&str> = rest.split('$').collect();
    let (id, version, params, salt, hash) = match fields.as_slice() {
        [id, version, params, salt, hash] if version.starts_with("v=") => {
            (*id, Some(*version), *params, *salt, *hash)
        }
        [id, params, salt, hash] => (*id, None, *params, *salt, *hash),
        _ => {
            return Err(
                "stored password hash: not `$id[$v=..]$params$salt$hash` in PHC form".into(),
            );
        }
    };
    let id_ok = !id.is_empty()
        && id.len() <= PHC_ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err("stored password hash: malformed algorithm identifier".into());
    }
    Ok(Phc {
        id,
        version: version.map(|v| &v["v=".len()..]),
        params,
        salt,
        hash,
    })
}

fn verify_phc(password: &[u8], phc: &str) -> Result<Verified, String> {
    let phc = split_phc(phc)?;
    match phc.id {
        "argon2id" => verify_argon2id(password, &phc),
        "scrypt" => verify_scrypt(password, &phc),
        other => Err(format!(
            "stored password hash: unsupported algorithm {other:?}"
        )),
    }
}

fn verify_argon2id(password: &[u8], phc: &Phc<'_>) -> Result<Verified, String> {
    let version = match phc.version {
        None => ARGON2_VERSION_LEGACY,
        Some(v) => match decimal(v) {
            Some(v @ (ARGON2_VERSION_LEGACY | ARGON2_VERSION_CURRENT)) => v,
            _ => return Err("stored argon2id hash: unsupported version".into()),
        },
    };
    let [memory_kib, iterations, lanes] = phc_params(phc.params, ["m", "t", "p"])
        .map_err(|e| format!("stored argon2id hash: {e}"))?;
    if memory_kib > STORED_ARGON2_MEMORY_KIB_MAX {
        return Err(format!(
            "stored argon2id hash: m over {STORED_ARGON2_MEMORY_KIB_MAX} KiB"
        ));
    }
    if !(1..=STORED_ARGON2_ITERATIONS_MAX).contains(&iterations) {
        return Err(format!(
            "stored argon2id hash: t outside 1..={STORED_ARGON2_ITERATIONS_MAX}"
        ));
    }
    if !(1..=STORED_ARGON2_LANES_MAX).contains(&lanes) {
        return Err(format!(
            "stored argon2id hash: p outside 1..={STORED_ARGON2_LANES_MAX}"
        ));
    }
    let mut salt = [0u8; STORED_SALT_BYTES_MAX];
    let salt = decode_b64(phc.salt, &mut salt, STORED_SALT_BYTES_MIN)
        .map_err(|e| format!("stored argon2id hash: salt {e}"))?;
    let mut expected = [0u8; STORED_HASH_BYTES_MAX];
    let expected = decode_b64(phc.hash, &mut expected, STORED_HASH_BYTES_MIN)
        .map_err(|e| format!("stored argon2id hash: hash {e}"))?;

    let params = Argon2Params {
        version,
        memory_kib,
        iterations,
        lanes,
    };
    let mut derived = [0u8; STORED_HASH_BYTES_MAX];
    let derived = &mut derived[..expected.len()];
    params
        .context(expected.len())
        .and_then(|argon2| argon2.hash_password_into(password, salt, derived))
        .map_err(|e| format!("stored argon2id hash: parameters refused: {e}"))?;
    if !constant_time_eq(derived, expected) {
        return Ok(Verified::Wrong);
    }
    let needs_upgrade = params.is_weaker_than_current()
        || salt.len() < ARGON2_SALT_BYTES
        || expected.len() < ARGON2_HASH_BYTES;
    Ok(Verified::Ok { needs_upgrade })
}

fn verify_scrypt(password: &[u8], phc: &Phc<'_>) -> Result<Verified, String> {
    if phc.version.is_some() {
        return Err("stored scrypt hash: unexpected version field".into());
    }
    let [log_n, block_size, parallelism] =
        phc_params(phc.params, ["ln", "r", "p"]).map_err(|e| format!("stored scrypt hash: {e}"))?;
    if !(1..=STORED_SCRYPT_LOG_N_MAX).contains(&log_n) {
        return Err(format!(
            "stored scrypt hash: ln outside 1..={STORED_SCRYPT_LOG_N_MAX}"
        ));
    }
    if !(1..=STORED_SCRYPT_BLOCK_SIZE_MAX).contains(&block_size) {
        return Err(format!(
            "stored scrypt hash: r outside 1..={STORED_SCRYPT_BLOCK_SIZE_MAX}"
        ));
    }
    if !(1..=STORED_SCRYPT_PARALLELISM_MAX).contains(&parallelism) {
        return Err(format!(
            "stored scrypt hash: p outside 1..={STORED_SCRYPT_PARALLELISM_MAX}"
        ));
    }
    // scrypt allocates 128·r·N bytes for V and 128·r·p for B; the bounds above keep this
    // product far from overflowing a u64.
    let memory_bytes = 128 * u64::from(block_size) * ((1u64 << log_n) + u64::from(parallelism));
    if memory_bytes > STORED_SCRYPT_MEMORY_BYTES_MAX {
        return Err(format!(
            "stored scrypt hash: needs {memory_bytes} bytes, over {STORED_SCRYPT_MEMORY_BYTES_MAX}"
        ));
    }
    let mut salt = [0u8; STORED_SALT_BYTES_MAX];
    let salt = decode_b64(phc.salt, &mut salt, STORED_SALT_BYTES_MIN)
        .map_err(|e| format!("stored scrypt hash: salt {e}"))?;
    let mut expected = [0u8; STORED_HASH_BYTES_MAX];
    let expected = decode_b64(phc.hash, &mut expected, STORED_HASH_BYTES_MIN)
        .map_err(|e| format!("stored scrypt hash: hash {e}"))?;

    let log_n = u8::try_from(log_n).expect("bounded by STORED_SCRYPT_LOG_N_MAX above");
    let params = scrypt::Params::new(log_n, block_size, parallelism)
        .map_err(|e| format!("stored scrypt hash: parameters refused: {e}"))?;
    let mut derived = [0u8; STORED_HASH_BYTES_MAX];
    let derived = &mut derived[..expected.len()];
    scrypt::scrypt(password, salt, &params, derived)
        .map_err(|e| format!("stored scrypt hash: output refused: {e}"))?;
    if constant_time_eq(derived, expected) {
        // Every scrypt hash is the reference's; argon2id replaces it.
        Ok(Verified::Ok {
            needs_upgrade: true,
        })
    } else {
        Ok(Verified::Wrong)
    }
}

/// Parses `name=value,...` with exactly the given names, each once, in any order, values
/// PHC decimals (no sign, no leading zero, at most ten digits) that fit a u32.
fn phc_params<const N: usize>(params: &str, names: [&str; N]) -> Result<[u32; N], String> {
    let mut values = [None; N];
    for pair in params.split(',') {
        let Some((name, value)) = pair.split_once('=') else {
            return Err("parameter without '='".into());
        };
        let Some(index) = names.iter().position(|n| *n == name) else {
            return Err("unknown parameter".into());
        };
        if values[index].is_some() {
            return Err(format!("parameter {name} repeated"));
        }
        values[index] =
            Some(decimal(value).ok_or_else(|| format!("parameter {name} is not a decimal"))?);
    }
    let mut out = [0u32; N];
    for ((slot, value), name) in out.iter_mut().zip(values).zip(names) {
        *slot = value.ok_or_else(|| format!("parameter {name} missing"))?;
    }
    Ok(out)
}

fn decimal(s: &str) -> Option<u32> {
    let canonical = !s.is_empty()
        && s.len() <= PHC_DECIMAL_DIGITS_MAX
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Decodes PHC "B64" (standard alphabet, no padding, canonical) into `buf`, whose length is
/// the most bytes allowed.
fn decode_b64<'b>(s: &str, buf: &'b mut [u8], bytes_min: usize) -> Result<&'b [u8], String> {
    let bytes_max = buf.len();
    let decoded = Base64Unpadded::decode(s, buf).map_err(|e| match e {
        base64ct::Error::InvalidLength => format!("longer than {bytes_max} bytes"),
        base64ct::Error::InvalidEncoding => "not canonical unpadded base64".to_string(),
    })?;
    if decoded.len() < bytes_min {
        return Err(format!("shorter than {bytes_min} bytes"));
    }
    Ok(decoded)
}

/// Equality whose time depends only on the lengths (which come from the stored hash, not from
/// the password).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the optimiser from turning the fold into an early exit.
        difference = std::hint::black_box(difference | (x ^ y));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// compat.md's test vector.
    const VECTOR_PASSWORD: &[u8] = b"p!ass\x00word\xc3\xb1";
    const VECTOR_LOG_N: u8 = 13;
    const VECTOR_KEY_HEX: &str = "7f436ea391a3c97e2765e0d371a059f2c0bf25701346a749a89e4a47dbc30555";

    fn vector_salt() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn b64(bytes: &[u8]) -> String {
        let mut buf = [0u8; 128];
        Base64Unpadded::encode(bytes, &mut buf).unwrap().to_string()
    }

    fn vector_phc() -> String {
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&VECTOR_KEY_HEX[2 * i..2 * i + 2], 16).unwrap();
        }
        format!(
            "$scrypt$ln={VECTOR_LOG_N},r=8,p=1${}${}",
            b64(&vector_salt()),
            b64(&key)
        )
    }

    #[test]
    fn scrypt_matches_the_spec_vector() {
        let params = scrypt::Params::new(VECTOR_LOG_N, 8, 1).unwrap();
        let mut out = [0u8; 32];
        scrypt::scrypt(VECTOR_PASSWORD, &vector_salt(), &params, &mut out).unwrap();
        assert_eq!(hex(&out), VECTOR_KEY_HEX);
    }

    #[test]
    fn scrypt_phc_from_the_spec_vector_verifies_and_needs_upgrade() {
        let phc = vector_phc();
        assert_eq!(
            phc,
            "$scrypt$ln=13,r=8,p=1$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\
             $f0Nuo5GjyX4nZeDTcaBZ8sC/JXATRqdJqJ5KR9vDBVU"
        );
        let started = Instant::now();
        assert_eq!(
            verify(VECTOR_PASSWORD, &phc),
            Verified::Ok {
                needs_upgrade: true
            }
        );
        eprintln!("scrypt ln=13 verify: {:?}", started.elapsed());
        assert_eq!(verify(b"p!ass\x00word\xc3", &phc), Verified::Wrong);
        assert_eq!(verify(b"", &phc), Verified::Wrong);
        // Parameters in another order are the same hash.
        let reordered = phc.replace("ln=13,r=8,p=1", "p=1,r=8,ln=13");
        assert!(matches!(
            verify(VECTOR_PASSWORD, &reordered),
            Verified::Ok { .. }
        ));
        // Other parameters give another key.
        let other = phc.replace("ln=13", "ln=12");
        assert_eq!(verify(VECTOR_PASSWORD, &other), Verified::Wrong);
    }

    #[test]
    fn scrypt_at_the_references_cost() {
        // The reference's own parameters: ln=14, r=8, p=1, 32-byte salt and key.
        let phc = scrypt_phc(14, b"correct horse");
        let started = Instant::now();
        let verified = verify(b"correct horse", &phc);
        eprintln!("scrypt ln=14 verify: {:?}", started.elapsed());
        assert_eq!(
            verified,
            Verified::Ok {
                needs_upgrade: true
            }
        );
        assert_eq!(verify(b"correct horsf", &phc), Verified::Wrong);
    }

    #[test]
    fn argon2id_round_trip() {
        let started = Instant::now();
        let phc = hash_argon2id(b"correct horse battery").unwrap();
        eprintln!("argon2id hash: {:?}", started.elapsed());
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let fields: Vec<&str> = phc.split('$').collect();
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[4].len(), 22, "16-byte salt"); // ceil(16 * 4 / 3)
        assert_eq!(fields[5].len(), 43, "32-byte hash");
        let started = Instant::now();
        assert_eq!(
            verify(b"correct horse battery", &phc),
            Verified::Ok {
                needs_upgrade: false
            }
        );
        eprintln!("argon2id verify: {:?}", started.elapsed());
        assert_eq!(verify(b"correct horse batterz", &phc), Verified::Wrong);
        // Fresh salt every time.
        assert_ne!(hash_argon2id(b"correct horse battery").unwrap(), phc);
    }

    /// A scrypt PHC string made with the given log2(N), r=8, p=1.
    fn scrypt_phc(log_n: u8, password: &[u8]) -> String {
        let salt = [5u8; 32];
        let mut key = [0u8; 32];
        let params = scrypt::Params::new(log_n, 8, 1).unwrap();
        scrypt::scrypt(password, &salt, &params, &mut key).unwrap();
        format!("$scrypt$ln={log_n},r=8,p=1${}${}", b64(&salt), b64(&key))
    }

    /// An argon2id PHC string made with the given parameters.
    fn argon2id_phc(version: Option<u32>, m: u32, t: u32, p: u32, password: &[u8]) -> String {
        argon2id_phc_salted(&[9u8; 16], version, m, t, p, password)
    }

    fn argon2id_phc_salted(
        salt: &[u8],
        version: Option<u32>,
        m: u32,
        t: u32,
        p: u32,
        password: &[u8],
    ) -> String {
        let params = Argon2Params {
            version: version.unwrap_or(ARGON2_VERSION_LEGACY),
            memory_kib: m,
            iterations: t,
            lanes: p,
        };
        let mut hash = [0u8; 32];
        params
            .context(32)
            .unwrap()
            .hash_password_into(password, salt, &mut hash)
            .unwrap();
        let version = version.map(|v| format!("$v={v}")).unwrap_or_default();
        format!(
            "$argon2id{version}$m={m},t={t},p={p}${}${}",
            b64(salt),
            b64(&hash)
        )
    }

    #[test]
    fn argon2id_weaker_than_current_needs_upgrade() {
        let current = Argon2Params {
            version: ARGON2_VERSION_CURRENT,
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            lanes: ARGON2_LANES,
        };
        let table = [
            (current, false),
            (
                Argon2Params {
                    iterations: 3,
                    ..current
                },
                false,
            ),
            (
                Argon2Params {
                    lanes: 2,
                    ..current
                },
                false,
            ),
            (
                Argon2Params {
                    memory_kib: 65_536,
                    ..current
                },
                false,
            ),
            (
                Argon2Params {
                    iterations: 1,
                    ..current
                },
                true,
            ),
            (
                Argon2Params {
                    memory_kib: 19_455,
                    ..current
                },
                true,
            ),
            (
                Argon2Params {
                    memory_kib: 65_536,
                    iterations: 1,
                    ..current
                },
                true,
            ),
            (
                Argon2Params {
                    version: ARGON2_VERSION_LEGACY,
                    ..current
                },
                true,
            ),
        ];
        for (params, weaker) in table {
            assert_eq!(params.is_weaker_than_current(), weaker, "{params:?}");
        }
        // End to end, cheaply: tiny memory, and a missing `v=` (version 1.0).
        let password = b"0123456789";
        for version in [Some(19), Some(16), None] {
            let phc = argon2id_phc(version, 8, 1, 1, password);
            assert_eq!(
                verify(password, &phc),
                Verified::Ok {
                    needs_upgrade: true
                },
                "{phc}"
            );
            assert_eq!(verify(b"9876543210", &phc), Verified::Wrong, "{phc}");
        }
        // Today's parameters but a shorter salt or hash than new hashes get.
        let phc = argon2id_phc(Some(19), ARGON2_MEMORY_KIB, 2, 1, password);
        assert_eq!(
            verify(password, &phc),
            Verified::Ok {
                needs_upgrade: false
            }
        );
        let phc = argon2id_phc_salted(&[9u8; 8], Some(19), ARGON2_MEMORY_KIB, 2, 1, password);
        assert_eq!(
            verify(password, &phc),
            Verified::Ok {
                needs_upgrade: true
            }
        );
    }

    #[test]
    fn argon2id_known_answer() {
        // From the argon2 reference implementation's test suite (phc-winner-argon2,
        // src/test.c): argon2id, v=19, m=65536, t=2, p=1, "password", salt "somesalt".
        let phc = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ\
                   $CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        // Its 8-byte salt is shorter than the 16 bytes new hashes get.
        assert_eq!(
            verify(b"password", phc),
            Verified::Ok {
                needs_upgrade: true
            }
        );
        assert_eq!(verify(b"passwore", phc), Verified::Wrong);
    }

    #[test]
    fn malformed_or_unbounded_stored_hashes_are_unsupported() {
        // Cheap parameters: every truncation below is verified twice.
        let scrypt = scrypt_phc(4, VECTOR_PASSWORD);
        let argon2 = argon2id_phc(Some(19), 8, 1, 1, b"0123456789");
        let salt = b64(&[1u8; 16]);
        let key = b64(&[2u8; 32]);
        let table: Vec<String> = vec![
            String::new(),
            "$".into(),
            "$$".into(),
            "plaintext".into(),
            "scrypt$ln=13,r=8,p=1$AAAA$AAAA".into(),
            "$scrypt".into(),
            "$scrypt$".into(),
            "$scrypt$ln=13,r=8,p=1".into(),
            "$scrypt$ln=13,r=8,p=1$".into(),
            format!("$scrypt$ln=13,r=8,p=1${salt}"),
            format!("$scrypt$ln=13,r=8,p=1${salt}$"),
            format!("$scrypt$ln=13,r=8,p=1${salt}${key}$"),
            format!("$scrypt$v=1$ln=13,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=13,r=8${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=1,x=1${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=1,p=1${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=1,${salt}${key}"),
            format!("$scrypt$ln=,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=013,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=-13,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=+13,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=99999999999${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=4294967296${salt}${key}"),
            format!("$scrypt$ln=0,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=64,r=8,p=1${salt}${key}"),
            format!("$scrypt$ln=21,r=1,p=1${salt}${key}"),
            format!("$scrypt$ln=19,r=8,p=1${salt}${key}"), // 512 MiB
            format!("$scrypt$ln=13,r=0,p=1${salt}${key}"),
            format!("$scrypt$ln=13,r=33,p=1${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=0${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=17${salt}${key}"),
            format!("$scrypt$ln=13,r=8,p=1${salt}=${key}"),
            format!("$scrypt$ln=13,r=8,p=1${salt}${key}="),
            format!("$scrypt$ln=13,r=8,p=1$AQ==${key}"),
            format!("$scrypt$ln=13,r=8,p=1$!!!!${key}"),
            format!("$scrypt$ln=13,r=8,p=1${}${key}", b64(&[1u8; 7])),
            format!("$scrypt$ln=13,r=8,p=1${}${key}", b64(&[1u8; 65])),
            format!("$scrypt$ln=13,r=8,p=1${salt}${}", b64(&[1u8; 15])),
            format!("$scrypt$ln=13,r=8,p=1${salt}${}", b64(&[1u8; 65])),
            // Non-canonical base64: the last character carries nonzero unused bits.
            format!("$scrypt$ln=13,r=8,p=1${salt}${}B", &key[..key.len() - 1]),
            format!("$scrypt$ln=13,r=8,p=1${salt}${key}\u{e9}"),
            format!("$argon2id$v=18$m=8,t=1,p=1${salt}${key}"),
            format!("$argon2id$v=019$m=8,t=1,p=1${salt}${key}"),
            format!("$argon2id$v=19$m=8,t=1${salt}${key}"),
            format!("$argon2id$v=19$m=4,t=1,p=1${salt}${key}"), // below argon2's 8·p
            format!("$argon2id$v=19$m=16,t=1,p=4${salt}${key}"), // below argon2's 8·p
            format!("$argon2id$v=19$m=262145,t=1,p=1${salt}${key}"),
            format!("$argon2id$v=19$m=4294967295,t=1,p=1${salt}${key}"),
            format!("$argon2id$v=19$m=8,t=0,p=1${salt}${key}"),
            format!("$argon2id$v=19$m=8,t=17,p=1${salt}${key}"),
            format!("$argon2id$v=19$m=8,t=1,p=0${salt}${key}"),
            format!("$argon2id$v=19$m=1024,t=1,p=17${salt}${key}"),
            format!("$argon2id$v=19$m=8,t=1,p=1,keyid=AAAA${salt}${key}"),
            format!("$argon2i$v=19$m=8,t=1,p=1${salt}${key}"),
            format!("$argon2d$v=19$m=8,t=1,p=1${salt}${key}"),
            format!("$bcrypt$v=19$m=8,t=1,p=1${salt}${key}"),
            format!("$SCRYPT$ln=13,r=8,p=1${salt}${key}"),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into(),
            format!("${}$ln=13,r=8,p=1${salt}${key}", "a".repeat(33)),
            format!(
                "$scrypt$ln=13,r=8,p=1${}${key}",
                "A".repeat(PHC_STRING_BYTES_MAX)
            ),
        ];
        for phc in &table {
            let verified = verify(b"p!ass\x00word\xc3\xb1", phc);
            let Verified::Unsupported(reason) = &verified else {
                panic!("{phc:?} gave {verified:?}");
            };
            assert!(reason.starts_with("stored"), "{reason}");
            // The reason never quotes the salt or the hash.
            assert!(
                !reason.contains(&salt) && !reason.contains(&key),
                "{reason}"
            );
        }
        // Every truncation of two good strings: never a panic, and never a match for a wrong
        // password. A hash cut at a base64 boundary still decodes, to a shorter key; scrypt's
        // output is PBKDF2's, whose shorter outputs are prefixes of longer ones, so with the
        // right password a cut scrypt hash of at least STORED_HASH_BYTES_MIN still matches.
        for (good, right) in [
            (&scrypt, VECTOR_PASSWORD),
            (&argon2, b"0123456789".as_slice()),
        ] {
            assert!(matches!(verify(right, good), Verified::Ok { .. }));
            for end in 0..good.len() {
                let cut = &good[..end];
                let wrong = verify(b"wrong password", cut);
                assert!(
                    matches!(wrong, Verified::Wrong | Verified::Unsupported(_)),
                    "{cut:?} gave {wrong:?}"
                );
                let right = verify(right, cut);
                if cut.starts_with("$argon2id") {
                    assert!(
                        !matches!(right, Verified::Ok { .. }),
                        "{cut:?} gave {right:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn dummy_verify_does_the_work_of_a_wrong_password() {
        // The dummy is a well-formed hash at today's parameters that nothing matches, so
        // verifying against it runs the whole derivation, like a wrong password does.
        let dummy = dummy_phc();
        assert!(
            dummy.starts_with(&format!(
                "$argon2id$v=19$m={ARGON2_MEMORY_KIB},t={ARGON2_ITERATIONS},p={ARGON2_LANES}$"
            )),
            "{dummy}"
        );
        assert_eq!(verify(b"0123456789", dummy), Verified::Wrong);
        assert!(std::ptr::eq(dummy, dummy_phc()), "made once");

        let phc = hash_argon2id(b"0123456789").unwrap();
        let started = Instant::now();
        assert_eq!(verify(b"9876543210", &phc), Verified::Wrong);
        let wrong = started.elapsed();
        let started = Instant::now();
        dummy_verify(b"9876543210");
        let dummy = started.elapsed();
        eprintln!("wrong password: {wrong:?}, dummy: {dummy:?}");
        // A dummy that skipped the derivation would be a thousand times faster; the factor is
        // loose because other tests load the machine at the same time.
        assert!(dummy * 10 > wrong, "{wrong:?} vs {dummy:?}");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"\x80bc", b"\x00bc"));
    }
}
