//! Load balancing (`strategy = "load-balance"`) with the project's simulator as SMSCs: shares
//! follow what each upstream really takes, a dead upstream leaves the rotation at once and
//! comes back gradually, a slow one loses its share. Real sockets on 127.0.0.1, real time.

mod support;

use smpp_proxy::bench::{self, BenchConfig, BenchReport};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::routing::UpstreamState;
use smpp_proxy::sim::{self, SimConfig, SimHandle, TpsWindow};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

fn group(strategy: &str, n: usize, extra: &str) -> String {
    let members: Vec<String> = (0..n).map(|i| format!("\"smsc-{i}\"")).collect();
    format!(
        "[[groups]]\nname = \"default\"\nstrategy = \"{strategy}\"\nmembers = [{}]\n{extra}",
        members.join(", ")
    )
}

fn load(proxy: &Proxy, rate: u32, seconds: u64) -> BenchConfig {
    BenchConfig {
        window: 100,
        rate,
        count: None,
        duration: Some(Duration::from_secs(seconds)),
        ..shop_load(proxy)
    }
}

/// Requests the router has handed to each upstream so far.
fn picked(proxy: &Proxy) -> Vec<u64> {
    proxy
        .context()
        .live()
        .router
        .upstream_figures()
        .iter()
        .map(|u| u.picked)
        .collect()
}

fn submits(sims: &[SimHandle]) -> Vec<u64> {
    sims.iter().map(|s| s.stats().submits.load(Ordering::Relaxed)).collect()
}

struct Run {
    accepted: Vec<u64>,
    throttled: u64,
    report: BenchReport,
}

