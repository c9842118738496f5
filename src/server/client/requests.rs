//! A bound client's requests: forwarded to the router within the client's window and tps,
//! queued while every upstream is full, answered when the upstream answers (with the client's
//! own message id, once its correlation is durable), given up with the right status otherwise.

use super::commits::Committing;
use super::{Client, Flow};
use crate::config::StoreDown;
use crate::messages::{Forward, Outcome, RequestInfo};
use crate::pdu::codec::{put_frame, put_with_message_id};
use crate::pdu::peek::{next_frame, put_header, response_id, Header, Next};
use crate::pdu::HEADER_LEN;
use crate::pdu::{Body, COctetString, CommandId, CommandStatus, Pdu};
use crate::receipt::id::IdMatch;
use crate::store::{Correlation, StoreError};
use crate::trail::TrailEvent;
use bytes::Bytes;
use compact_str::CompactString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// A request routed this often (throttled by SMSCs or bounced each time) is answered
/// ESME_RTHROTTLED.
const MAX_ATTEMPTS: u8 = 32;
/// How often queued requests look for upstream window again (answers also wake them).
pub(super) const QUEUE_RETRY: Duration = Duration::from_millis(2);

/// Whether `command` is a submit (what the per-client figures count).
fn is_submit(command: CommandId) -> bool {
    matches!(
        command,
        CommandId::SUBMIT_SM | CommandId::DATA_SM | CommandId::SUBMIT_MULTI
    )
}

/// Where a query/cancel/replace in flight must go, and the client's id to put back.
pub(super) struct Mapped {
    upstream: Arc<str>,
    client_id: COctetString,
}

impl Client {
    /// submit_sm, data_sm, submit_multi and the broadcast family: to the account's group, as
    /// `frame` (the octets `pdu` was parsed from).
    pub(super) fn forward(&mut self, frame: Bytes, pdu: Pdu) -> Flow {
        let Some(bound) = self.phase.bound() else {
            return self.reply(&pdu, CommandStatus::ESME_RINVBNDSTS);
        };
        let account = &bound.account;
        if self.outstanding >= bound.window() || !account.bucket.load().try_take(Instant::now) {
            account.metrics.answered(CommandStatus::ESME_RTHROTTLED, None);
            return self.reply(&pdu, CommandStatus::ESME_RTHROTTLED);
        }
        if !self.ctx.store.available() {
            // Its correlation could not be kept: not sent, so nothing is lost or sent twice.
            let status = match self.ctx.live().config.cluster.store_down {
                StoreDown::Throttle => CommandStatus::ESME_RTHROTTLED,
                StoreDown::Syserr => CommandStatus::ESME_RSYSERR,
            };
            account.metrics.answered(status, None);
            return self.reply(&pdu, status);
        }
        let fwd = Forward {
            frame,
            info: RequestInfo::of(&pdu),
            reply: bound.events_tx.clone(),
            attempt: 0,
            received: self.clock.instant(),
        };
        self.outstanding += 1;
        self.send_or_queue(fwd, Some(&pdu))
    }

    /// query_sm, cancel_sm, replace_sm: to the upstream that took the message, with its id.
    pub(super) async fn forward_mapped(&mut self, mut pdu: Pdu) -> Flow {
        let Some(bound) = self.phase.bound() else {
            return self.reply(&pdu, CommandStatus::ESME_RINVBNDSTS);
        };
        if self.outstanding >= bound.window() {
            return self.reply(&pdu, CommandStatus::ESME_RTHROTTLED);
        }
        let reply = bound.events_tx.clone();
        let client_id = pdu.message_id().cloned().unwrap_or_default();
        let found = self
            .ctx
            .store
            .find_by_client(&bound.account.system_id, &String::from_utf8_lossy(client_id.as_bytes()));
        // Rare (query/cancel/replace): waiting here for a shared store's answer is fine.
        let found = found.await;
        // After a wait: a new turn.
        self.clock.tick();
        let correlation = match found {
            Ok(Some(c)) => c,
            Ok(None) => return self.reply(&pdu, CommandStatus::ESME_RINVMSGID),
            Err(e) => {
                warn!(error = %e, "store lookup failed");
                return self.reply(&pdu, CommandStatus::ESME_RSYSERR);
            }
        };
        let upstream_id = COctetString::new(correlation.upstream_id.as_bytes().to_vec()).unwrap_or_default();
        match &mut pdu.body {
            Body::QuerySm(b) => b.message_id = upstream_id,
            Body::CancelSm(b) => b.message_id = upstream_id,
            Body::ReplaceSm(b) => b.message_id = upstream_id,
            _ => {}
        }
        let frame = match pdu.to_bytes() {
            Ok(frame) => frame,
            Err(e) => {
                warn!(error = %e, "request with the upstream's id cannot be encoded");
                return self.reply(&pdu, CommandStatus::ESME_RSYSERR);
            }
        };
        let mapped = Mapped {
            upstream: correlation.upstream.clone(),
            client_id,
        };
        self.mapped.insert(pdu.sequence_number, mapped);
        self.outstanding += 1;
        let received = self.clock.instant();
        let fwd = Forward {
            frame,
            info: None,
            reply,
            attempt: 0,
            received,
        };
        self.send_or_queue(fwd, Some(&pdu))
    }

