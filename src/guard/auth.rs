//! Bind authentication: the checks in the order that gives nothing away, and the bans that make
//! guessing slow.
//!
//! Every refusal is answered the same (ESME_RBINDFAIL); only the log says why. An address that
//! fails `max_auth_failures` binds within `auth_window` is refused for `auth_ban`, doubled for
//! each ban it earns again (up to 64x): its connections are closed at accept and its binds
//! refused without a look at the password.

use crate::config::{ClientConfig, Credential, LimitsConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a bind was refused (logged; the client only hears ESME_RBINDFAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No account has that system_id.
    UnknownSystemId,
    /// The account may not bind from this address (`allow`).
    AddressNotAllowed,
    /// The password is wrong.
    WrongPassword,
    /// The address is banned for failed binds.
    Banned,
    /// Too many password hashes being checked at once (not counted against the address).
    Busy,
    /// The account binds only over TLS; this connection is plaintext.
    TlsRequired,
    /// The account requires a client certificate; none was presented.
    CertificateMissing,
    /// The client certificate is not issued by the account's `tls_client_ca`.
    CertificateNotTrusted,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denied::UnknownSystemId => "unknown system_id",
            Denied::AddressNotAllowed => "address not in the account's allow list",
            Denied::WrongPassword => "wrong password",
            Denied::Banned => "address banned for failed binds",
            Denied::Busy => "too many password hashes being checked at once",
            Denied::TlsRequired => "the account binds only over TLS",
            Denied::CertificateMissing => "the account requires a client certificate; none presented",
            Denied::CertificateNotTrusted => "the client certificate is not from the account's tls_client_ca",
        })
    }
}

/// Checks a bind's credentials against `account` (`None`: no such system_id), from `ip`.
/// `allow` comes before the password, so a caller from elsewhere learns nothing of it.
pub fn check(account: Option<&ClientConfig>, ip: IpAddr, password: &[u8]) -> Result<(), Denied> {
    let Some(account) = account else {
        // The same work as a real comparison, so the answer's timing does not tell either.
        let _ = same_secret(b"", password);
        return Err(Denied::UnknownSystemId);
    };
    if !account.allow.iter().any(|net| net.contains(ip)) {
        return Err(Denied::AddressNotAllowed);
    }
    let right = match &account.password {
        Credential::Plain(expected) => same_secret(expected.as_bytes(), password),
        Credential::Hash(hash) => verify_hash(hash, password),
    };
    if !right {
        return Err(Denied::WrongPassword);
    }
    Ok(())
}

/// Whether `password` matches an argon2 `hash` (PHC form). Slow on purpose (tens of
/// milliseconds): call it off the async threads.
pub fn verify_hash(hash: &str, password: &[u8]) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password, &h).is_ok())
}

/// An argon2 hash of `password` in PHC form, with a fresh salt (`smpp-proxy hash-password`).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, SaltString};
    use argon2::PasswordHasher;
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The work of one hash check, done when no account's hash is checked (an unknown system_id)
/// so that the answer's timing does not tell whether the account exists.
pub fn verify_nothing(password: &[u8]) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password(b"not a password").unwrap_or_default());
    let _ = verify_hash(hash, password);
}

/// Compares two short secrets in time that depends on neither's content (SMPP passwords are at
/// most 8 octets; both are compared as 16, zero-padded, with their lengths).
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    let (la, lb) = (expected.len().min(16), given.len().min(16));
    a[..la].copy_from_slice(&expected[..la]);
    b[..lb].copy_from_slice(&given[..lb]);
    let mut diff = (expected.len() ^ given.len()) as u8 | u8::from(expected.len() > 16 || given.len() > 16);
    for i in 0..16 {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}

