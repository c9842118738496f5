//! The names of the shared store's keys. Every key starts with the configured prefix. Keys
//! used together carry the same hash tag, so that on a Redis Cluster each batch of them is one
//! slot: `{u/<upstream>}` for the correlations of an upstream, `{c/<client>}` for a client's
//! outbox, its receipts already stored (dedup markers), its client-id index and its binds.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `corr:{u/UP}:ID` | string | a correlation, under its upstream's id (canonical form), with a TTL |
//! | `cid:{c/CL}:ID` | string | the `corr:` key of the id client CL was given, same TTL |
//! | `out:{c/CL}` | stream | CL's outbox (field `p`: the PDU), consumer group `dlv` (one consumer per node) |
//! | `seen:{c/CL}:NAME` | string | a receipt (or MO) stored in CL's outbox, for `dedup_window` |
//! | `binds:{c/CL}` | hash | node → CL's binds on it |
//! | `tb:{u/UP}` | hash | UP's token bucket, when nodes share its `tps` |
//! | `node:NODE` | string | NODE's heartbeat (who runs it, since when), with a TTL |
//! | `nodes` | set | every node id seen |
//! | channel `bell` | pub/sub | CL: new entries in CL's outbox |
//! | channel `ctl` | pub/sub | commands for every node (failback) |

/// The consumer group every node reads outboxes in.
pub const GROUP: &str = "dlv";

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// A correlation under its upstream and the canonical form of the upstream's id.
    pub fn corr(&self, upstream: &str, id: &str) -> String {
        format!("{}corr:{{u/{upstream}}}:{id}", self.prefix)
    }

    /// The index from a client's id to its correlation.
    pub fn client_id(&self, client: &str, id: &str) -> String {
        format!("{}cid:{{c/{client}}}:{id}", self.prefix)
    }

    /// A client's outbox.
    pub fn outbox(&self, client: &str) -> String {
        format!("{}out:{{c/{client}}}", self.prefix)
    }

    /// The marker of an entry stored in a client's outbox.
    pub fn seen(&self, client: &str, name: &str) -> String {
        format!("{}seen:{{c/{client}}}:{name}", self.prefix)
    }

    /// A client's binds per node.
    pub fn binds(&self, client: &str) -> String {
        format!("{}binds:{{c/{client}}}", self.prefix)
    }

    /// A client's receiver-capable binds per node (which nodes can deliver its outbox).
    pub fn receivers(&self, client: &str) -> String {
        format!("{}rx:{{c/{client}}}", self.prefix)
    }

    /// An upstream's shared token bucket.
    pub fn bucket(&self, upstream: &str) -> String {
        format!("{}tb:{{u/{upstream}}}", self.prefix)
    }

    /// A node's heartbeat.
    pub fn node(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// Every node id seen.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// The doorbell channel.
    pub fn bell(&self) -> String {
        format!("{}bell", self.prefix)
    }

    /// The channel of commands for every node.
    pub fn control(&self) -> String {
        format!("{}ctl", self.prefix)
    }
}

/// The hash tag of `key` (what is between its first `{` and the next `}`): keys with one tag
/// are in one slot of a Redis Cluster.
pub fn tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}').map(|close| &key[open + 1..open + 1 + close]))
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_used_together_share_a_tag() {
        let k = Keys::new("p:");
        assert_eq!(tag(&k.outbox("shop")), tag(&k.seen("shop", "a:1:DELIVRD")));
        assert_eq!(tag(&k.outbox("shop")), tag(&k.binds("shop")));
        assert_eq!(tag(&k.binds("shop")), tag(&k.receivers("shop")));
        assert_eq!(tag(&k.corr("smsc-a", "1f")), tag(&k.corr("smsc-a", "20")));
        assert_ne!(tag(&k.corr("smsc-a", "1f")), tag(&k.outbox("smsc-a")));
        assert_eq!(k.corr("smsc-a", "1f"), "p:corr:{u/smsc-a}:1f");
    }
}
