//! TLS on both sides: python-smpplib over Python's `ssl` binding to the proxy's TLS listener
//! while the proxy speaks TLS to the simulator; client certificates an account requires;
//! certificates renewed without dropping a bind (in-process and by SIGHUP to the binary); and
//! the clear answers to what goes wrong: plaintext on the TLS port, TLS on the plaintext port,
//! a certificate nobody trusts on either side, files `check` refuses.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use smpp_proxy::config::Config;
use smpp_proxy::esme::Esme;
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig, SimHandle};
use smpp_proxy::tls::client::{ClientFiles, Connector};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;
use tempfile::TempDir;

/// A certificate authority, and what it signs, written as PEM files into a directory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes the CA's certificate as `dir/name.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// A certificate for 127.0.0.1 and localhost (`server`) or a client one, as
    /// `dir/name.pem` and `dir/name.key`; `cn` tells renewals apart.
    fn issue(&self, dir: &Path, name: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// The files of one test: the proxy's CA and certificate, the simulator's, a client CA with a
/// client certificate, and a CA nobody is told to trust with certificates of its own.
struct Pki {
    dir: TempDir,
    proxy_ca: PathBuf,
    proxy_cert: (PathBuf, PathBuf),
    smsc_ca: PathBuf,
    smsc_cert: (PathBuf, PathBuf),
    client_ca: PathBuf,
    client_cert: (PathBuf, PathBuf),
    rogue_ca: PathBuf,
    rogue_server: (PathBuf, PathBuf),
    rogue_client: (PathBuf, PathBuf),
    proxy: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        let (proxy, smsc, client, rogue) = (
            Ca::new("proxy CA"),
            Ca::new("SMSC CA"),
            Ca::new("client CA"),
            Ca::new("rogue CA"),
        );
        Pki {
            proxy_ca: proxy.write(d, "proxy-ca"),
            proxy_cert: proxy.issue(d, "proxy", "proxy one", true),
            smsc_ca: smsc.write(d, "smsc-ca"),
            smsc_cert: smsc.issue(d, "smsc", "smsc", true),
            client_ca: client.write(d, "client-ca"),
            client_cert: client.issue(d, "client", "shop", false),
            rogue_ca: rogue.write(d, "rogue-ca"),
            rogue_server: rogue.issue(d, "rogue-server", "rogue", true),
            rogue_client: rogue.issue(d, "rogue-client", "rogue", false),
            proxy,
            dir,
        }
    }

    /// A simulator speaking TLS with the SMSC certificate.
    async fn tls_sim(&self) -> SimHandle {
        let tls = smpp_proxy::tls::server::config(self.smsc_cert.0.clone(), self.smsc_cert.1.clone()).unwrap();
        sim::start(SimConfig {
            tls: Some(tls),
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }

    /// A proxy config: plain and TLS listeners, `clients`, one upstream per simulator over TLS
    /// trusting `smsc_ca`.
    fn toml(&self, sims: &[SimHandle], smsc_ca: &Path, clients: &str) -> String {
        let upstream = format!("tls = true\nca_file = {:?}\n", smsc_ca.to_str().unwrap());
        let listen = format!(
            "smpp = \"127.0.0.1:0\"\nsmpp_tls = \"127.0.0.1:0\"\ncert_file = {:?}\nkey_file = {:?}\n",
            self.proxy_cert.0.to_str().unwrap(),
            self.proxy_cert.1.to_str().unwrap()
        );
        proxy_toml(sims, &upstream, clients, "").replace("smpp = \"127.0.0.1:0\"\n", &listen)
    }

    /// A Rust client's view of the proxy's TLS listener, trusting `ca`.
    fn connector(&self, ca: &Path) -> Connector {
        Connector::new(&ClientFiles {
            ca_file: Some(ca.to_owned()),
            server_name: "127.0.0.1".into(),
            identity: None,
        })
        .unwrap()
    }
}

/// python-smpplib over `ssl`, trusting `ca`, with a client certificate if given: binds as
/// `system_id`/`secret` to `addr`, submits `n` for receipts. Its JSON.
async fn smpplib(
    addr: std::net::SocketAddr,
    system_id: &str,
    n: usize,
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/test.sh", python.display());
    let mut cmd = Command::new(python);
    cmd.arg(root.join("tests/interop/smpplib_client.py"))
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            system_id,
            "secret",
            &n.to_string(),
        ])
        .env("SMPP_TLS_CA", ca);
    if let Some((cert, key)) = cert {
        cmd.env("SMPP_TLS_CERT", cert).env("SMPP_TLS_KEY", key);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The first upstream's `last_error` once it says `what` (within [`T`]).
async fn upstream_error(proxy: &Proxy, what: &str) -> String {
    let error = || proxy.snapshot().upstreams[0].last_error.clone().unwrap_or_default();
    assert!(
        wait_until(T, || error().contains(what)).await,
        "{what:?} not in {:?}",
        error()
    );
    error()
}

/// Every submit answered with a proxy id, every receipt carrying one of them.
fn all_through(v: &serde_json::Value, n: usize) {
    assert!(v.get("failed").is_none(), "{v}");
    let ids: Vec<&str> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "{v}");
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), n, "{v}");
    for r in receipts {
        assert!(ids.contains(&r["tlv"].as_str().unwrap()), "{v}");
    }
}

