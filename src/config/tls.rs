//! TLS settings: `[listen] smpp_tls` with its certificate, the accounts' `tls_required` and
//! `tls_client_ca`, and each upstream's `tls`. Every file is read here, so `check` reports a
//! missing or unreadable certificate, a key that is not its certificate's, or a CA that is not
//! one, under its key, as the proxy would refuse it at start.

use super::raw::{RawListen, RawUpstream};
use super::{ClientConfig, Problems};
use crate::tls::client::{ClientFiles, Connector, ConnectorError};
use crate::tls::pem;
use crate::tls::server::{ServerFiles, ServerTls};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate, key, and the client CAs of accounts that require one.
    pub files: ServerFiles,
}

/// `listen.smpp_tls` and its files, with the accounts' CAs (whose own keys are checked here
/// too); accounts that require TLS need the listener.
pub(super) fn listen(
    raw: &RawListen,
    clients: &BTreeMap<String, ClientConfig>,
    client_keys: &BTreeMap<String, usize>,
    p: &mut Problems,
) -> Option<TlsListen> {
    let before = p.0.len();
    let mut client_cas = Vec::new();
    for (id, c) in clients {
        let n = client_keys.get(id).copied().unwrap_or_default();
        if let Some(ca) = &c.tls_client_ca {
            match pem::roots(ca) {
                Ok(_) => client_cas.push((id.clone(), ca.clone())),
                Err(e) => p.add(format!("clients[{n}].tls_client_ca"), e),
            }
        }
        if c.tls_required && raw.smpp_tls.is_none() {
            let what = if c.tls_client_ca.is_some() {
                "tls_client_ca"
            } else {
                "tls_required"
            };
            p.add(format!("clients[{n}].{what}"), "needs listen.smpp_tls (a TLS listener)");
        }
    }
    let Some(text) = &raw.smpp_tls else {
        for (key, given) in [("listen.cert_file", &raw.cert_file), ("listen.key_file", &raw.key_file)] {
            if given.is_some() {
                p.add(key, "only with listen.smpp_tls");
            }
        }
        return None;
    };
    let addr = p.address("listen.smpp_tls", text, "0.0.0.0:3550");
    let cert_file = file(
        &raw.cert_file,
        "listen.cert_file",
        "the TLS listener's certificate chain (PEM)",
        p,
    );
    let key_file = file(
        &raw.key_file,
        "listen.key_file",
        "the TLS listener's private key (PEM)",
        p,
    );
    if let Some(path) = &cert_file {
        if let Err(e) = pem::certs(path) {
            p.add("listen.cert_file", e);
        }
    }
    if let Some(path) = &key_file {
        if let Err(e) = pem::key(path) {
            p.add("listen.key_file", e);
        }
    }
    let (addr, cert_file, key_file) = (addr?, cert_file?, key_file?);
    let files = ServerFiles {
        cert_file,
        key_file,
        client_cas,
    };
    // Each file reads; whether they make a whole (the key is the certificate's) is seen here.
    if p.0.len() == before {
        if let Err(e) = ServerTls::load(files.clone()) {
            p.add("listen.key_file", e);
        }
    }
    Some(TlsListen { addr, files })
}

/// An upstream's `tls` and the keys that go with it.
pub(super) fn upstream(u: &RawUpstream, n: usize, p: &mut Problems) -> Option<ClientFiles> {
    let key = |field: &str| format!("upstreams[{n}].{field}");
    let extras = [
        ("ca_file", u.ca_file.is_some()),
        ("server_name", u.server_name.is_some()),
        ("cert_file", u.cert_file.is_some()),
        ("key_file", u.key_file.is_some()),
    ];
    if !u.tls {
        for (field, given) in extras {
            if given {
                p.add(key(field), "only with tls = true");
            }
        }
        return None;
    }
    let before = p.0.len();
    let server_name = u.server_name.clone().unwrap_or_else(|| host_of(&u.address).to_owned());
    if let Some(path) = &u.ca_file {
        if let Err(e) = pem::roots(path) {
            p.add(key("ca_file"), e);
        }
    }
    let identity = match (&u.cert_file, &u.key_file) {
        (Some(cert), Some(private)) => {
            if let Err(e) = pem::certs(cert) {
                p.add(key("cert_file"), e);
            }
            if let Err(e) = pem::key(private) {
                p.add(key("key_file"), e);
            }
            Some((cert.clone(), private.clone()))
        }
        (Some(_), None) => {
            p.add(key("key_file"), "missing: cert_file needs its key");
            None
        }
        (None, Some(_)) => {
            p.add(key("cert_file"), "missing: key_file needs its certificate");
            None
        }
        (None, None) => None,
    };
    let files = ClientFiles {
        ca_file: u.ca_file.clone(),
        server_name,
        identity,
    };
    if p.0.len() == before {
        match Connector::new(&files) {
            Ok(_) => {}
            // Without server_name the name is the address's host: its problem, unless the
            // address check has told it already.
            Err(e @ ConnectorError::Name(_)) if u.server_name.is_none() => {
                let address = key("address");
                if !p.0.iter().any(|line| line.starts_with(&address)) {
                    p.add(
                        address,
                        format!("its host is the TLS server name: {e} (or set server_name)"),
                    );
                }
            }
            Err(e @ ConnectorError::Name(_)) => p.add(key("server_name"), e),
            Err(e @ ConnectorError::Roots(_)) => p.add(key(if u.ca_file.is_some() { "ca_file" } else { "tls" }), e),
            Err(e @ ConnectorError::Identity(_)) => p.add(key("key_file"), e),
        }
    }
    Some(files)
}

/// `host` of `host:port` (`[::1]:2775` gives `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn file(given: &Option<PathBuf>, key: &str, what: &str, p: &mut Problems) -> Option<PathBuf> {
    if given.is_none() {
        p.add(key, format!("missing: {what}, needed with listen.smpp_tls"));
    }
    given.clone()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_server_name_defaults_to_the_host_of_the_address() {
        assert_eq!(host_of("smsc.example.com:2776"), "smsc.example.com");
        assert_eq!(host_of("10.0.0.1:2775"), "10.0.0.1");
        assert_eq!(host_of("[::1]:2775"), "::1");
    }
}