    /// Hands a request to the router: the SMSC that took the message for query/cancel/replace,
    /// the account's group otherwise. `request` is its frame parsed, when the caller has it
    /// (routes read its fields); a request routed again (queued, throttled, bounced) is
    /// parsed again here, which is cheaper than carrying the parse through every channel.
    fn route(&self, fwd: Forward, request: Option<&Pdu>) -> Result<(), (Forward, CommandStatus)> {
        let (mapped, bound) = (self.mapped.get(&fwd.client_seq()), self.phase.bound());
        let (None, Some(b)) = (mapped, bound) else {
            return match mapped {
                Some(m) => self.ctx.live().router.dispatch_to_upstream(&m.upstream, fwd),
                None => Err((fwd, CommandStatus::ESME_RINVBNDSTS)),
            };
        };
        let parsed;
        let request = match request {
            Some(request) => request,
            None => match Pdu::parse(fwd.frame.clone()) {
                Ok(pdu) => {
                    parsed = pdu;
                    &parsed
                }
                // Never: it was parsed when it came in.
                Err(_) => return Err((fwd, CommandStatus::ESME_RSYSERR)),
            },
        };
        self.ctx.live().router.dispatch(&b.account.system_id, request, fwd)
    }

    /// Routes a request (already counted in `outstanding`), or queues it while every upstream
    /// session is full or throttled, or the upstreams' first binds are under way: the client's
    /// window bounds the queue, so the client is told ESME_RTHROTTLED only for its own limits
    /// or an upstream stuck for `queue_timeout`.
    /// A request's wait is timed from a clock read when it is queued, not the session's tick
    /// clock (`now`, up to a tick old), which would end `queue_timeout` up to a tick early.
    fn send_or_queue(&mut self, fwd: Forward, request: Option<&Pdu>) -> Flow {
        if !self.queue.is_empty() {
            self.queue.push_back((fwd, Instant::now()));
            return Ok(());
        }
        match self.route(fwd, request) {
            Ok(()) => Ok(()),
            Err((fwd, CommandStatus::ESME_RTHROTTLED)) => {
                self.queue.push_back((fwd, Instant::now()));
                Ok(())
            }
            Err((fwd, status)) => self.give_up(&fwd, status),
        }
    }

