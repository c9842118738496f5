//! Messages to every node, over the store's pub/sub: the doorbell (`bell`: a client's outbox
//! has new entries) and commands (`ctl`: fail a group back). A message can be lost (pub/sub is
//! at most once, and a node reconnecting misses what was said meanwhile): the doorbell only
//! saves the accounts the wait for their next poll; a lost failback is said again by asking
//! again. One subscription per node, on a connection of its own, made again when it drops.

use super::members::RETRY;
use super::Cluster;
use crate::store::StoreError;
use crate::upstream::Mode;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A command for every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Move this failover group back to its first available member.
    FailBack(String),
    /// Set this upstream's mode (drain, pause, enable).
    Mode(String, Mode),
    /// Unbind every bind of this client.
    Unbind(String),
}

impl Control {
    fn encode(&self) -> String {
        match self {
            Control::FailBack(group) => format!("failback {group}"),
            Control::Mode(upstream, mode) => format!("mode {} {upstream}", mode.as_str()),
            Control::Unbind(client) => format!("unbind {client}"),
        }
    }

    fn decode(text: &str) -> Option<Control> {
        let (verb, rest) = text.split_once(' ')?;
        match verb {
            "failback" => Some(Control::FailBack(rest.to_owned())),
            "mode" => {
                let (mode, upstream) = rest.split_once(' ')?;
                Some(Control::Mode(upstream.to_owned(), Mode::parse(mode)?))
            }
            "unbind" => Some(Control::Unbind(rest.to_owned())),
            _ => None,
        }
    }
}

impl Cluster {
    /// Tells every node (this one too) to carry out `command`.
    pub async fn broadcast(&self, command: &Control) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.store.keys().control())
            .arg(command.encode())
            .query_async(&mut self.store.conn().clone())
            .await?;
        Ok(())
    }

    /// Listens until `stop`: `bell(client)` for each doorbell, `control(command)` for each
    /// command.
    pub async fn listen(
        self: std::sync::Arc<Self>,
        bell: impl Fn(&str) + Send,
        control: impl Fn(Control) + Send,
        stop: CancellationToken,
    ) {
        let (bells, commands) = (self.store.keys().bell(), self.store.keys().control());
        let mut failing = false;
        loop {
            let subscribed = async {
                let client = super::super::store::redis::conn::client(&self.redis)?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&bells).await?;
                pubsub.subscribe(&commands).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut pubsub = tokio::select! {
                s = subscribed => match s {
                    Ok(p) => p,
                    Err(e) => {
                        if !failing {
                            failing = true;
                            warn!(error = %e, "cluster messages: cannot subscribe; trying again");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => continue,
                            _ = stop.cancelled() => return,
                        }
                    }
                },
                _ = stop.cancelled() => return,
            };
            if failing {
                failing = false;
                debug!("cluster messages: subscribed again");
            }
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    m = messages.next() => m,
                    _ = stop.cancelled() => return,
                };
                let Some(message) = message else { break };
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                if message.get_channel_name() == bells {
                    bell(&payload);
                } else if let Some(command) = Control::decode(&payload) {
                    control(command);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Control;

    #[test]
    fn commands_round_trip() {
        let c = Control::FailBack("default".into());
        assert_eq!(Control::decode(&c.encode()), Some(c));
        assert_eq!(Control::decode("reboot now"), None);
    }
}
