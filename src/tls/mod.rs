//! TLS on both sides (rustls, with ring): the SMPP listener's certificate and the client
//! certificates accounts may require ([`server`]), the upstreams' (SMSCs') certificates and the
//! proxy's own ([`client`]), and the socket either side reads and writes ([`Stream`]).
//!
//! Nothing here knows the configuration: callers give file paths, and get back what rustls
//! needs or an error that names the file. The config validates through the same functions, so
//! `check` reports a bad certificate as the proxy would at start.

pub mod client;
pub mod pem;
pub mod server;
mod stream;

pub use stream::Stream;

use std::sync::Arc;

/// The cryptography every TLS configuration of the proxy uses (ring: no C toolchain beyond cc,
/// and the same as the Redis client's).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether the first octet a peer sent opens a TLS handshake (a record of type handshake, 22).
/// An SMPP PDU starts with its command_length, whose first octet is 0 for any sane length.
pub fn looks_like_tls(first: u8) -> bool {
    first == 0x16
}
