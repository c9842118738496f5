//! An upstream's `tps` is a promise to that SMSC: with several nodes it must hold for all of
//! them together.
//!
//! - `shared` (default): one token bucket in the store (`tb:{u/UP}`, refilled by the store's
//!   own clock, so the nodes' clocks do not matter); each node leases a few tokens at a time,
//!   when it runs low, and holds at most a hundredth of a second's worth. Any second sees at
//!   most `tps` plus the bucket's burst (a fiftieth of a second) plus what the nodes held when
//!   it began (a hundredth each): +4 % with two nodes, +5 % with three.
//! - `split`: each node's own bucket at `tps` divided by the nodes alive, re-split every
//!   heartbeat. No store traffic per message, but a node that gets all the traffic gets only
//!   its part.

use super::members::int;
use super::Cluster;
use crate::config::{UpstreamConfig, UpstreamTps};
use crate::session::{Lease, SharedBucket, TokenBucket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shared bucket's burst: this share of a second.
const BURST: f64 = 1.0 / 50.0;
/// What a node holds at most: this share of a second.
const HOLD: f64 = 1.0 / 100.0;
/// How long a lease waits after the store failed to answer.
const STORE_RETRY: Duration = Duration::from_millis(200);

/// Takes up to ARGV[3] tokens from a bucket of ARGV[1] per second, ARGV[2] at most saved.
/// KEYS: the bucket hash.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local grant = math.min(math.floor(tokens), tonumber(ARGV[3]))
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return grant
";

impl Cluster {
    /// The bucket an upstream's sessions on this node take from. With `shared`, a task leases
    /// tokens for it until `stop`.
    pub fn upstream_bucket(self: &Arc<Self>, upstream: &UpstreamConfig, stop: &CancellationToken) -> SharedBucket {
        if upstream.tps == 0 {
            return SharedBucket::Unlimited;
        }
        match self.config.upstream_tps {
            UpstreamTps::Split => SharedBucket::new(TokenBucket::smooth(upstream.tps, Instant::now())),
            UpstreamTps::Shared => {
                let hold = ((f64::from(upstream.tps) * HOLD).ceil() as u32).max(1);
                let lease = Arc::new(Lease::new(hold.div_ceil(2).max(1)));
                tokio::spawn(self.clone().lease(
                    upstream.name.clone(),
                    upstream.tps,
                    hold,
                    lease.clone(),
                    stop.clone(),
                ));
                SharedBucket::Leased(lease)
            }
        }
    }

    /// Keeps `lease` topped up from the shared bucket while its holders want tokens.
    async fn lease(self: Arc<Self>, upstream: String, tps: u32, hold: u32, lease: Arc<Lease>, stop: CancellationToken) {
        let key = self.store.keys().bucket(&upstream);
        let rate = f64::from(tps);
        let burst = (rate * BURST).max(1.0);
        // A token every this long: an empty bucket is not asked again sooner.
        let token_time = Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1));
        loop {
            tokio::select! {
                _ = lease.wanted() => {}
                _ = stop.cancelled() => return,
            }
            let want = hold.saturating_sub(lease.held());
            if want == 0 {
                // Someone took the last ones meanwhile and the lease refilled: wait again.
                tokio::task::yield_now().await;
                continue;
            }
            let granted = redis::cmd("EVAL")
                .arg(TAKE)
                .arg(1)
                .arg(&key)
                .arg(rate)
                .arg(burst)
                .arg(want)
                .query_async::<redis::Value>(&mut self.store.conn().clone())
                .await;
            match granted.as_ref().map(int) {
                Ok(Some(n)) if n > 0 => lease.deposit(n as u32),
                // Empty: ask again when a token may be there.
                Ok(_) => tokio::time::sleep(token_time).await,
                // The store is down (and new submits refused meanwhile): not a thousand
                // tries a second.
                Err(_) => tokio::time::sleep(STORE_RETRY.max(token_time)).await,
            }
        }
    }

    /// With `split`, sets each bucket to `tps` divided by the `alive` nodes.
    pub fn split_upstreams(&self, buckets: &[(u32, &SharedBucket)], alive: usize) {
        if self.config.upstream_tps != UpstreamTps::Split || alive == 0 {
            return;
        }
        for (tps, bucket) in buckets {
            let rate = f64::from(*tps) / alive as f64;
            bucket.set_rate(rate, (rate / 20.0).max(1.0));
        }
    }
}