/// Fresh certificates, a TLS simulator, and a proxy over it with both listeners and `shop`.
async fn tls_proxy() -> (Pki, Vec<SimHandle>, Proxy) {
    let pki = Pki::new();
    let sims = vec![pki.tls_sim().await];
    let proxy = start_proxy(&pki.toml(&sims, &pki.smsc_ca, SHOP_ANYWHERE)).await;
    (pki, sims, proxy)
}

const SHOP_ANYWHERE: &str = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_over_tls_through_the_proxy_to_a_tls_smsc() {
    let (pki, sims, proxy) = tls_proxy().await;
    let tls = proxy.tls_addr().unwrap();
    let v = smpplib(tls, "shop", 20, &pki.proxy_ca, None).await;
    all_through(&v, 20);
    assert_eq!(sims[0].stats().submits.load(std::sync::atomic::Ordering::Relaxed), 20);
    // The plaintext listener still serves plaintext clients.
    let mut plain = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap();
    assert_eq!(submit_all(&mut plain, 1, 1).await.len(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_the_tls_port_is_refused_and_tls_on_the_plaintext_port_closed() {
    let (pki, _sims, proxy) = tls_proxy().await;
    // A plaintext bind on the TLS port: answered in plaintext, refused, not left to time out.
    let refused = tokio::time::timeout(
        T,
        Esme::bind(proxy.tls_addr().unwrap(), CommandId::BIND_TRANSCEIVER, "shop", "secret"),
    )
    .await
    .expect("answered, not left hanging");
    assert!(
        matches!(
            refused,
            Err(smpp_proxy::esme::EsmeError::BindRefused(CommandStatus::ESME_RBINDFAIL))
        ),
        "{refused:?}"
    );
    assert_eq!(proxy.snapshot().listener.tls_failures["plaintext"], 1);
    // A TLS client on the plaintext port: the connection closes at once, the handshake fails.
    let wrong = tokio::time::timeout(T, Esme::connect_tls(proxy.local_addr(), &pki.connector(&pki.proxy_ca)))
        .await
        .expect("closed, not left hanging");
    assert!(wrong.is_err());
    assert!(
        wait_until(T, || proxy.snapshot().listener.tls_failures["tls_on_plaintext"] == 1).await,
        "counted as TLS on the plaintext port"
    );
    // And nothing of either stopped the right way from working.
    let mut right = Esme::connect_tls(proxy.tls_addr().unwrap(), &pki.connector(&pki.proxy_ca))
        .await
        .unwrap();
    let resp = right
        .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap();
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_nobody_trusts_fail_clearly_on_both_sides() {
    let pki = Pki::new();
    let sims = vec![pki.tls_sim().await];
    // The proxy trusts the rogue CA for its SMSC, which shows a certificate of the SMSC CA.
    let config = Config::from_toml(&pki.toml(&sims, &pki.rogue_ca, SHOP_ANYWHERE)).unwrap();
    let proxy = Proxy::start(config).await.unwrap();
    let error = upstream_error(&proxy, "UnknownIssuer").await;
    assert!(error.starts_with("TLS handshake with 127.0.0.1:"), "{error}");
    assert_eq!(proxy.snapshot().upstreams[0].sessions_bound, 0);
    assert_eq!(sims[0].stats().binds.load(std::sync::atomic::Ordering::Relaxed), 0);
    // A client trusting another CA than the proxy's certificate's refuses the proxy.
    let v = smpplib(proxy.tls_addr().unwrap(), "shop", 1, &pki.rogue_ca, None).await;
    let failed = v["failed"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(failed.contains("CERTIFICATE_VERIFY_FAILED"), "{failed}");
    assert!(
        wait_until(T, || proxy.snapshot().listener.tls_failures["handshake"] >= 1).await,
        "the failed handshake is counted"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_tls_client_ca_binds_only_with_its_certificate() {
    let pki = Pki::new();
    let sims = vec![pki.tls_sim().await];
    let with_ca = |system_id: &str, ca: &Path| {
        format!(
            "\n[[clients]]\nsystem_id = \"{system_id}\"\npassword = \"secret\"\ntls_client_ca = {:?}\n",
            ca.to_str().unwrap()
        )
    };
    let clients = format!(
        "{SHOP_ANYWHERE}{}{}",
        with_ca("bank", &pki.client_ca),
        with_ca("corp", &pki.rogue_ca)
    );
    let proxy = start_proxy(&pki.toml(&sims, &pki.smsc_ca, &clients)).await;
    let tls = proxy.tls_addr().unwrap();
    // With the certificate its CA issued: bound, messages and receipts through.
    all_through(&smpplib(tls, "bank", 5, &pki.proxy_ca, Some(&pki.client_cert)).await, 5);
    // Without a certificate: the bind is refused (the password was right).
    let v = smpplib(tls, "bank", 1, &pki.proxy_ca, None).await;
    assert!(v["failed"].as_str().is_some_and(|f| f.contains("Bind Failed")), "{v}");
    // Over plaintext: refused too.
    let plain = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "bank", "secret").await;
    assert!(
        matches!(
            plain,
            Err(smpp_proxy::esme::EsmeError::BindRefused(CommandStatus::ESME_RBINDFAIL))
        ),
        "{plain:?}"
    );
    // Another account's CA will not do: each account is checked against its own.
    let v = smpplib(tls, "bank", 1, &pki.proxy_ca, Some(&pki.rogue_client)).await;
    assert!(v["failed"].as_str().is_some_and(|f| f.contains("Bind Failed")), "{v}");
    all_through(
        &smpplib(tls, "corp", 2, &pki.proxy_ca, Some(&pki.rogue_client)).await,
        2,
    );
    // An account without tls_client_ca binds over TLS without a certificate, or with any (a
    // client whose library always sends one is not turned away at the handshake).
    all_through(&smpplib(tls, "shop", 2, &pki.proxy_ca, None).await, 2);
    all_through(&smpplib(tls, "shop", 2, &pki.proxy_ca, Some(&pki.client_cert)).await, 2);
    assert_eq!(proxy.snapshot().listener.bind_failures, 3, "the refused binds counted");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_that_requires_a_client_certificate_gets_the_proxys() {
    let pki = Pki::new();
    // The SMSC takes only certificates the client CA issued.
    let roots = smpp_proxy::tls::pem::roots(&pki.client_ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        smpp_proxy::tls::provider(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(smpp_proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            smpp_proxy::tls::pem::certs(&pki.smsc_cert.0).unwrap(),
            smpp_proxy::tls::pem::key(&pki.smsc_cert.1).unwrap(),
        )
        .unwrap();
    let sims = vec![sim::start(SimConfig {
        tls: Some(std::sync::Arc::new(config)),
        ..SimConfig::default()
    })
    .await
    .unwrap()];
    // Without a certificate of its own the proxy is refused, and says so.
    let without = pki.toml(&sims, &pki.smsc_ca, SHOP_ANYWHERE);
    let proxy = Proxy::start(Config::from_toml(&without).unwrap()).await.unwrap();
    upstream_error(&proxy, "CertificateRequired").await;
    assert_eq!(proxy.snapshot().upstreams[0].sessions_bound, 0);
    proxy.shutdown().await;
    // With the client certificate, and the SMSC's name given as the certificate has it.
    let identity = format!(
        "server_name = \"localhost\"\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.client_cert.0.to_str().unwrap(),
        pki.client_cert.1.to_str().unwrap()
    );
    let with = without.replace("tls = true\n", &format!("tls = true\n{identity}"));
    let proxy = start_proxy(&with).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    assert_eq!(submit_all(&mut esme, 10, 5).await.len(), 10);
    assert_eq!(sims[0].stats().submits.load(std::sync::atomic::Ordering::Relaxed), 10);
    proxy.shutdown().await;
    // A name the SMSC's certificate is not for: refused.
    let wrong = with.replace("server_name = \"localhost\"", "server_name = \"smsc.example.net\"");
    let proxy = Proxy::start(Config::from_toml(&wrong).unwrap()).await.unwrap();
    upstream_error(&proxy, "not valid for name").await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_new_connections_while_binds_stay_up() {
    let (pki, _sims, proxy) = tls_proxy().await;
    let tls = proxy.tls_addr().unwrap();
    let connector = pki.connector(&pki.proxy_ca);
    let mut old = Esme::connect_tls(tls, &connector).await.unwrap();
    let resp = old
        .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap();
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    let first = old.stream().peer_certificates().unwrap()[0].clone();
    // Renewed on disk (same paths), then read again.
    pki.proxy.issue(pki.dir.path(), "proxy", "proxy two", true);
    assert_eq!(proxy.reload_tls(), Ok(true));
    let fresh = Esme::connect_tls(tls, &connector).await.unwrap();
    let second = fresh.stream().peer_certificates().unwrap()[0].clone();
    assert_ne!(first, second, "a new connection gets the renewed certificate");
    // The bind made before is still up.
    assert_eq!(submit_all(&mut old, 1, 1).await.len(), 1);
    // A broken file is refused; the certificate in use stays.
    std::fs::write(&pki.proxy_cert.1, "not a key").unwrap();
    let e = proxy.reload_tls().unwrap_err();
    assert!(e.contains("proxy.key"), "{e}");
    let after = Esme::connect_tls(tls, &connector).await.unwrap();
    assert_eq!(after.stream().peer_certificates().unwrap()[0], second);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_without_stopping_the_binary() {
    let pki = Pki::new();
    let sims = vec![pki.tls_sim().await];
    let (plain, secure) = (free_port(), free_port());
    let text = pki
        .toml(&sims, &pki.smsc_ca, SHOP_ANYWHERE)
        .replace("smpp = \"127.0.0.1:0\"", &format!("smpp = \"127.0.0.1:{plain}\""))
        .replace(
            "smpp_tls = \"127.0.0.1:0\"",
            &format!("smpp_tls = \"127.0.0.1:{secure}\""),
        );
    let config = pki.dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut proc = spawn_proxy(&config);
    let tls: std::net::SocketAddr = format!("127.0.0.1:{secure}").parse().unwrap();
    let mut bound = bind_when_up(
        format!("127.0.0.1:{plain}").parse().unwrap(),
        CommandId::BIND_TRANSCEIVER,
    )
    .await;
    let connector = pki.connector(&pki.proxy_ca);
    let first = Esme::connect_tls(tls, &connector)
        .await
        .unwrap()
        .stream()
        .peer_certificates()
        .unwrap()[0]
        .clone();
    pki.proxy.issue(pki.dir.path(), "proxy", "proxy two", true);
    let pid = proc.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(
        wait_until_async(T, || async {
            let fresh = Esme::connect_tls(tls, &connector).await;
            fresh.is_ok_and(|e| e.stream().peer_certificates().unwrap()[0] != first)
        })
        .await,
        "the renewed certificate is served after SIGHUP"
    );
    assert!(proc.0.try_wait().unwrap().is_none(), "SIGHUP did not stop the proxy");
    // The bind is still up.
    assert_eq!(submit_all(&mut bound, 1, 1).await.len(), 1);
    proc.kill();
}

/// Polls an async condition every 50 ms until it holds or `within` passes.
async fn wait_until_async<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn check_names_every_tls_problem_with_its_key() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let missing = d.join("nowhere.pem");
    let text = format!(
        r#"node_id = "t"
[listen]
smpp = "127.0.0.1:0"
smpp_tls = "127.0.0.1:0"
cert_file = {cert:?}
key_file = {key:?}
[[clients]]
system_id = "bank"
password = "secret"
tls_client_ca = {missing:?}
[[upstreams]]
name = "a"
address = "127.0.0.1:1"
system_id = "p"
password = "pw"
ca_file = {ca:?}
[[upstreams]]
name = "b"
address = "127.0.0.1:2"
system_id = "p"
password = "pw"
tls = true
cert_file = {cert:?}
"#,
        cert = pki.proxy_cert.0.to_str().unwrap(),
        key = pki.rogue_server.1.to_str().unwrap(),
        missing = missing.to_str().unwrap(),
        ca = pki.smsc_ca.to_str().unwrap(),
    );
    let problems = Config::from_toml(&text).unwrap_err().0;
    let has = |key: &str, what: &str| problems.iter().any(|p| p.starts_with(key) && p.contains(what));
    assert!(has("clients[0].tls_client_ca", "nowhere.pem"), "{problems:#?}");
    assert!(has("upstreams[0].ca_file", "only with tls = true"), "{problems:#?}");
    assert!(has("upstreams[1].key_file", "missing"), "{problems:#?}");
    // The key is not the certificate's: seen once the other files read.
    let fixed = text.replace(missing.to_str().unwrap(), pki.client_ca.to_str().unwrap());
    let problems = Config::from_toml(&fixed).unwrap_err().0;
    assert!(
        problems.iter().any(|p| p.starts_with("listen.key_file")),
        "{problems:#?}"
    );
    // A TLS-only account needs the TLS listener.
    let no_listener = "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[[clients]]\nsystem_id = \"bank\"\npassword = \"secret\"\ntls_required = true\n[[upstreams]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"pw\"\n";
    let problems = Config::from_toml(no_listener).unwrap_err().0;
    assert_eq!(
        problems,
        vec!["clients[0].tls_required: needs listen.smpp_tls (a TLS listener)".to_owned()]
    );
}
