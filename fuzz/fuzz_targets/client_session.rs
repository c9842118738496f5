//! A whole client session against a running proxy: the input is what a client sends over a
//! real loopback connection to a proxy with a simulated SMSC behind it. Its first octet picks:
//! bit 0, a valid bind before the rest; bit 1, the TLS listener instead of the plaintext one
//! (the input is then what reaches the TLS handshake, or the refusal of plaintext SMPP there).
//! What must hold: no panic in any of the proxy's tasks (libFuzzer's panic hook aborts the
//! process), every octet the proxy sends back on the plaintext port frames and parses as SMPP,
//! and the session ends when the client closes its side.
//!
//! The proxy lives for the whole run, so state one input leaves (receipts held for `shop`)
//! may shape the next: a crash input may need the inputs before it to reproduce.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smpp_proxy::config::Config;
use smpp_proxy::pdu::{Body, COctetString, Pdu, SmppCodec};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::codec::Decoder;

/// How long the proxy gets to close a session whose client has closed its side.
const END: Duration = Duration::from_secs(10);

struct World {
    _proxy: Proxy,
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    tls_addr: SocketAddr,
    bind: Vec<u8>,
}

/// The proxy and its SMSC, started once per process and kept for its life.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // A certificate for the TLS listener, in a directory of this process's own.
        let dir = std::env::temp_dir().join(format!("smpp-proxy-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let proxy = runtime.block_on(async {
            let sim = sim::start(SimConfig {
                receipt_delay: Duration::from_millis(1),
                ..SimConfig::default()
            })
            .await
            .unwrap();
            // Failed binds never ban the fuzzer's address; short timers so a session the
            // input leaves waiting ends soon; correlations (a run submits millions of
            // messages) kept only a minute.
            let toml = format!(
                r#"node_id = "f"
correlation_ttl = "1m"
[listen]
smpp = "127.0.0.1:0"
smpp_tls = "127.0.0.1:0"
cert_file = {:?}
key_file = {:?}
[store]
backend = "memory"
[sessions]
bind_timeout = "1s"
response_timeout = "1s"
queue_timeout = "1s"
[limits]
max_auth_failures = 1000000000
[[clients]]
system_id = "shop"
password = "secret"
allow = ["127.0.0.0/8"]
outbox_max = 1000
[[upstreams]]
name = "smsc"
address = "{}"
system_id = "proxy"
password = "pw"
window = 1000
"#,
                cert_file.to_str().unwrap(),
                key_file.to_str().unwrap(),
                sim.local_addr()
            );
            let proxy = Proxy::start(Config::from_toml(&toml).unwrap()).await.unwrap();
            assert!(proxy.wait_bound(Duration::from_secs(10)).await);
            // Both live as long as the process: the proxy in the world (what only it holds,
            // such as its session threads' handles, must stay reachable, or LeakSanitizer
            // reports it), the simulator forgotten (its tasks hold what it has).
            std::mem::forget(sim);
            proxy
        });
        let (addr, tls_addr) = (proxy.local_addr(), proxy.tls_addr().unwrap());
        let bind = Body::BindTransceiver(smpp_proxy::pdu::body::Bind {
            system_id: COctetString::from_text("shop"),
            password: COctetString::from_text("secret"),
            system_type: COctetString::empty(),
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: COctetString::empty(),
        });
        let mut bytes = BytesMut::new();
        Pdu::new(bind).with_sequence_number(1).encode(&mut bytes).unwrap();
        World {
            _proxy: proxy,
            _runtime: runtime,
            addr,
            tls_addr,
            bind: bytes.to_vec(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let world = world();
    let tls = first & 2 == 2;
    let mut conn = TcpStream::connect(if tls { world.tls_addr } else { world.addr }).unwrap();
    let deadline = std::time::Instant::now() + END;
    if first & 1 == 1 {
        let _ = conn.write_all(&world.bind);
    }
    // The proxy may close before taking it all (a framing error): that is its right.
    let _ = conn.write_all(rest);
    let _ = conn.shutdown(Shutdown::Write);
    let mut received = BytesMut::new();
    let mut buf = [0u8; 16 * 1024];
    // Closed while input it had not read was waiting, the proxy's side resets the connection,
    // and what was on its way may be lost: then only whole frames are checked.
    let reset = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match conn.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            // libFuzzer's own timers signal the process: not the proxy's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("the session did not end within {END:?} of the client closing: {e}"),
        }
    };
    if tls {
        // TLS records, or the plaintext refusal: nothing more to say about them here.
        return;
    }
    let mut codec = SmppCodec::default();
    while let Some(pdu) = codec.decode(&mut received).expect("the proxy sends frames SMPP allows") {
        if let Err(e) = pdu {
            panic!("the proxy sent a PDU that does not parse: {e}");
        }
    }
    assert!(reset || received.is_empty(), "the proxy's last frame is cut short: {received:?}");
});
