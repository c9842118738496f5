//! Backup routing (`strategy = "failover"`) and groups inside groups, with the simulator as
//! SMSCs killed and restarted on their ports. Real sockets on 127.0.0.1, real time.

mod support;

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig, SimHandle};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

async fn restart(addr: SocketAddr) -> SimHandle {
    sim::start(SimConfig {
        listen: addr,
        ..quiet()
    })
    .await
    .unwrap()
}

fn submits(sim: &SimHandle) -> u64 {
    sim.stats().submits.load(Ordering::Relaxed)
}

fn load(proxy: &Proxy, seconds: u64) -> BenchConfig {
    BenchConfig {
        window: 50,
        rate: 200,
        count: None,
        duration: Some(Duration::from_secs(seconds)),
        ..shop_load(proxy)
    }
}

fn active(proxy: &Proxy, group: &str) -> Option<String> {
    proxy
        .context()
        .live()
        .router
        .group_figures()
        .into_iter()
        .find(|g| g.name == group)
        .and_then(|g| g.active)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_is_warm_takes_over_at_once_and_the_primary_gets_it_back_after_failback_after() {
    let sims = start_sims(2, quiet()).await;
    let groups = "[[groups]]\nname = \"default\"\nstrategy = \"failover\"\nmembers = [\"smsc-0\", \"smsc-1\"]\nfailback_after = \"3s\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, groups)).await;
    let ctx = proxy.context().clone();
    let traffic = tokio::spawn(bench::run(load(&proxy, 14)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(submits(&sims[0]) > 200, "the primary carries it all");
    assert_eq!(submits(&sims[1]), 0, "the standby carries nothing");
    assert_eq!(sims[1].stats().bound_now.load(Ordering::Relaxed), 1, "but is bound");

    let mut sims = sims;
    let primary = sims.remove(0);
    let addr = primary.local_addr();
    primary.stop().await;
    let killed = Instant::now();
    assert!(wait_until(T, || submits(&sims[0]) > 0).await);
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_secs(1),
        "standby carried traffic after {took_over:?}"
    );
    assert_eq!(active(&proxy, "default").as_deref(), Some("smsc-1"));

    let back = restart(addr).await;
    assert!(
        wait_until(T, || ctx.live().sessions[0].is_bound()).await,
        "primary rebound"
    );
    let rebound = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(submits(&back), 0, "no failback before failback_after");
    assert!(
        wait_until(Duration::from_secs(2), || submits(&back) > 0).await,
        "failback"
    );
    // The test sees the bind up to a poll (and a busy machine's scheduling) after the proxy
    // did, and the proxy counts `failback_after` from its own moment.
    let after = rebound.elapsed();
    assert!(after >= Duration::from_millis(2750), "failback after {after:?}");
    assert_eq!(active(&proxy, "default").as_deref(), Some("smsc-0"));
    let standby_then = submits(&sims[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(submits(&sims[0]) - standby_then < 5, "the standby is idle again");

    let r = traffic.await.unwrap().unwrap();
    assert_eq!(r.unanswered, 0);
    // Only what was written to the primary as it died can fail (a re-send could duplicate it).
    let failed: u64 = r.errors.values().sum();
    assert!(
        failed <= 100 && r.errors.keys().all(|k| k.contains("RSYSERR")),
        "{:?}",
        r.errors
    );
    drop(back);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_primary_does_not_ping_pong() {
    let sims = start_sims(2, quiet()).await;
    let groups = "[[groups]]\nname = \"default\"\nstrategy = \"failover\"\nmembers = [\"smsc-0\", \"smsc-1\"]\nfailback_after = \"3s\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, groups)).await;
    let ctx = proxy.context().clone();
    let mut sims = sims;
    let primary = sims.remove(0);
    let addr = primary.local_addr();
    primary.stop().await;
    let traffic = tokio::spawn(bench::run(load(&proxy, 12)));
    // Up 2 s, down 2 s, three times; the proxy rebinds whenever its backoff lets it.
    let mut flapped = 0;
    let mut binds = 0;
    for _ in 0..3 {
        let up = restart(addr).await;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            binds = binds.max(up.stats().binds.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        flapped += submits(&up);
        up.stop().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(binds > 0, "the proxy did rebind the flapping primary at least once");
    assert_eq!(flapped, 0, "a primary never up for failback_after gets nothing back");
    assert!(submits(&sims[0]) > 500, "the standby carried it");
    let r = traffic.await.unwrap().unwrap();
    assert!(r.errors.is_empty() && r.unanswered == 0, "{:?}", r.errors);
    // Up for good: back after failback_after (the reconnect backoff grew while it flapped).
    let stable = restart(addr).await;
    assert!(wait_until(Duration::from_secs(30), || ctx.live().sessions[0].is_bound()).await);
    let rebound = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || active(&proxy, "default").as_deref()
            == Some("smsc-0"))
        .await,
        "failback once stable"
    );
    assert!(
        rebound.elapsed() >= Duration::from_millis(2900),
        "not before failback_after"
    );
    let more = bench::run(BenchConfig {
        count: Some(50),
        duration: None,
        rate: 0,
        ..load(&proxy, 0)
    })
    .await
    .unwrap();
    assert_eq!((more.acked, submits(&stable)), (50, 50));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_a_and_b_with_c_as_backup() {
    let sims = start_sims(3, quiet()).await;
    let groups = "[[groups]]\nname = \"ab\"\nstrategy = \"load-balance\"\nmembers = [\"smsc-0\", \"smsc-1\"]\n\
                  [[groups]]\nname = \"default\"\nstrategy = \"failover\"\nmembers = [\"ab\", \"smsc-2\"]\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, groups)).await;
    let traffic = tokio::spawn(bench::run(load(&proxy, 7)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b, c) = (submits(&sims[0]), submits(&sims[1]), submits(&sims[2]));
    assert!(a > 20 && b > 20, "A and B share: {a} {b}");
    assert_eq!(c, 0, "C is the backup");
    let mut sims = sims;
    sims.remove(0).stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b1, c1) = (submits(&sims[0]), submits(&sims[1]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(submits(&sims[0]) > b1 + 50, "B alone carries the group");
    assert_eq!(submits(&sims[1]), c1, "C still waits while B is up");
    assert_eq!(c1, 0);
    sims.remove(0).stop().await;
    assert!(
        wait_until(Duration::from_secs(1), || submits(&sims[0]) > 0).await,
        "C takes over"
    );
    assert_eq!(active(&proxy, "default").as_deref(), Some("smsc-2"));
    let r = traffic.await.unwrap().unwrap();
    assert_eq!(r.unanswered, 0);
    assert!(r.errors.keys().all(|k| k.contains("RSYSERR")), "{:?}", r.errors);
    proxy.shutdown().await;
}

/// The binary, as an operator runs it: success, and everything it printed.
fn cli(args: &[&str]) -> (bool, String) {
    let (code, out, err) = run_cli(args, None);
    (code == 0, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failback_waits_for_the_operator() {
    let sims = start_sims(2, quiet()).await;
    let groups = "[[groups]]\nname = \"default\"\nstrategy = \"failover\"\nmembers = [\"smsc-0\", \"smsc-1\"]\n\
                  failback = \"manual\"\nfailback_after = \"500ms\"\n\
                  [[groups]]\nname = \"spread\"\nmembers = [\"smsc-0\", \"smsc-1\"]\n";
    let toml = proxy_toml(&sims, "", SHOP, groups).replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let proxy = start_proxy(&toml).await;
    let ctx = proxy.context().clone();
    let admin = proxy.admin_addr().unwrap().to_string();
    let mut sims = sims;
    let primary = sims.remove(0);
    let addr = primary.local_addr();
    primary.stop().await;
    let back = restart(addr).await;
    assert!(wait_until(T, || ctx.live().sessions[0].is_bound()).await);
    let one = |proxy: &Proxy| {
        bench::run(BenchConfig {
            count: Some(20),
            duration: None,
            rate: 0,
            ..load(proxy, 0)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(one(&proxy).await.unwrap().acked, 20);
    assert_eq!(
        submits(&back),
        0,
        "healthy for 4 x failback_after, still not used: manual"
    );
    assert_eq!(submits(&sims[0]), 20);

    let admin_for = admin.clone();
    let (ok, status) = tokio::task::spawn_blocking(move || cli(&["status", "--admin", &admin_for]))
        .await
        .unwrap();
    assert!(ok, "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("default ") && l.contains("failover") && l.contains("smsc-1")),
        "{status}"
    );
    let (ok, said) = tokio::task::spawn_blocking(move || cli(&["failback", "--admin", &admin, "--group", "default"]))
        .await
        .unwrap();
    assert!(ok, "{said}");
    assert!(said.contains("traffic on smsc-0"), "{said}");
    assert_eq!(one(&proxy).await.unwrap().acked, 20);
    assert_eq!(submits(&back), 20, "the operator moved it back");
    let post = |path: &str| {
        smpp_proxy::admin::post(proxy.admin_addr().unwrap(), path)
            .unwrap_err()
            .to_string()
    };
    let unknown = post("/groups/nope/failback");
    assert!(
        unknown.contains("404") && unknown.contains("no group is called \"nope\""),
        "{unknown}"
    );
    // A group that exists but does not fail over: a conflict with its state, not a missing name.
    let balanced = post("/groups/spread/failback");
    assert!(
        balanced.contains("409") && balanced.contains("not a failover group"),
        "{balanced}"
    );
    proxy.shutdown().await;
}
