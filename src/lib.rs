//! smpp-proxy: a high-availability SMPP proxy. ESMEs bind to it as they would to an SMSC; it
//! holds binds to several upstream SMSCs, routes each submit to one of them, and brings
//! delivery receipts and MO back to the client they belong to, with that client's message id,
//! keeping them until the client takes them.
//!
//! # Layout
//!
//! Each module depends only on those listed above it (checked by `tests/layout.rs`):
//!
//! - [`hex`]: hex text for octets (the `pdu` command, fixtures).
//! - [`budget`]: memory held for others, bounded in bytes as well as in count; each thing held
//!   gives its share back when dropped.
//! - [`sharded`]: counters kept per thread (every session thread adds to them on every message).
//! - [`histogram`]: lock-free histograms for `/metrics` (latencies, receipt delays), per thread.
//! - [`pdu`]: the wire. Frames cut by `command_length` ([`pdu::SmppCodec`]), parsed with nom
//!   into [`pdu::Pdu`] (fields share the frame's bytes), encoded back byte for byte; errors
//!   typed by scope (one PDU vs the whole stream), each with the SMPP status to answer.
//! - [`receipt`]: delivery receipts: read out of deliver_sm / data_sm (text and TLVs, tolerant
//!   of what real SMSCs send), their message id rewritten, ids matched across hex, decimal,
//!   zero-padding and case.
//! - [`session`]: what client and upstream sessions share: the SMPP state table, sequence
//!   numbers, keep-alive, reconnect backoff, token buckets, sockets whose writes cannot wait
//!   forever, and the threads sessions and accounts run on.
//! - [`tls`]: TLS on both sides (rustls): certificates and keys from PEM files, the listener's
//!   (reloadable) and the client certificates accounts require, the upstreams', and the socket
//!   that is plain or TLS.
//! - [`logging`]: log lines written by a thread of their own, dropped and counted rather than
//!   waited for; per-call-site rate limits.
//! - [`config`]: the TOML configuration, parsed strictly and validated whole (every problem
//!   with its key).
//! - [`guard`]: what the SMPP listener lets in: connection caps, bind authentication, bans for
//!   addresses that keep failing it.
//! - [`store`]: correlations (client id <-> upstream id) and client outboxes behind one trait;
//!   a memory store, the durable one (redb, one writer thread, group commit), and Redis, shared
//!   by the nodes of a cluster.
//! - [`ids`]: the message ids the proxy hands its clients.
//! - [`trail`]: the message trail, one JSON line per submit and receipt, written by a thread of
//!   its own.
//! - [`messages`]: what the tasks send each other (the channel map below).
//! - [`upstream`]: the proxy as an ESME: one task per upstream session, the handle the router
//!   reads, the [`upstream::InFlight`] guard, and each upstream's measured load and health.
//! - [`cluster`]: nodes sharing one Redis: membership and heartbeats, binds and rates held for
//!   the whole cluster, messages to every node.
//! - [`routing`]: where each request goes: routes, groups, strategies (pure pick functions over
//!   snapshots), concatenated messages kept on one upstream.
//! - [`account`]: one task per client account: its outbox of receipts and MO, custody.
//! - [`context`]: what every task of a running proxy shares (swapped whole by a reload, which
//!   lives here too), the receipt/MO path from the upstreams to the accounts, and the recent
//!   history the status page draws.
//! - [`server`]: the proxy as an SMSC: the listener and one task per client connection.
//! - [`admin`]: the admin endpoint: `/status`, `/metrics`, the status page, and the operator's
//!   actions (drain, pause, enable, unbind, failback, reload).
//! - [`proxy`]: the wiring: [`proxy::Proxy::start`] builds everything from a config and starts
//!   its tasks; shutdown stops them in order.
//! - [`sim`], [`esme`], [`bench`](mod@bench): an SMSC simulator, a small ESME, and the load generator that
//!   drives them (tests, benchmarks, the demo).
//!
//! The binary (`src/main.rs`, `src/cli/`) is a thin layer over these.
//!
//! # Tasks and channels
//!
//! One task owns each connection; tasks talk through bounded channels only:
//!
//! ```text
//!  client session ──Forward──────────────────▶ upstream session     (via the router)
//!  client session ◀─ClientEvent::Answer────── upstream session      (the request's Outcome)
//!  upstream session ─deliver_sm─▶ context (inbound) ─AccountMsg::Deliver─▶ account
//!  upstream session ◀─UpstreamEvent::DeliverAck── account           (answer the SMSC: held)
//!  client session ◀─ClientEvent::Deliver────── account              (a receipt or MO to write)
//!  client session ─AccountMsg::{BindUp, BindDown, Delivered}─▶ account
//!  upstream session ─ClientEvent::Direct─▶ client session          (its account: nothing waiting)
//!  upstream session ◀─UpstreamEvent::DeliverAck── client session    (the client took it)
//!  client session ─AccountMsg::Returned─▶ account                   (the client did not)
//! ```
//!
//! Sessions and accounts run on `[sessions] threads` single-threaded runtimes
//! ([`session::threads`]), placed in turn; a request goes to an upstream session on its
//! client's thread, a receipt to a bind on the upstream session's thread ([`account::Lanes`]),
//! else on another, when they have room: a hand-over on one thread is a queue push, not a
//! wake-up of another core.
//!
//! Shared state read by many tasks is behind `Arc`s with short, await-free critical sections:
//! each upstream's [`upstream::load::Load`] (written by its sessions, read by the router), the
//! [`store::Store`], the accounts' counters.

#![warn(missing_docs)]

pub mod account;
pub mod admin;
pub mod bench;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod context;
pub mod esme;
pub mod guard;
pub mod hex;
pub mod histogram;
pub mod ids;
pub mod logging;
pub mod messages;
pub mod pdu;
pub mod proxy;
pub mod receipt;
pub mod routing;
pub mod server;
pub mod session;
pub mod sharded;
pub mod sim;
pub mod store;
pub mod tls;
pub mod trail;
pub mod upstream;
