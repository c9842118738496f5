//! A node's part in its cluster, running beside its sessions until the upstreams stop: its
//! heartbeat, the messages every node gets (a client's doorbell goes to its account here; a
//! failback is carried out here too), and every few beats the upkeep of what the nodes share:
//! this node's bind counts written again, those of nodes gone forgotten, each client's `tps`
//! re-split by where its binds are, and with `upstream_tps = "split"` each upstream's by the
//! nodes alive.

use crate::cluster::bus::Control;
use crate::cluster::Cluster;
use crate::context::Context;
use crate::messages::AccountMsg;
use crate::routing::ModeError;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Upkeep runs every this many heartbeats.
const UPKEEP_BEATS: u32 = 2;

/// Starts the node's cluster tasks on `tasks`, until `stop`.
pub(super) fn spawn(ctx: &Arc<Context>, cluster: &Arc<Cluster>, tasks: &TaskTracker, stop: &CancellationToken) {
    tasks.spawn(cluster.clone().heartbeat(stop.clone()));
    let (bells, commands) = (Arc::downgrade(ctx), Arc::downgrade(ctx));
    tasks.spawn(cluster.clone().listen(
        move |client| {
            if let Some(account) = bells.upgrade().and_then(|ctx| ctx.live().accounts.get(client).cloned()) {
                // A full mailbox has work queued already; the poll catches up.
                let _ = account.tx.try_send(AccountMsg::Bell);
            }
        },
        move |command| {
            let Some(ctx) = commands.upgrade() else { return };
            match command {
                Control::FailBack(group) => match ctx.live().router.fail_back(&group) {
                    Ok(member) => info!(group, member, "failback asked for by the cluster"),
                    Err(e) => warn!(group, error = %e, "failback asked for by the cluster: not done here"),
                },
                // Said to the node that was asked too: it has set the mode already.
                Control::Mode(upstream, mode) => match ctx.live().router.set_mode(&upstream, mode) {
                    Ok(_) | Err(ModeError::Already(..)) => {}
                    Err(e) => warn!(upstream, error = %e, "mode asked for by the cluster: not set here"),
                },
                Control::Unbind(client) => {
                    if let Some(account) = ctx.live().accounts.get(&client) {
                        account.unbind_all();
                    }
                }
            }
        },
        stop.clone(),
    ));
    tasks.spawn(upkeep(Arc::downgrade(ctx), cluster.clone(), stop.clone()));
}

async fn upkeep(ctx: std::sync::Weak<Context>, cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(cluster.config().heartbeat * UPKEEP_BEATS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let Some(ctx) = ctx.upgrade() else { return };
        // A node whose id another run holds leaves the counts under that id to it.
        let health = cluster.store().health();
        if !health.serving() {
            continue;
        }
        // Other nodes are judged by their heartbeats only once every live one has had time to
        // beat since the store last came back.
        let judge = health.steady(cluster.config().heartbeat_ttl());
        let here = |client: &str| ctx.live().accounts.get(client).map(|a| a.here());
        let Ok(binds) = cluster.upkeep_binds(&ctx.client_ids(), here, judge).await else {
            // The store's health logs it; the next round tries again.
            continue;
        };
        let live = ctx.live.load_full();
        for (client, per_node) in &binds {
            let Some(account) = live.accounts.get(client) else {
                continue;
            };
            if account.peek().tps == 0 {
                continue;
            }
            // Where the client's binds are is where its traffic comes in.
            let total: u32 = per_node.values().sum();
            let here = per_node.get(cluster.node()).copied().unwrap_or(0);
            let share = if total == 0 || here == 0 {
                1.0
            } else {
                f64::from(here) / f64::from(total)
            };
            let rate = f64::from(account.peek().tps) * share;
            account.bucket.load().set_rate(rate, rate);
        }
        if let Ok(alive) = cluster.alive().await {
            let live = ctx.live();
            let buckets: Vec<(u32, &crate::session::SharedBucket)> = live
                .router
                .upstream_infos()
                .map(|info| (info.config.tps, &info.bucket))
                .collect();
            cluster.split_upstreams(&buckets, alive.len());
        }
    }
}