/// Compares a token of any length in time that depends only on the longer of the two lengths
/// (the admin endpoint's bearer token).
pub fn same_token(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for i in 0..expected.len().max(given.len()) {
        diff |= expected.get(i).copied().unwrap_or(0) ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// An address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    banned_until: Option<Instant>,
    /// Bans earned so far (each doubles the next).
    bans: u32,
}

/// Failed binds per address, and the bans they earned.
#[derive(Debug)]
pub struct AuthFailures {
    max: u32,
    window: Duration,
    ban: Duration,
    records: Mutex<HashMap<IpAddr, Record>>,
    failures: AtomicU64,
    bans: AtomicU64,
}

/// Addresses remembered at most; past it, those neither banned nor failing lately are forgotten.
const MAX_RECORDS: usize = 65_536;
/// The longest ban, as a multiple of `auth_ban`.
const MAX_BAN_FACTOR: u32 = 64;

impl AuthFailures {
    /// Limits from `[limits]`.
    pub fn new(config: &LimitsConfig) -> AuthFailures {
        AuthFailures {
            max: config.max_auth_failures,
            window: config.auth_window,
            ban: config.auth_ban,
            records: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            bans: AtomicU64::new(0),
        }
    }

    /// Until when `ip` is banned, if it is.
    pub fn banned(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.get(&ip)?.banned_until.filter(|&until| until > now)
    }

    /// Counts a failed bind from `ip`; when it earns a ban, how long the ban is (log it once).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= MAX_RECORDS && !records.contains_key(&ip) {
            let window = self.window;
            records.retain(|_, r| r.banned_until.is_some_and(|u| u > now) || now - r.window_start < window);
            if records.len() >= MAX_RECORDS {
                // Still full (failures from very many addresses at once): a new one is not
                // tracked, so the table stays bounded; the connection caps still hold.
                return None;
            }
        }
        let r = records.entry(ip).or_insert(Record {
            window_start: now,
            failures: 0,
            banned_until: None,
            bans: 0,
        });
        if now - r.window_start >= self.window {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures < self.max {
            return None;
        }
        let length = self.ban * (1u32 << r.bans.min(MAX_BAN_FACTOR.trailing_zeros()));
        r.bans += 1;
        r.failures = 0;
        r.window_start = now;
        r.banned_until = Some(now + length);
        self.bans.fetch_add(1, Ordering::Relaxed);
        Some(length)
    }

    /// Failed binds and bans so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.failures.load(Ordering::Relaxed), self.bans.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn account(password: &str, allow: &str) -> ClientConfig {
        let text = format!(
            "node_id = \"a\"\n[listen]\nsmpp = \"127.0.0.1:2775\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"{password}\"\n\
             [[upstreams]]\nname = \"u\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n"
        );
        let mut c = crate::config::Config::from_toml(&text).unwrap().clients["shop"].clone();
        c.allow = vec![Cidr::parse(allow).unwrap()];
        c
    }

    #[test]
    fn allow_is_checked_before_the_password() {
        let shop = account("secret", "10.0.0.0/8");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        // Right or wrong password, a caller from outside `allow` hears the same.
        assert_eq!(check(Some(&shop), local, b"secret"), Err(Denied::AddressNotAllowed));
        assert_eq!(check(Some(&shop), local, b"wrong"), Err(Denied::AddressNotAllowed));
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(check(Some(&shop), inside, b"wrong"), Err(Denied::WrongPassword));
        assert_eq!(check(Some(&shop), inside, b"secret"), Ok(()));
        assert_eq!(check(None, inside, b"secret"), Err(Denied::UnknownSystemId));
    }

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"secret", b"secret"));
        assert!(!same_secret(b"secret", b"secret\0"));
        assert!(!same_secret(b"secret", b"secreT"));
        assert!(!same_secret(b"secret", b""));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(&[1; 17], &[1; 17]), "longer than any SMPP password");
        assert!(same_token(b"0123456789abcdef0", b"0123456789abcdef0"));
        assert!(!same_token(b"0123456789abcdef0", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcdef", b"0123456789abcdef\0"));
        assert!(!same_token(b"0123456789abcdef", b"0123456789abcdeF"));
    }

    #[test]
    fn failures_from_ever_more_addresses_keep_the_table_bounded() {
        let limits = crate::config::Config::from_toml(
            "node_id = \"a\"\n[listen]\nsmpp = \"127.0.0.1:2775\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n\
             [[upstreams]]\nname = \"u\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n",
        )
        .unwrap()
        .limits;
        let f = AuthFailures::new(&limits);
        let now = Instant::now();
        for n in 0..(MAX_RECORDS as u128 + 1000) {
            f.failed(IpAddr::V6((0x2001_0db8_u128 << 96 | n).into()), now);
        }
        assert_eq!(f.records.lock().unwrap().len(), MAX_RECORDS);
    }

    #[test]
    fn failures_earn_bans_that_double_and_end() {
        let limits = crate::config::Config::from_toml(
            "node_id = \"a\"\n[listen]\nsmpp = \"127.0.0.1:2775\"\n[limits]\nmax_auth_failures = 3\nauth_window = \"60s\"\nauth_ban = \"10s\"\n\
             [[clients]]\nsystem_id = \"shop\"\npassword = \"x\"\n[[upstreams]]\nname = \"u\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n",
        )
        .unwrap()
        .limits;
        let f = AuthFailures::new(&limits);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(f.failed(ip, t0), None);
        assert_eq!(f.failed(ip, t0), None);
        assert_eq!(f.failed(ip, t0), Some(Duration::from_secs(10)));
        assert!(f.banned(ip, t0 + Duration::from_secs(9)).is_some());
        assert!(f.banned(other, t0).is_none(), "only that address");
        let t1 = t0 + Duration::from_secs(10);
        assert!(f.banned(ip, t1).is_none());
        // Three more: the second ban is twice as long.
        f.failed(ip, t1);
        f.failed(ip, t1);
        assert_eq!(f.failed(ip, t1), Some(Duration::from_secs(20)));
        // Failures spread wider than the window never add up to a ban.
        let t2 = t1 + Duration::from_secs(20);
        for n in 0..10 {
            assert_eq!(f.failed(other, t2 + Duration::from_secs(31 * n)), None);
        }
        assert_eq!(f.counts(), (16, 2));
    }
}
