//! A real `redis-server` for the tests, on a free port of 127.0.0.1, in a directory of its own,
//! with AOF and `appendfsync always` (an acknowledged write survives a restart), killed when
//! dropped. `scripts/test.sh` installs Debian's redis-server when it is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One redis-server.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    cluster: bool,
    /// Extra arguments (TLS, a password).
    extra: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port for a cluster node, whose bus listens on port + 10000: that one must be free too.
fn free_cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free port with a free bus port (port + 10000) among the ephemeral ports")
}

/// Why a server did not start.
enum Failed {
    /// It exited (its port was taken, most likely): worth another port.
    Exited(String),
    /// It runs but did not say it was ready.
    Silent(String),
}

/// How many fresh starts a server gets: a port found free can be taken before the server binds
/// it (the tests open many loopback connections), and then the server exits at once.
const FRESH_STARTS: usize = 5;

/// Sends one inline command, gives the first line of the answer.
pub fn ask(port: u16, command: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\r\n").as_bytes())?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl Redis {
    /// A standalone server.
    pub fn start() -> Redis {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir,
            _tmp: Some(tmp),
            cluster: false,
            extra: Vec::new(),
        };
        r.start_fresh();
        r
    }

    /// A standalone server that speaks TLS only (with a certificate for 127.0.0.1 from a CA of
    /// its own, `ca.pem` in `dir()`) and wants `password`.
    pub fn start_tls(password: &str) -> Redis {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        let port = free_port();
        let mut r = Redis {
            child: None,
            port,
            dir,
            _tmp: Some(tmp),
            cluster: false,
            extra: [
                "--tls-port",
                &port.to_string(),
                "--port",
                "0",
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.pem",
                "--tls-auth-clients",
                "no",
                "--requirepass",
                password,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        r.start_fresh();
        r
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server of a Redis Cluster, in `dir`.
    fn cluster_node(dir: &Path) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_cluster_port(),
            dir: dir.to_owned(),
            _tmp: None,
            cluster: true,
            extra: Vec::new(),
        };
        r.start_fresh();
        r
    }

    /// A first start: when the server exits at once (its port was taken meanwhile), it starts
    /// again on another port.
    fn start_fresh(&mut self) {
        for attempt in 1..=FRESH_STARTS {
            match self.spawn() {
                Ok(()) => return,
                Err(Failed::Exited(why)) if attempt < FRESH_STARTS => {
                    eprintln!("redis-server on {}: {why}; trying another port", self.port);
                    self.kill();
                    let port = if self.cluster { free_cluster_port() } else { free_port() };
                    self.move_to(port);
                }
                Err(Failed::Exited(why) | Failed::Silent(why)) => panic!("redis-server on {}: {why}", self.port),
            }
        }
    }

    fn move_to(&mut self, port: u16) {
        if let Some(i) = self.extra.iter().position(|a| a == "--tls-port") {
            self.extra[i + 1] = port.to_string();
        }
        self.port = port;
    }

    /// Starts the server on its port and waits until its log says it is ready; says why when
    /// it exits first or is not ready within 10 s (with the end of its log). Its own log, not
    /// an answer on the port: after a failed start, another test's server may hold that port.
    fn spawn(&mut self) -> Result<(), Failed> {
        let port = self.port.to_string();
        let tls = !self.extra.is_empty();
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
        ];
        if !tls {
            args.extend(["--port", &port]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        let conf = format!("nodes-{port}.conf");
        let aof = format!("aof-{port}");
        args.extend(["--appenddirname", &aof]);
        if self.cluster {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file", &conf]);
        }
        // Appended to: a restart's log follows the crash's.
        let log_path = self.dir.join(format!("redis-{port}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let from = log.metadata().unwrap().len() as usize;
        let child = Command::new("redis-server")
            .args(&args)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let this_start = || {
            let log = std::fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned()
        };
        let tail = |log: &str| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        };
        loop {
            let log = this_start();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(Failed::Exited(format!("exited ({status}):\n{}", tail(&this_start()))));
            }
            if log.contains("Ready to accept connections") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failed::Silent(format!("not ready within 10 s:\n{}", tail(&log))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and directory (what AOF kept, it has).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(Failed::Exited(why) | Failed::Silent(why)) = self.spawn() {
            panic!("redis-server on {} did not start again: {why}", self.port);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    _tmp: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::cluster_node(tmp.path())).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while !ask(n.port, "CLUSTER INFO").is_ok_and(|a| a.contains("cluster_state:ok")) {
                assert!(Instant::now() < deadline, "cluster not ok on {}", n.port);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes, _tmp: tmp }
    }

    /// The URL of its first node (the others are found from it).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }
}