/// `rate` msg/s at three SMSCs that take 100, 200 and 300 msg/s (beyond: ESME_RTHROTTLED,
/// counted as `window` says): `learn` for the proxy to learn them, then `measured`.
async fn capped_run(strategy: &str, rate: u32, window: TpsWindow, learn: u64, measured: u64) -> Run {
    let mut sims = Vec::new();
    for tps in [100, 200, 300] {
        sims.push(
            sim::start(SimConfig {
                tps,
                tps_window: window,
                receipts: false,
                ..SimConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let toml = proxy_toml(&sims, "window = 100\n", SHOP, &group(strategy, 3, ""));
    let proxy = start_proxy(&toml).await;
    let traffic = tokio::spawn(bench::run(load(&proxy, rate, learn + measured)));
    tokio::time::sleep(Duration::from_secs(learn)).await;
    let (start, throttled_start) = (submits(&sims), throttles(&sims));
    tokio::time::sleep(Duration::from_secs(measured)).await;
    let (end, throttled_end) = (submits(&sims), throttles(&sims));
    let report = traffic.await.unwrap().unwrap();
    proxy.shutdown().await;
    Run {
        accepted: start.iter().zip(&end).map(|(a, b)| b - a).collect(),
        throttled: throttled_end - throttled_start,
        report,
    }
}

impl Run {
    /// What the three SMSCs took is 1:2:3 within `tolerance` (0.1: 10 %), and the client saw
    /// no error; returns the total taken.
    fn assert_shares_1_2_3_without_client_errors(&self, tolerance: f64) -> u64 {
        let total: u64 = self.accepted.iter().sum();
        for (i, want) in [1.0, 2.0, 3.0].iter().enumerate() {
            let share = self.accepted[i] as f64 / total as f64;
            assert!(
                (share / (want / 6.0) - 1.0).abs() <= tolerance,
                "smsc-{i} took {share:.3} of {total}, want {:.3} ±{:.0}%: {:?}",
                want / 6.0,
                tolerance * 100.0,
                self.accepted
            );
        }
        let r = &self.report;
        assert!(
            r.errors.is_empty() && r.unanswered == 0,
            "client errors: {:?}, unanswered {}",
            r.errors,
            r.unanswered
        );
        total
    }
}

fn throttles(sims: &[SimHandle]) -> u64 {
    sims.iter().map(|s| s.stats().throttled.load(Ordering::Relaxed)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_follow_capacity_1_2_3_and_round_robin_does_worse() {
    let lb = capped_run("load-balance", 600, TpsWindow::Bucket, 3, 10).await;
    let total = lb.assert_shares_1_2_3_without_client_errors(0.10);
    assert!(
        total >= 5400,
        "{total} taken in the 10 s measured (>= 90% of 600/s wanted)"
    );
    assert_eq!(lb.report.acked, lb.report.sent);

    // Round robin, blind to what each SMSC takes, in the same test against fresh simulators.
    let rr = capped_run("round-robin", 600, TpsWindow::Bucket, 3, 10).await;
    println!(
        "load-balance: taken {:?} throttled {} errors {:?}; round-robin: taken {:?} throttled {} errors {:?}",
        lb.accepted, lb.throttled, lb.report.errors, rr.accepted, rr.throttled, rr.report.errors
    );
    let rr_errors: u64 = rr.report.errors.values().sum();
    assert!(
        rr.throttled > 5 * lb.throttled.max(1) || rr_errors > 0 || rr.report.acked < lb.report.acked * 9 / 10,
        "round robin did as well: {} throttles vs {}",
        rr.throttled,
        lb.throttled
    );
    assert!(
        lb.throttled * 10 < total,
        "load-balance drew {} throttles for {total} messages",
        lb.throttled
    );
}

/// SMSCs that count calendar seconds (the 101st submit of a second is refused, however the
/// first 100 were spread) punish any burst: 540 msg/s offered to 100 + 200 + 300, the proxy
/// learns each cap from its first throttles (8 s allowed: a loaded machine learns slower) and
/// then stays under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_second_smscs_see_almost_no_throttles_and_shares_stay_1_2_3() {
    let run = capped_run("load-balance", 540, TpsWindow::Fixed, 8, 15).await;
    let total: u64 = run.accepted.iter().sum();
    println!(
        "fixed windows, 540/s offered: taken {:?}, throttled {} ({:.2}% of upstream submits)",
        run.accepted,
        run.throttled,
        run.throttled as f64 * 100.0 / (total + run.throttled) as f64
    );
    assert!(
        run.throttled * 100 <= total + run.throttled,
        "{} of {} upstream submits throttled (> 1%)",
        run.throttled,
        total + run.throttled
    );
    // 20 %: the 100/s SMSC runs 5 - 16 % under its share in CI runs (a capacity learnt too low
    // from an early count is corrected only when forgotten, after 5 minutes; issue 14's note
    // carries it as work left). The throttle rate above is what this test is for.
    run.assert_shares_1_2_3_without_client_errors(0.20);
    assert!(total >= 540 * 15 * 95 / 100, "{total} taken in 15 s (< 95% of 540/s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_leaves_at_once_and_returns_gradually() {
    let sims = start_sims_without_receipts(3).await;
    let extra = group("load-balance", 3, "slow_start = \"3s\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &extra)).await;
    let ctx = proxy.context().clone();
    let traffic = tokio::spawn(bench::run(load(&proxy, 300, 9)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = picked(&proxy);
    assert!(before.iter().all(|&n| n > 10), "all three carry traffic: {before:?}");

    let addr = sims[1].local_addr();
    let mut sims = sims;
    let killed = sims.remove(1);
    let killed_at = Instant::now();
    killed.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a = picked(&proxy)[1];
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        picked(&proxy)[1],
        a,
        "no traffic to the dead upstream 1 s after it died"
    );
    let status = proxy.snapshot();
    assert_eq!(status.upstreams[1].figures.state, UpstreamState::Unbound);

    // Back on the same port: rebound within the reconnect backoff, then ramped up.
    let back = sim::start(SimConfig {
        listen: addr,
        receipts: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || ctx.live().sessions[1].is_bound()).await,
        "rebound"
    );
    let rebound = picked(&proxy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first_second = picked(&proxy);
    let share =
        |a: &[u64], b: &[u64], i: usize| (b[i] - a[i]) as f64 / (0..3).map(|k| b[k] - a[k]).sum::<u64>().max(1) as f64;
    let early = share(&rebound, &first_second, 1);
    assert!(
        early < 0.25,
        "a returning upstream starts small: {early:.2} in its first second"
    );

    let r = traffic.await.unwrap().unwrap();
    assert_eq!(r.sent, r.acked + r.errors.values().sum::<u64>() + r.unanswered);
    assert_eq!(r.unanswered, 0, "every submit answered");
    // Only requests already written to the killed SMSC can fail (re-sending them could
    // duplicate a message); everything never written went elsewhere.
    let failed: u64 = r.errors.values().sum();
    assert!(failed <= 50, "{failed} errors: {:?}", r.errors);
    assert!(r.errors.keys().all(|k| k.contains("RSYSERR")), "{:?}", r.errors);
    println!(
        "killed at {:?}: {failed} written-unanswered failed, rebound share in first second {early:.2}",
        killed_at.elapsed()
    );
    // Later it is weighed in full again (its slow start is over) and carries traffic. The
    // share itself is not compared with the early one: weights go with the square of each
    // link's latency, so on a busy machine a short sample's share moves far either way.
    assert!(
        wait_until(Duration::from_secs(5), || {
            proxy.snapshot().upstreams[1].figures.state == UpstreamState::Available
        })
        .await,
        "slow start over: {:?}",
        proxy.snapshot().upstreams[1].figures.state
    );
    let t = picked(&proxy);
    let more = bench::run(load(&proxy, 300, 2)).await.unwrap();
    assert!(more.errors.is_empty());
    let after = picked(&proxy);
    assert!(
        after[1] > t[1],
        "the returned upstream carries traffic again: {t:?} -> {after:?}"
    );
    drop(back);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_going_down_politely_costs_clients_nothing() {
    let sims = start_sims_without_receipts(3).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &group("load-balance", 3, ""))).await;
    let traffic = tokio::spawn(bench::run(load(&proxy, 300, 4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    sims[2].unbind_all();
    let r = traffic.await.unwrap().unwrap();
    assert!(r.sent > 1000);
    assert!(
        r.errors.is_empty() && r.unanswered == 0,
        "{:?} unanswered {}",
        r.errors,
        r.unanswered
    );
    assert_eq!(r.acked, r.sent);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_gets_ten_times_slower_loses_most_of_its_share() {
    let sims = start_sims(
        3,
        SimConfig {
            receipts: false,
            latency: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &group("load-balance", 3, ""))).await;
    let traffic = tokio::spawn(bench::run(load(&proxy, 400, 8)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = picked(&proxy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = picked(&proxy);
    let share =
        |a: &[u64], b: &[u64], i: usize| (b[i] - a[i]) as f64 / (0..3).map(|k| b[k] - a[k]).sum::<u64>().max(1) as f64;
    let before = share(&a, &b, 0);
    assert!(before > 0.2, "an equal share first: {before:.2}");
    sims[0].set_latency(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = picked(&proxy);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = picked(&proxy);
    let after = share(&c, &d, 0);
    println!("share of the slowed upstream: {before:.2} -> {after:.2}");
    assert!(
        after < before / 2.0,
        "most of its share gone: {before:.2} -> {after:.2}"
    );
    let r = traffic.await.unwrap().unwrap();
    assert!(r.errors.is_empty() && r.unanswered == 0, "{:?}", r.errors);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_tps_cap_holds_across_its_sessions() {
    let sims = start_sims_without_receipts(1).await;
    let proxy = start_proxy(&proxy_toml(&sims, "sessions = 3\ntps = 50\n", SHOP, "")).await;
    let started = Instant::now();
    let burst = tokio::spawn(bench::run(BenchConfig {
        count: Some(150),
        duration: None,
        rate: 0,
        ..load(&proxy, 0, 0)
    }));
    // Never more than the cap (plus its twentieth of a second) in any stretch of time.
    let mut checked = 0;
    while !burst.is_finished() {
        let elapsed = started.elapsed().as_secs_f64();
        let taken = submits(&sims)[0] as f64;
        assert!(taken <= 50.0 * elapsed + 3.5, "{taken} taken after {elapsed:.2} s");
        checked += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = burst.await.unwrap().unwrap();
    assert!(checked > 40, "watched for about 3 s");
    assert_eq!(
        r.acked, 150,
        "the burst waited for the cap instead of failing: {:?}",
        r.errors
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_max_share_caps_a_member() {
    let sims = start_sims_without_receipts(2).await;
    let extra = group("load-balance", 2, "max_share = { \"smsc-0\" = 0.2 }\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &extra)).await;
    let r = bench::run(load(&proxy, 400, 3)).await.unwrap();
    assert!(r.errors.is_empty() && r.unanswered == 0, "{:?}", r.errors);
    let taken = submits(&sims);
    let share = taken[0] as f64 / (taken[0] + taken[1]) as f64;
    assert!(share <= 0.25, "capped near 20%: {share:.2} of {taken:?}");
    assert!(share > 0.05, "but still used: {share:.2}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failing_every_request_is_ejected() {
    use smpp_proxy::pdu::CommandStatus;
    let broken = sim::start(SimConfig {
        receipts: false,
        reject: Some((String::new(), CommandStatus::ESME_RSYSERR)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut sims = vec![broken];
    sims.extend(start_sims_without_receipts(2).await);
    let extra = format!("{}[routing]\neject_for = \"30s\"\n", group("load-balance", 3, ""));
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &extra)).await;
    let ctx = proxy.context().clone();
    let traffic = tokio::spawn(bench::run(load(&proxy, 300, 4)));
    let ejected = || smpp_proxy::admin::Snapshot::take(&ctx).upstreams[0].figures.state == UpstreamState::Ejected;
    assert!(
        wait_until(Duration::from_secs(3), ejected).await,
        "ejected for its error rate"
    );
    let at = picked(&proxy)[0];
    let r = traffic.await.unwrap().unwrap();
    assert_eq!(picked(&proxy)[0], at, "no traffic once ejected");
    // The SMSC's own answers reach the client unchanged until then: a handful.
    let failed = r.errors.get("ESME_RSYSERR").copied().unwrap_or(0);
    assert!(
        failed < 50 && r.acked + failed == r.sent,
        "{:?} of {}",
        r.errors,
        r.sent
    );
    proxy.shutdown().await;
}
