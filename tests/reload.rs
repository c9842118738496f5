//! Reloading the configuration while traffic flows: upstreams added, removed (drained) and
//! changed, a client's password and a route changed, a client removed; nothing unchanged is
//! re-bound (bind PDUs counted at the simulators), no request fails. An invalid file is
//! refused whole and the running configuration stays.

mod support;

use smpp_proxy::config::Config;
use smpp_proxy::esme::Esme;
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{SimHandle, SimStats};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// The file the proxy runs from: `upstreams` as (name, simulator, sessions, more keys), `main`
/// balancing over `main`, and `extra` appended (routes, more groups).
fn file(upstreams: &[(&str, &SimHandle, u32, &str)], main: &[&str], other_password: &str, extra: &str) -> String {
    let mut text = String::from(
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n\
         [[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\nroute = \"main\"\nwindow = 20\n",
    );
    text.push_str(&format!(
        "[[clients]]\nsystem_id = \"other\"\npassword = \"{other_password}\"\nroute = \"main\"\n"
    ));
    for (name, sim, sessions, more) in upstreams {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"{name}\"\naddress = \"{}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\nsessions = {sessions}\n{more}",
            sim.local_addr()
        ));
    }
    let members: Vec<String> = main.iter().map(|m| format!("\"{m}\"")).collect();
    text.push_str(&format!(
        "[[groups]]\nname = \"main\"\nmembers = [{}]\n{extra}",
        members.join(", ")
    ));
    text
}

async fn start(dir: &std::path::Path, text: &str) -> Proxy {
    let path = dir.join("smpp-proxy.toml");
    std::fs::write(&path, text).unwrap();
    let proxy = Proxy::start(Config::load(&path).unwrap()).await.unwrap();
    assert!(proxy.wait_bound(T).await, "upstreams did not bind");
    proxy
}

fn binds(sim: &SimHandle) -> u64 {
    sim.stats().binds.load(Ordering::Relaxed)
}

fn submits(sim: &SimHandle) -> u64 {
    sim.stats().submits.load(Ordering::Relaxed)
}

