//! TLS to an upstream SMSC: whom to trust (its `ca_file`, or the system's authorities), the
//! name its certificate must carry, and the proxy's own certificate when the SMSC asks for one.

use super::{pem, provider, Stream};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

/// What an upstream's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The SMSC's certificate authority (PEM); `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// The name the SMSC's certificate must be for (a DNS name or an IP address).
    pub server_name: String,
    /// The proxy's certificate chain and key, for SMSCs that require one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Opens TLS to one upstream.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What is wrong with an upstream's TLS files or name, by the part it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The server name is not a DNS name or an IP address.
    #[error("{0:?} is not a DNS name or an IP address")]
    Name(String),
    /// The CAs to trust (`ca_file`, or the system's).
    #[error("{0}")]
    Roots(String),
    /// The proxy's own certificate and key.
    #[error("{0}")]
    Identity(String),
}

impl Connector {
    /// Reads the files (blocking: off the async threads when it matters); every problem names
    /// its file.
    pub fn new(files: &ClientFiles) -> Result<Connector, ConnectorError> {
        let name = ServerName::try_from(files.server_name.clone())
            .map_err(|_| ConnectorError::Name(files.server_name.clone()))?;
        let roots = match &files.ca_file {
            Some(path) => pem::roots(path),
            None => pem::system_roots(),
        }
        .map_err(ConnectorError::Roots)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::Roots(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &files.identity {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let certs = pem::certs(cert_file).map_err(ConnectorError::Identity)?;
                let key = pem::key(key_file).map_err(ConnectorError::Identity)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    ConnectorError::Identity(format!("{} with {}: {e}", cert_file.display(), key_file.display()))
                })?
            }
        };
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// TLS over `io`: the handshake done, the SMSC's certificate checked.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> std::io::Result<Stream<S>> {
        Ok(self.connector.connect(self.name.clone(), io).await?.into())
    }
}
