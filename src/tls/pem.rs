//! Certificates and keys read from PEM files, each error naming the file and what is wrong.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::Path;

/// The certificates in `path` (a chain: the end entity first), at least one.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{shown}: {}", describe(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: {}", describe(e)))?;
    if certs.is_empty() {
        return Err(format!("{shown}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {}", path.display(), describe(e)))
}

/// The certificate authorities in `path`, each of which must be usable as a trust anchor.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable certificate authority: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's certificate authorities (for upstreams without `ca_file`).
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or("none found".to_owned(), |e| e.to_string());
        return Err(format!("no system certificate authorities ({why}): set ca_file"));
    }
    Ok(roots)
}

fn describe(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        other => format!("not valid PEM: {other}"),
    }
}