    /// Routes what waits in the queue, oldest first, as far as upstream window allows.
    pub(super) fn drain_queue(&mut self) -> Flow {
        let timeout = self.ctx.live().config.client_sessions.queue_timeout;
        while let Some((fwd, since)) = self.queue.pop_front() {
            if since.elapsed() >= timeout {
                self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED)?;
                continue;
            }
            match self.route(fwd, None) {
                Ok(()) => {}
                Err((fwd, CommandStatus::ESME_RTHROTTLED)) => {
                    self.queue.push_front((fwd, since));
                    break;
                }
                Err((fwd, status)) => self.give_up(&fwd, status)?,
            }
        }
        Ok(())
    }

    /// Answers a request that will not be sent with `status`.
    pub(super) fn give_up(&mut self, fwd: &Forward, status: CommandStatus) -> Flow {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.mapped.remove(&fwd.client_seq());
        self.count_submit(fwd.command_id(), status, Some(fwd.received.elapsed()));
        self.put(&fwd.error_response(status))
    }

    /// Counts a submit's answer in its account's figures (other commands are not counted).
    /// `took`: from the submit read to its answer (none: answered without a wait worth timing).
    pub(super) fn count_submit(&self, command: CommandId, status: CommandStatus, took: Option<Duration>) {
        if let (true, Some(bound)) = (is_submit(command), self.phase.bound()) {
            bound.account.metrics.answered(status, took);
        }
    }

    /// How a forwarded request ended, as the upstream session reports it.
    pub(super) fn outcome(&mut self, outcome: Outcome) -> Flow {
        match outcome {
            Outcome::Answered {
                upstream,
                id_match,
                request,
                client_seq,
                resp,
                received,
            } => {
                self.outstanding = self.outstanding.saturating_sub(1);
                let Next::Frame(header) = next_frame(&resp, resp.len()) else {
                    // Never: the upstream session hands over whole frames it parsed.
                    self.mapped.remove(&client_seq);
                    return self.put(
                        &Pdu::new(Body::GenericNack)
                            .with_status(CommandStatus::ESME_RSYSERR)
                            .with_sequence_number(client_seq),
                    );
                };
                if request.is_some() && !header.status.is_ok() {
                    let latency = self.clock.instant().saturating_duration_since(received);
                    self.count_submit(CommandId::SUBMIT_SM, header.status, Some(latency));
                    if let (true, Some(bound)) = (self.ctx.trail.on(), self.phase.bound()) {
                        self.ctx.trail.record(TrailEvent::Submit {
                            client: bound.account.system_id.clone(),
                            upstream: upstream.clone(),
                            correlation: None,
                            status: header.status,
                            latency,
                        });
                    }
                }
                self.map_answer(upstream, id_match, request, header, client_seq, resp, received);
                Ok(())
            }
            Outcome::Failed {
                client_seq,
                command,
                status,
            } => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.count_submit(command, status, None);
                self.mapped.remove(&client_seq);
                self.put(&Pdu::error_response_to(command, client_seq, status))
            }
            Outcome::Retry(mut fwd) => {
                fwd.attempt += 1;
                if fwd.attempt > MAX_ATTEMPTS {
                    return self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED);
                }
                self.send_or_queue(fwd, None)
            }
        }
    }

    /// An answer that comes as the session leaves. The client may never read it, but the
    /// upstream took the message: its correlation is stored all the same, so that its
    /// receipt finds the client when it binds again. One sent back to be retried is given up
    /// (the client is told, if it still reads).
    pub(super) fn late_answer(&mut self, outcome: Outcome) {
        // Written, if the session still flushes; refused only by an encoder error, which
        // leaves nothing more to do here.
        let _ = match outcome {
            Outcome::Retry(fwd) => self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED),
            outcome => self.outcome(outcome),
        };
        self.committing.record(&*self.ctx.store);
        // A store that answered at once: written with the rest (nothing here waits on a commit).
        let _ = self.on_committed(None);
    }

    /// Writes the upstream's answer as the client must see it: its own sequence number, and
    /// its own message id in place of the upstream's; for a submit, only once its correlation
    /// is stored (`self.committing`, written by [`Client::on_committed`]).
    #[allow(clippy::too_many_arguments)]
    fn map_answer(
        &mut self,
        upstream: Arc<str>,
        id_match: IdMatch,
        request: Option<RequestInfo>,
        header: Header,
        client_seq: u32,
        resp: Bytes,
        received: Instant,
    ) {
        let buf = self.conn.write_buffer_mut();
        if let Some(m) = self.mapped.remove(&client_seq) {
            // A query_sm_resp names the message: by the client's id.
            let renamed = header.id == CommandId::QUERY_SM_RESP
                && put_with_message_id(buf, &resp, client_seq, m.client_id.as_bytes());
            if !renamed {
                put_frame(buf, &resp, client_seq);
            }
            return;
        }
        let submit_ok = request.is_some() && header.status.is_ok();
        let body = &resp[HEADER_LEN.min(resp.len())..];
        // Only the submits' own responses open with the message id (one of another type, as
        // an SMSC may send in error, goes to the client as it came).
        let id_first = matches!(
            header.id,
            CommandId::SUBMIT_SM_RESP | CommandId::DATA_SM_RESP | CommandId::SUBMIT_MULTI_RESP
        );
        let upstream_id = match (&request, header.status.is_ok(), id_first && !body.is_empty()) {
            (Some(_), true, true) => response_id(body),
            _ => None,
        };
        let (Some(upstream_id), Some(bound), Some(request)) = (upstream_id, self.phase.bound(), request) else {
            put_frame(buf, &resp, client_seq);
            if submit_ok {
                // Answered OK without an id to correlate (no receipt can be matched): counted
                // and put in the trail here, as it will not be at a commit.
                let latency = self.clock.instant().saturating_duration_since(received);
                self.count_submit(CommandId::SUBMIT_SM, header.status, Some(latency));
                if let (true, Some(bound)) = (self.ctx.trail.on(), self.phase.bound()) {
                    self.ctx.trail.record(TrailEvent::Submit {
                        client: bound.account.system_id.clone(),
                        upstream,
                        correlation: None,
                        status: header.status,
                        latency,
                    });
                }
            }
            return;
        };
        let upstream_id = CompactString::from_utf8_lossy(upstream_id);
        let account = &bound.account;
        let unix_ms = self.clock.unix_ms();
        let client_id = self
            .ctx
            .ids
            .next(account.peek().message_id_format, &upstream_id, unix_ms);
        let RequestInfo {
            registered_delivery,
            source_addr,
            destination_addr,
            part,
        } = request;
        let correlation = Arc::new(Correlation {
            upstream,
            upstream_id,
            client: account.system_id.clone(),
            client_id,
            submitted_at: unix_ms / 1000,
            registered_delivery,
            source_addr: CompactString::from_utf8_lossy(source_addr.as_bytes()),
            destination_addr: CompactString::from_utf8_lossy(destination_addr.as_bytes()),
            part,
        });
        // The client sees the id only once the correlation is durable (`on_committed`); a
        // receipt matched before that waits for the answer (`answers_due`, filed before the
        // correlation can be found). Recorded with the turn's others when the turn ends.
        let due = self.ctx.answers_due.expect(&correlation, id_match);
        let answer = Committing {
            resp,
            client_seq,
            command: header.id,
            correlation,
            due,
            received,
            mapped: self.clock.instant(),
        };
        self.committing.push(answer, id_match);
    }

    /// Writes the answers whose correlations are now durable, oldest first; `awaited` is the
    /// outcome of the oldest ticket when it was waited for. The store commits in groups, so the
    /// tickets behind it are usually done too.
    pub(super) fn on_committed(&mut self, mut awaited: Option<Result<u64, StoreError>>) -> Flow {
        while let Some((outcome, n)) = self.committing.done(awaited.take()) {
            if let Err(e) = &outcome {
                warn!(error = %e, answers = n, "correlations not recorded: client told ESME_RSYSERR");
            }
            for _ in 0..n {
                let Some(answer) = self.committing.pop() else { break };
                self.answer_committed(answer, outcome.is_ok());
            }
        }
        Ok(())
    }

    /// Writes one answer whose commit is done: `recorded`, or ESME_RSYSERR.
    fn answer_committed(&mut self, answer: Committing, recorded: bool) {
        let Committing {
            resp,
            client_seq,
            command,
            correlation,
            due,
            received,
            mapped,
        } = answer;
        let now = self.clock.instant();
        let latency = now.saturating_duration_since(received);
        self.ctx
            .stats
            .commit_latency
            .observe_duration(now.saturating_duration_since(mapped));
        let status = if recorded {
            CommandStatus::ESME_ROK
        } else {
            CommandStatus::ESME_RSYSERR
        };
        // Only submits wait for a commit.
        self.count_submit(CommandId::SUBMIT_SM, status, Some(latency));
        if self.ctx.trail.on() {
            self.ctx.trail.record(TrailEvent::Submit {
                client: correlation.client.clone(),
                upstream: correlation.upstream.clone(),
                correlation: Some(correlation.clone()),
                status,
                latency,
            });
        }
        let buf = self.conn.write_buffer_mut();
        if recorded {
            // Its id was read from this frame (`map_answer`): it has one to replace.
            if !put_with_message_id(buf, &resp, client_seq, correlation.client_id.as_bytes()) {
                put_frame(buf, &resp, client_seq);
            }
        } else {
            // An error response has no body (SMPP 3.4 §4.4.2).
            put_header(buf, HEADER_LEN, command, CommandStatus::ESME_RSYSERR, client_seq);
        }
        // Its receipt, if one came already, waits until the answer is flushed
        // (`announce_answers`): to this bind or to any other, the client has the id first.
        self.answered.push((correlation, due, recorded));
    }

    /// Tells the context the answers put in the write buffer are out (flushed, or the session
    /// ends): receipts that came before them go on ([`Context::answer_written`]).
    ///
    /// [`Context::answer_written`]: crate::context::Context::answer_written
    pub(super) fn announce_answers(&mut self) {
        for (correlation, due, recorded) in self.answered.drain(..) {
            self.ctx.answer_written(&correlation, due, recorded);
        }
    }
}