/// Submits `n` messages to `destination` with `window` outstanding; the answers by status.
async fn send(esme: &mut Esme, n: usize, window: usize, destination: &str) -> (usize, Vec<CommandStatus>) {
    let answers = submit_window(esme, n, window, destination, false).await;
    let errors: Vec<CommandStatus> = answers
        .iter()
        .map(|r| r.command_status)
        .filter(|s| *s != CommandStatus::ESME_ROK)
        .collect();
    (answers.len() - errors.len(), errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_changes_what_changed_and_nothing_else() {
    let sims = start_sims_without_receipts(4).await;
    let (a, b, c, d) = (&sims[0], &sims[1], &sims[2], &sims[3]);
    let dir = tempfile::tempdir().unwrap();
    // `gone` is a third account, removed by the reload.
    let gone = "[[clients]]\nsystem_id = \"gone\"\npassword = \"gone-pw\"\nroute = \"main\"\n";
    let before = file(
        &[("smsc-a", a, 2, ""), ("smsc-b", b, 1, ""), ("smsc-d", d, 2, "")],
        &["smsc-a", "smsc-b", "smsc-d"],
        "old-pass",
        gone,
    );
    let proxy = start(dir.path(), &before).await;
    let (a_binds, d_binds) = (binds(a), binds(d));
    assert_eq!((a_binds, binds(b), binds(c), d_binds), (2, 1, 0, 2));
    let mut other = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "other", "old-pass")
        .await
        .unwrap();
    let mut removed = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "gone", "gone-pw")
        .await
        .unwrap();

    // After: smsc-b removed, smsc-c added, smsc-d changed (a longer window), other's password
    // changed, a route sends 4479 to smsc-c alone, `gone` removed.
    let after = file(
        &[
            ("smsc-a", a, 2, ""),
            ("smsc-c", c, 1, ""),
            ("smsc-d", d, 2, "window = 64\n"),
        ],
        &["smsc-a", "smsc-c", "smsc-d"],
        "new-pass",
        "[[groups]]\nname = \"c-only\"\nmembers = [\"smsc-c\"]\n\
         [[routes]]\ndestination_prefix = \"4479\"\ngroup = \"c-only\"\n",
    );
    std::fs::write(dir.path().join("smpp-proxy.toml"), &after).unwrap();

    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ctx = proxy.context().clone();
    let stats: Vec<Arc<SimStats>> = sims.iter().map(|s| s.stats().clone()).collect();
    let reload = tokio::spawn(async move {
        let total = || stats.iter().map(|s| s.submits.load(Ordering::Relaxed)).sum::<u64>();
        assert!(wait_until(Duration::from_secs(30), || total() >= 3_000).await);
        let report = ctx.reloader.reload_file(&ctx).await;
        (report, total())
    });
    let (ok, errors) = send(&mut shop, 10_000, 20, "447700900123").await;
    let (report, when) = reload.await.unwrap();
    let report = report.expect("the reload is applied");
    assert!(
        when < 10_000,
        "the reload was applied while traffic flowed ({when} sent by then)"
    );
    assert_eq!(errors, vec![], "no request failed across the reload");
    assert_eq!(ok, 10_000);
    assert_eq!(report.upstreams_added, ["smsc-c"]);
    assert_eq!(report.upstreams_removed, ["smsc-b"]);
    assert_eq!(report.upstreams_changed, ["smsc-d"]);
    assert_eq!(report.clients_changed, ["other"]);
    assert_eq!(report.clients_removed, ["gone"]);
    assert!(report.routing_changed);
    assert_eq!(report.restart_needed, Vec::<String>::new());

    // The removed upstream: drained (every request it took answered: no error above), then
    // unbound politely; the removed account's bind is told to unbind.
    assert!(wait_until(T, || b.stats().unbinds.load(Ordering::Relaxed) == 1).await);
    assert!(wait_until(T, || b.stats().bound_now.load(Ordering::Relaxed) == 0).await);
    let unbind = removed.recv(T).await.unwrap();
    assert_eq!(unbind.command_id(), CommandId::UNBIND);
    // The changed upstream: each session replaced once, one at a time.
    assert!(wait_until(T, || d.stats().unbinds.load(Ordering::Relaxed) == 2).await);
    assert_eq!(binds(d), d_binds + 2);
    // The unchanged upstream: never bound again, never unbound.
    assert_eq!(binds(a), a_binds);
    assert_eq!(a.stats().unbinds.load(Ordering::Relaxed), 0);
    assert_eq!(binds(c), 1);

    // The new route: 4479 goes to smsc-c alone (slow start or not, it is its group's only member).
    let (a_before, c_before, d_before) = (submits(a), submits(c), submits(d));
    let (ok, errors) = send(&mut shop, 100, 10, "447900900123").await;
    assert_eq!((ok, errors), (100, vec![]));
    assert_eq!(submits(c) - c_before, 100);
    assert_eq!((submits(a), submits(d)), (a_before, d_before));

    // The changed password: the bind made before stays up; the next bind needs the new one.
    assert_eq!(send(&mut other, 1, 1, "447700900123").await, (1, vec![]));
    let refused = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSMITTER, "other", "old-pass").await;
    assert!(refused.is_err(), "the old password no longer binds");
    Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSMITTER, "other", "new-pass")
        .await
        .expect("the new password binds");
    let gone_again = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSMITTER, "gone", "gone-pw").await;
    assert!(gone_again.is_err(), "a removed account no longer binds");

    let status = proxy.snapshot();
    let names: Vec<&str> = status.upstreams.iter().map(|u| u.figures.name.as_str()).collect();
    assert_eq!(names, ["smsc-a", "smsc-c", "smsc-d"]);
    assert_eq!(status.config.reloads["ok"], 1);
    assert!(status.config.last_reload_success > 0);
    let metrics = status.prometheus();
    assert!(
        metrics.contains("smpp_proxy_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_whole_and_the_running_configuration_stays() {
    let sims = start_sims_without_receipts(2).await;
    let dir = tempfile::tempdir().unwrap();
    let before = file(&[("smsc-a", &sims[0], 1, "")], &["smsc-a"], "old-pass", "");
    let proxy = start(dir.path(), &before).await;
    // Valid parts (a new upstream) beside two problems: nothing of it may apply.
    let broken = file(
        &[("smsc-a", &sims[0], 1, ""), ("smsc-b", &sims[1], 1, "")],
        &["smsc-a", "smsc-b", "smsc-x"],
        "old-pass",
        "[routing]\nbogus = 1\n",
    );
    std::fs::write(dir.path().join("smpp-proxy.toml"), &broken).unwrap();
    let e = proxy.reload().await.unwrap_err().to_string();
    assert!(e.contains("routing.bogus"), "{e}");
    assert!(e.contains("smsc-x"), "{e}");
    assert!(e.contains("smpp-proxy.toml"), "the file is named: {e}");
    let status = proxy.snapshot();
    assert_eq!(status.upstreams.len(), 1);
    assert_eq!(status.config.reloads["failed"], 1);
    assert_eq!(status.config.reloads["ok"], 0);
    assert_eq!(binds(&sims[1]), 0);
    // Still serving as before.
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    assert_eq!(send(&mut shop, 10, 5, "447700900123").await, (10, vec![]));
    assert!(status
        .prometheus()
        .contains("smpp_proxy_config_reloads_total{result=\"failed\"} 1"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_need_a_restart_are_named_and_keep_their_running_values() {
    let sims = start_sims_without_receipts(1).await;
    let dir = tempfile::tempdir().unwrap();
    let before = file(&[("smsc-a", &sims[0], 1, "")], &["smsc-a"], "old-pass", "");
    let proxy = start(dir.path(), &before).await;
    let moved = before
        .replace(
            "smpp = \"127.0.0.1:0\"",
            &format!("smpp = \"127.0.0.1:{}\"", free_port()),
        )
        .replace("node_id = \"t\"", "node_id = \"u\"")
        .replace("[store]", "[sessions]\nthreads = 3\n[store]");
    std::fs::write(dir.path().join("smpp-proxy.toml"), &moved).unwrap();
    let report = proxy.reload().await.unwrap();
    assert_eq!(report.restart_needed, ["node_id", "listen.smpp", "sessions.threads"]);
    assert_eq!(
        proxy.context().config().client_sessions.threads,
        0,
        "the running value stays"
    );
    assert_eq!(proxy.snapshot().node_id, "t");
    assert_eq!(proxy.context().config().listen.port(), 0, "the running value stays");
    // Nothing else changed: nothing re-bound.
    assert_eq!(report.upstreams_changed, Vec::<String>::new());
    assert_eq!(binds(&sims[0]), 1);
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    assert_eq!(send(&mut shop, 5, 5, "447700900123").await, (5, vec![]));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_new_window_and_tps_apply_to_its_binds_at_once() {
    let sims = start_sims_without_receipts(1).await;
    // Slow answers: what is sent together is outstanding together.
    sims[0].set_latency(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let limits = |window: u32, tps: u32| proxy_toml(&sims, "", &format!("{SHOP}window = {window}\ntps = {tps}\n"), "");
    let proxy = start(dir.path(), &limits(1, 0)).await;
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let statuses = |answers: Vec<smpp_proxy::pdu::Pdu>| {
        let mut s: Vec<CommandStatus> = answers.iter().map(|a| a.command_status).collect();
        s.sort();
        s
    };
    let both = statuses(submit_window(&mut shop, 2, 2, "447700900123", false).await);
    assert_eq!(
        both,
        [CommandStatus::ESME_ROK, CommandStatus::ESME_RTHROTTLED],
        "window 1"
    );
    std::fs::write(dir.path().join("smpp-proxy.toml"), limits(4, 0)).unwrap();
    let report = proxy.reload().await.unwrap();
    assert_eq!(report.clients_changed, ["shop"]);
    let both = statuses(submit_window(&mut shop, 2, 2, "447700900123", false).await);
    assert_eq!(
        both,
        [CommandStatus::ESME_ROK, CommandStatus::ESME_ROK],
        "window 4, same bind"
    );
    std::fs::write(dir.path().join("smpp-proxy.toml"), limits(4, 1)).unwrap();
    proxy.reload().await.unwrap();
    let three = statuses(submit_window(&mut shop, 3, 3, "447700900123", false).await);
    assert_eq!(three[0], CommandStatus::ESME_ROK);
    assert_eq!(three[2], CommandStatus::ESME_RTHROTTLED, "tps 1, same bind: {three:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_leave_an_exposed_admin_endpoint_without_its_token() {
    let sims = start_sims_without_receipts(1).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    // Reachable from other hosts (all interfaces), so it needs its token.
    let exposed = format!("[admin]\ntoken_file = \"{}\"\n", token.display());
    let base = file(&[("smsc-a", &sims[0], 1, "")], &["smsc-a"], "old-pass", "");
    let with_admin =
        |text: &str, admin: &str| text.replacen("[listen]\n", &format!("[listen]\nadmin = \"{admin}\"\n"), 1);
    let proxy = start(dir.path(), &format!("{}{exposed}", with_admin(&base, "0.0.0.0:0"))).await;
    // A file that is fine on its own (loopback, no token) but would leave the running listener,
    // which stays until a restart, open to anyone: refused.
    std::fs::write(dir.path().join("smpp-proxy.toml"), with_admin(&base, "127.0.0.1:0")).unwrap();
    let e = proxy.reload().await.unwrap_err().to_string();
    assert!(
        e.contains("admin.token_file") && e.contains("keeps needing a token"),
        "{e}"
    );
    assert!(proxy.context().config().admin_access.token.is_some());
    proxy.shutdown().await;
}

/// A client removed by a reload while its receipts are still to come: a node on its own
/// cannot tell a removal from a mistake, so the SMSC keeps them (ESME_RX_T_APPN, not
/// ESME_RX_P_APPN), and a reload that brings the client back brings them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_a_removed_client_stay_with_the_smsc_until_it_is_back() {
    let sims = start_sims(
        1,
        smpp_proxy::sim::SimConfig {
            receipt_delay: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gone = "[[clients]]\nsystem_id = \"gone\"\npassword = \"gone-pw\"\nroute = \"main\"\n";
    let with = file(&[("smsc-a", &sims[0], 1, "")], &["smsc-a"], "p", gone);
    let without = file(&[("smsc-a", &sims[0], 1, "")], &["smsc-a"], "p", "");
    let proxy = start(dir.path(), &with).await;
    let bind = |kind| Esme::bind(proxy.local_addr(), kind, "gone", "gone-pw");
    let mut tx = bind(CommandId::BIND_TRANSMITTER).await.unwrap();
    let ids: std::collections::HashSet<String> = submit_all(&mut tx, 20, 20).await.into_iter().collect();
    std::fs::write(dir.path().join("smpp-proxy.toml"), &without).unwrap();
    proxy.reload().await.unwrap();
    let stats = sims[0].stats().clone();
    assert!(
        wait_until(T, || stats.redelivered.load(Ordering::Relaxed) > 0).await,
        "the receipts came and were refused"
    );
    assert_eq!(
        stats.last_refusal.load(Ordering::Relaxed),
        CommandStatus::ESME_RX_T_APPN.0,
        "refused for now, not for good"
    );
    assert!(proxy.snapshot().counters.deliveries_unknown_client > 0);
    std::fs::write(dir.path().join("smpp-proxy.toml"), &with).unwrap();
    proxy.reload().await.unwrap();
    let mut rx = bind(CommandId::BIND_RECEIVER).await.unwrap();
    let mut got = std::collections::HashSet::new();
    while got.len() < ids.len() {
        let pdu = rx.recv(T).await.expect("every receipt");
        if pdu.command_id() == CommandId::DELIVER_SM {
            rx.ack(&pdu).await.unwrap();
            got.insert(receipt_id(&pdu));
        }
    }
    assert_eq!(got, ids);
    proxy.shutdown().await;
}
