//! A small SMPP client (ESME) over the codec: what the load generator, the demo and the tests
//! use to talk to the proxy or the simulator.

use crate::pdu::body::Bind;
use crate::pdu::{Body, COctetString, CommandId, CommandStatus, FrameError, Pdu, SmppCodec, SubmitSm};
use crate::session::Sequence;
use crate::tls::client::Connector;
use crate::tls::Stream;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EsmeError {
    /// The connection failed or closed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The peer refused the bind.
    #[error("bind refused: {0}")]
    BindRefused(CommandStatus),
    /// Nothing arrived in time, or the connection closed.
    #[error("no response: {0}")]
    NoResponse(&'static str),
}

/// One client connection.
#[derive(Debug)]
pub struct Esme {
    conn: Framed<Stream<TcpStream>, SmppCodec>,
    seq: Sequence,
}

/// A submit_sm from `source` to `destination` with `text`, asking for a receipt if `receipt`.
pub fn submit_sm(source: &str, destination: &str, text: &[u8], receipt: bool) -> Pdu {
    Pdu::new(Body::SubmitSm(SubmitSm {
        registered_delivery: u8::from(receipt),
        ..SubmitSm::text(source, destination, text)
    }))
}

impl Esme {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<Esme, EsmeError> {
        let stream = TcpStream::connect(addr).await.map_err(EsmeError::Connect)?;
        Ok(Esme::over(stream))
    }

    /// Connects over TLS.
    pub async fn connect_tls(addr: SocketAddr, tls: &Connector) -> Result<Esme, EsmeError> {
        let stream = TcpStream::connect(addr).await.map_err(EsmeError::Connect)?;
        let _ = stream.set_nodelay(true);
        let stream = tls.connect(stream).await.map_err(EsmeError::Connect)?;
        Ok(Esme::over_stream(stream))
    }

    /// The connection, for raw bytes (what was read and not yet parsed is dropped).
    pub fn into_stream(self) -> Stream<TcpStream> {
        self.conn.into_inner()
    }

    /// The connection and what was read from it and not yet parsed, for a caller that reads
    /// the bytes itself from here on.
    pub fn into_parts(self) -> (Stream<TcpStream>, bytes::BytesMut) {
        let parts = self.conn.into_parts();
        (parts.io, parts.read_buf)
    }

    /// The connection (whether it is TLS, and the peer's certificate if so).
    pub fn stream(&self) -> &Stream<TcpStream> {
        self.conn.get_ref()
    }

    /// Speaks SMPP over a connection made elsewhere (from a chosen address, with chosen buffers).
    pub fn over(stream: TcpStream) -> Esme {
        let _ = stream.set_nodelay(true);
        Esme::over_stream(Stream::Plain(stream))
    }

    /// Speaks SMPP over a connection, plain or TLS, made elsewhere.
    pub fn over_stream(stream: Stream<TcpStream>) -> Esme {
        Esme {
            conn: Framed::new(stream, SmppCodec::default()),
            seq: Sequence::default(),
        }
    }

    /// Connects and binds with `kind` (bind_transmitter / _receiver / _transceiver).
    pub async fn bind(addr: SocketAddr, kind: CommandId, system_id: &str, password: &str) -> Result<Esme, EsmeError> {
        let mut esme = Esme::connect(addr).await?;
        let resp = esme.bind_on(kind, system_id, password).await?;
        if !resp.command_status.is_ok() {
            return Err(EsmeError::BindRefused(resp.command_status));
        }
        Ok(esme)
    }

    /// Sends a bind on this connection and returns the response, whatever its status.
    pub async fn bind_on(&mut self, kind: CommandId, system_id: &str, password: &str) -> Result<Pdu, EsmeError> {
        let bind = Bind {
            system_id: COctetString::from_text(system_id),
            password: COctetString::from_text(password),
            interface_version: 0x34,
            ..Bind::default()
        };
        let body = match kind {
            CommandId::BIND_RECEIVER => Body::BindReceiver(bind),
            CommandId::BIND_TRANSMITTER => Body::BindTransmitter(bind),
            _ => Body::BindTransceiver(bind),
        };
        let seq = self.send(Pdu::new(body)).await?;
        loop {
            let pdu = self.recv(Duration::from_secs(10)).await?;
            if pdu.sequence_number == seq && pdu.command_id().is_response() {
                return Ok(pdu);
            }
        }
    }

    /// Sends a request with the next sequence number; returns that number.
    pub async fn send(&mut self, mut pdu: Pdu) -> Result<u32, EsmeError> {
        pdu.sequence_number = self.seq.next_number();
        self.conn.send(&pdu).await?;
        Ok(pdu.sequence_number)
    }

    /// Queues a request without flushing (call [`Esme::flush`]); returns its sequence number.
    pub async fn feed(&mut self, mut pdu: Pdu) -> Result<u32, EsmeError> {
        pdu.sequence_number = self.seq.next_number();
        self.conn.feed(&pdu).await?;
        Ok(pdu.sequence_number)
    }

    /// Sends a PDU as it is (a response, or a request with its own sequence number).
    pub async fn send_raw(&mut self, pdu: &Pdu) -> Result<(), EsmeError> {
        Ok(self.conn.send(pdu).await?)
    }

    /// Queues a PDU as it is, without flushing.
    pub async fn feed_raw(&mut self, pdu: &Pdu) -> Result<(), EsmeError> {
        Ok(self.conn.feed(pdu).await?)
    }

    /// Flushes what was queued.
    pub async fn flush(&mut self) -> Result<(), EsmeError> {
        Ok(crate::pdu::codec::flush(&mut self.conn).await?)
    }

    /// Writes raw octets (for tests of malformed input).
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), EsmeError> {
        use tokio::io::AsyncWriteExt;
        self.conn
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|e| EsmeError::Frame(FrameError::Io(e)))
    }

    /// The next PDU, within `timeout`. Malformed PDUs from the peer are errors here.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Pdu, EsmeError> {
        match tokio::time::timeout(timeout, self.conn.next()).await {
            Err(_) => Err(EsmeError::NoResponse("timeout")),
            Ok(None) => Err(EsmeError::NoResponse("closed")),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(Err(e)))) => Err(EsmeError::Frame(FrameError::Io(std::io::Error::other(e.to_string())))),
            Ok(Some(Ok(Ok(pdu)))) => Ok(pdu),
        }
    }

    /// Answers a deliver_sm / data_sm / enquire_link / unbind from the peer with ESME_ROK.
    pub async fn ack(&mut self, request: &Pdu) -> Result<(), EsmeError> {
        let body = match request.command_id() {
            CommandId::DELIVER_SM => Body::DeliverSmResp(Some(Default::default())),
            CommandId::DATA_SM => Body::DataSmResp(Some(Default::default())),
            CommandId::ENQUIRE_LINK => Body::EnquireLinkResp,
            CommandId::UNBIND => Body::UnbindResp,
            _ => return Ok(()),
        };
        self.send_raw(&Pdu::new(body).with_sequence_number(request.sequence_number))
            .await
    }

    /// Unbinds and waits for unbind_resp (what else arrives meanwhile is read, not answered).
    pub async fn unbind(mut self) -> Result<(), EsmeError> {
        let seq = self.send(Pdu::new(Body::Unbind)).await?;
        loop {
            let pdu = self.recv(Duration::from_secs(5)).await?;
            if pdu.command_id() == CommandId::UNBIND_RESP && pdu.sequence_number == seq {
                return Ok(());
            }
        }
    }
}
