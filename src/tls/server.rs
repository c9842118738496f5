//! The SMPP listener's TLS: its certificate and key, and the client certificates accounts with
//! `tls_client_ca` require.
//!
//! Which account a connection is for is known only at its bind, so trust is decided there
//! ([`ServerTls::check_client`]: the chain against the bound account's own CA). The handshake,
//! when some account has a CA, asks for a certificate without requiring one or naming any CA,
//! and checks only that the client holds the key of what it presents ([`Presented`]): a client
//! whose library always sends a certificate still binds to an account that needs none, and a
//! stranger learns nothing of the accounts' CAs.
//! [`ServerTls::reload`] reads the files again (SIGHUP): new connections get the new
//! certificate, those already up keep theirs.

use super::{pem, provider};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// Where the listener's certificate, key and the accounts' client CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The certificate chain, end entity first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Accounts that require a client certificate: system_id and the CA file it must chain to.
    pub client_cas: Vec<(String, PathBuf)>,
}

/// Why a bind's client certificate does not do for its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// The account requires one; none was presented.
    Missing,
    /// It is not issued by the account's CA (or has expired, or is not for client use).
    NotTrusted,
}

/// The listener's TLS, reloadable.
pub struct ServerTls {
    /// A reload may name other files (another account's CA).
    files: RwLock<ServerFiles>,
    loaded: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &*self.files.read().unwrap_or_else(|e| e.into_inner()))
            .finish_non_exhaustive()
    }
}

/// What one reading of the files gave.
struct Loaded {
    acceptor: TlsAcceptor,
    /// Each account's own verifier, by system_id.
    accounts: HashMap<String, Arc<dyn ClientCertVerifier>>,
}

impl ServerTls {
    /// Reads the files; every problem names its file.
    pub fn load(files: ServerFiles) -> Result<ServerTls, String> {
        let loaded = build(&files)?;
        Ok(ServerTls {
            files: RwLock::new(files),
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Reads the files again. On an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner()).clone();
        self.reload_from(files)
    }

    /// Reads `files` (a reloaded configuration's) and serves them from now on. On an error the
    /// certificate and files in use stay.
    pub fn reload_from(&self, files: ServerFiles) -> Result<(), String> {
        let fresh = Arc::new(build(&files)?);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        *self.files.write().unwrap_or_else(|e| e.into_inner()) = files;
        Ok(())
    }

    /// What accepts the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current().acceptor.clone()
    }

    /// Whether `chain` (what the connection presented, end entity first) chains to the CA of
    /// `system_id`'s account. Only for accounts with `tls_client_ca`: any other is refused.
    pub fn check_client(&self, system_id: &str, chain: Option<&[CertificateDer<'static>]>) -> Result<(), CertRefusal> {
        let loaded = self.current();
        let Some(verifier) = loaded.accounts.get(system_id) else {
            return Err(CertRefusal::NotTrusted);
        };
        let Some((end_entity, intermediates)) = chain.and_then(<[_]>::split_first) else {
            return Err(CertRefusal::Missing);
        };
        verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|_| CertRefusal::NotTrusted)
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A listener's TLS configuration from a certificate and key alone (the simulator's).
pub fn config(cert_file: PathBuf, key_file: PathBuf) -> Result<Arc<ServerConfig>, String> {
    let files = ServerFiles {
        cert_file,
        key_file,
        client_cas: Vec::new(),
    };
    build(&files).map(|l| l.acceptor.config().clone())
}

/// The handshake's side of client certificates: asked for, not required, and taken as
/// presented once the client has proved it holds the key; whether the chain is trusted is the
/// bind's question ([`ServerTls::check_client`]), for the one account it binds to.
#[derive(Debug)]
struct Presented(Arc<CryptoProvider>);

impl ClientCertVerifier for Presented {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn build(files: &ServerFiles) -> Result<Loaded, String> {
    let certs = pem::certs(&files.cert_file)?;
    let key = pem::key(&files.key_file)?;
    let provider = provider();
    let mut accounts = HashMap::new();
    for (system_id, path) in &files.client_cas {
        let roots = pem::roots(path)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        accounts.insert(system_id.clone(), verifier);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if accounts.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(Arc::new(Presented(provider)))
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} with {}: {e}", files.cert_file.display(), files.key_file.display()))?;
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        accounts,
    })
}
