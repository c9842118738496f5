//! Framing for tokio-util: cut the stream by `command_length`, then parse the frame.
//!
//! A partial PDU is "need more bytes" (`Ok(None)`), never an error. A `command_length` below 16
//! or above `max_len` is a [`FrameError`]: the stream cannot be resynchronised, the session
//! answers `generic_nack ESME_RINVCMDLEN` and closes. A whole frame whose body is malformed is
//! an `Ok(Some(Err(PduError)))` item: the session answers it and reads on.
//!
//! Nothing is allocated beyond the declared frame: the buffer grows to at most `max_len`.

use super::{FrameError, Pdu, PduError, HEADER_LEN};
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default largest PDU accepted: 64 KiB, which holds any 3.4 PDU and a large message_payload.
pub const DEFAULT_MAX_LEN: usize = 64 * 1024;

/// SMPP framing and parsing for `tokio_util::codec::Framed`.
#[derive(Clone, Copy, Debug)]
pub struct SmppCodec {
    max_len: usize,
}

impl Default for SmppCodec {
    fn default() -> Self {
        SmppCodec {
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

impl SmppCodec {
    /// A codec accepting PDUs up to `max_len` octets (at least the 16-octet header).
    pub fn with_max_len(max_len: usize) -> SmppCodec {
        SmppCodec {
            max_len: max_len.max(HEADER_LEN),
        }
    }

    /// The largest PDU accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Decoder for SmppCodec {
    type Item = Result<Pdu, PduError>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        Ok(FrameCodec::from(*self).decode(src)?.map(Pdu::parse))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        Ok(FrameCodec::from(*self).decode_eof(buf)?.map(Pdu::parse))
    }
}

/// A frame and the PDU parsed from it (whose fields share the frame's octets), or why it
/// could not be parsed.
pub type Parsed = Result<(bytes::Bytes, Pdu), PduError>;

/// A [`FrameCodec`] stream's next item, parsed: for the reads off the hot path (binding,
/// draining, unbinding). The sessions' loops parse where they handle a frame instead: a
/// parsed PDU is a few hundred octets, copied at every step of a stream's item on its way out.
pub fn parsed(item: Option<Result<bytes::Bytes, FrameError>>) -> Option<Result<Parsed, FrameError>> {
    item.map(|item| item.map(|frame| Pdu::parse(frame.clone()).map(|pdu| (frame, pdu))))
}

/// The framing of [`SmppCodec`] without the parsing: whole frames as they came, for the
/// sessions, which parse each where they handle it ([`Pdu::parse`], or only a field or two
/// with [`super::peek`]) and pass a submit or a response on as the octets it came in.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec(SmppCodec);

impl From<SmppCodec> for FrameCodec {
    fn from(codec: SmppCodec) -> FrameCodec {
        FrameCodec(codec)
    }
}

impl Decoder for FrameCodec {
    type Item = bytes::Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<bytes::Bytes>, FrameError> {
        let max_len = self.0.max_len;
        // Wait for the whole header so a bad length can be answered with its sequence number.
        let Some(header) = src.get(..HEADER_LEN) else {
            src.reserve(HEADER_LEN - src.len());
            return Ok(None);
        };
        let command_length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = command_length as usize;
        if len < HEADER_LEN || len > max_len {
            let sequence_number = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
            return Err(FrameError::InvalidLength {
                command_length,
                max: max_len,
                sequence_number,
            });
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<bytes::Bytes>, FrameError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None if buf.is_empty() => Ok(None),
            None => {
                let left = buf.remaining();
                buf.clear();
                Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed inside a PDU ({left} octets of it received)"),
                )))
            }
        }
    }
}

impl Encoder<&Pdu> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), FrameError> {
        Ok(pdu.encode(dst)?)
    }
}

impl Encoder<&Pdu> for SmppCodec {
    type Error = FrameError;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), FrameError> {
        Ok(pdu.encode(dst)?)
    }
}

/// Appends a whole frame to `dst` as it is but for its sequence number, `seq`: how the
/// proxy passes on what it does not change (a client's request, a receipt already rewritten).
/// `false`, and nothing appended, for fewer octets than a header.
pub fn put_frame(dst: &mut BytesMut, frame: &[u8], seq: u32) -> bool {
    if frame.len() < HEADER_LEN {
        return false;
    }
    let start = dst.len();
    dst.extend_from_slice(frame);
    dst[start + 12..start + HEADER_LEN].copy_from_slice(&seq.to_be_bytes());
    true
}

/// Appends a response frame whose body opens with a `message_id` (submit_sm_resp,
/// data_sm_resp, submit_multi_resp, query_sm_resp) with `id` in its place and `seq` as its
/// sequence number; the header's other fields and everything after the id (the rest of the
/// body, TLVs) as they are. `false`, and nothing appended, when the frame has no such id.
pub fn put_with_message_id(dst: &mut BytesMut, frame: &[u8], seq: u32, id: &[u8]) -> bool {
    let Some(body) = frame.get(HEADER_LEN..) else {
        return false;
    };
    let Some(old_len) = body.iter().position(|&b| b == 0) else {
        return false;
    };
    let rest = &body[old_len + 1..];
    let Ok(len) = u32::try_from(HEADER_LEN + id.len() + 1 + rest.len()) else {
        return false;
    };
    dst.reserve(len as usize);
    let (command, status) = (super::peek::be32(frame, 4), super::peek::be32(frame, 8));
    super::peek::put_header(
        dst,
        len as usize,
        super::CommandId(command),
        super::CommandStatus(status),
        seq,
    );
    dst.extend_from_slice(id);
    dst.extend_from_slice(&[0]);
    dst.extend_from_slice(rest);
    true
}

/// Flushes what was `feed`-ed or encoded into the write buffer (a named helper: `flush` alone
/// cannot infer the item type).
pub async fn flush<T, C>(conn: &mut tokio_util::codec::Framed<T, C>) -> Result<(), FrameError>
where
    T: tokio::io::AsyncWrite + Unpin,
    C: for<'a> Encoder<&'a Pdu, Error = FrameError>,
{
    futures_util::SinkExt::<&Pdu>::flush(conn).await
}

/// Most frames a session handles in one turn of its loop.
const FRAMES_PER_TURN: usize = 32;

/// The frames one read brought, for one turn of a session's loop: the first as the loop's
/// `select!` read it, then [`Burst::next`] until the read buffer holds no whole frame or the
/// turn has taken [`FRAMES_PER_TURN`]. One `select!` over all the session's sources per read,
/// not per frame, and one flush.
#[derive(Debug)]
pub struct Burst {
    taken: usize,
}

impl Burst {
    /// A turn that has taken its first frame.
    pub fn started() -> Burst {
        Burst { taken: 1 }
    }

    /// The next frame of the turn, if the read buffer already holds it whole (see [`buffered`]).
    pub fn next<T>(
        &mut self,
        conn: &mut tokio_util::codec::Framed<T, FrameCodec>,
    ) -> Option<Result<bytes::Bytes, FrameError>>
    where
        T: tokio::io::AsyncRead + Unpin,
    {
        if self.taken == FRAMES_PER_TURN {
            return None;
        }
        let next = buffered(conn)?;
        self.taken += 1;
        Some(next)
    }
}

/// The next frame when the read buffer already holds the whole of it (or a header whose
/// length [`FrameCodec`] refuses: then that error); `None` otherwise, without reading the
/// socket. Not to be called after the stream gave an error: the sessions end there.
///
/// Polled with a no-op waker: it returns `Ready` from the buffer, and if it ever did return
/// `Pending` the session's next `select!` polls the stream again with its own waker.
fn buffered<T>(conn: &mut tokio_util::codec::Framed<T, FrameCodec>) -> Option<Result<bytes::Bytes, FrameError>>
where
    T: tokio::io::AsyncRead + Unpin,
{
    let buf = conn.read_buffer();
    // A length below the header's is answered once the header is in, as `decode` does.
    let whole = buf
        .get(..4)
        .is_some_and(|l| buf.len() >= (u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize).max(HEADER_LEN));
    if !whole {
        return None;
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match futures_util::Stream::poll_next(std::pin::Pin::new(conn), &mut cx) {
        std::task::Poll::Ready(item) => item,
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, CommandStatus};

    fn enquire_link(seq: u32) -> Vec<u8> {
        Pdu::new(Body::EnquireLink)
            .with_sequence_number(seq)
            .to_bytes()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn partial_header_and_body_wait_for_more() {
        let mut codec = SmppCodec::default();
        let bytes = enquire_link(7);
        for cut in [0, 3, 4, 15] {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn bad_length_is_fatal_and_answered_with_its_sequence() {
        let mut codec = SmppCodec::with_max_len(1024);
        for len in [0u32, 15, 1025, 0xF000_0011] {
            let mut bytes = enquire_link(42);
            bytes[..4].copy_from_slice(&len.to_be_bytes());
            let err = codec.decode(&mut BytesMut::from(&bytes[..])).unwrap_err();
            let reply = err.reply().expect("generic_nack");
            assert_eq!(reply.body, Body::GenericNack);
            assert_eq!(reply.command_status, CommandStatus::ESME_RINVCMDLEN);
            assert_eq!(reply.sequence_number, 42);
        }
    }

    #[test]
    fn unknown_command_is_one_item_and_the_stream_goes_on() {
        let mut codec = SmppCodec::default();
        // command_length 17, unknown id 0x110, one body octet, then an enquire_link.
        let mut bytes = crate::hex::decode("0000001100000110000000000a342ee70f").unwrap();
        bytes.extend(enquire_link(8));
        let mut buf = BytesMut::from(&bytes[..]);
        let first = codec.decode(&mut buf).unwrap().unwrap().unwrap_err();
        assert_eq!(first.status(), CommandStatus::ESME_RINVCMDID);
        let reply = first.reply().unwrap();
        assert_eq!((reply.body, reply.sequence_number), (Body::GenericNack, 0x0a34_2ee7));
        let second = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(second.sequence_number, 8);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_is_put_as_it_is_but_for_its_sequence_number() {
        let frame = Pdu::new(Body::SubmitSm(crate::pdu::SubmitSm::text(
            "4477",
            "447700900123",
            b"hi",
        )))
        .with_sequence_number(0x8000_0001)
        .to_bytes()
        .unwrap();
        let mut dst = BytesMut::from(&b"before"[..]);
        assert!(put_frame(&mut dst, &frame, 7));
        let put = Pdu::parse(dst.split_off(6).freeze()).unwrap();
        assert_eq!(&dst[..], b"before");
        assert_eq!(put.sequence_number, 7);
        assert_eq!(put.with_sequence_number(0x8000_0001).to_bytes().unwrap(), frame);
        assert!(!put_frame(&mut dst, &frame[..15], 8), "not a frame");
        assert_eq!(&dst[..], b"before");
    }

    #[test]
    fn a_response_is_put_with_another_message_id_and_the_rest_as_it_was() {
        use crate::pdu::body::MessageIdResp;
        let mut resp = Pdu::new(Body::SubmitSmResp(Some(MessageIdResp {
            message_id: crate::pdu::COctetString::new(b"up-1".to_vec()).unwrap(),
        })))
        .with_status(CommandStatus::ESME_RINVDSTADR)
        .with_sequence_number(9);
        resp.tlvs.set(0x1403, b"vendor");
        let frame = resp.to_bytes().unwrap();
        // A longer id than the SMSC's, then a shorter one.
        for id in [&b"00000000000000ab"[..], b"c"] {
            let mut dst = BytesMut::from(&b"before"[..]);
            assert!(put_with_message_id(&mut dst, &frame, 4, id));
            let put = dst.split_off(6);
            assert_eq!(&dst[..], b"before");
            assert_eq!(u32::from_be_bytes([put[0], put[1], put[2], put[3]]) as usize, put.len());
            assert_eq!(put[4..12], frame[4..12], "command id and status as they were");
            assert_eq!(put[12..16], 4u32.to_be_bytes());
            assert_eq!(&put[16..16 + id.len() + 1], [id, &b"\0"[..]].concat());
            assert_eq!(
                put[16 + id.len() + 1..],
                frame[16 + 5..],
                "what follows the id as it was"
            );
            let parsed = Pdu::parse(put.freeze()).unwrap();
            assert_eq!(parsed.message_id().unwrap().as_bytes(), id);
            assert_eq!(parsed.tlvs.get(0x1403), Some(&b"vendor"[..]));
        }
        // An empty body has no id to replace.
        let empty = Pdu::new(Body::SubmitSmResp(None)).to_bytes().unwrap();
        let mut dst = BytesMut::new();
        assert!(!put_with_message_id(&mut dst, &empty, 4, b"00ab"));
        assert!(dst.is_empty());
    }

    #[test]
    fn eof_inside_a_pdu_is_an_error() {
        let mut codec = SmppCodec::default();
        let bytes = enquire_link(1);
        let mut buf = BytesMut::from(&bytes[..10]);
        assert!(matches!(codec.decode_eof(&mut buf), Err(FrameError::Io(_))));
    }

    #[tokio::test]
    async fn buffered_takes_whole_frames_only_and_never_reads() {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut conn = tokio_util::codec::Framed::new(ours, FrameCodec::default());
        let mut bytes = [enquire_link(1), enquire_link(2)].concat();
        let third = enquire_link(3);
        bytes.extend_from_slice(&third[..10]);
        peer.write_all(&bytes).await.unwrap();
        let seq = |frame: bytes::Bytes| Pdu::parse(frame).unwrap().sequence_number;
        assert_eq!(seq(conn.next().await.unwrap().unwrap()), 1);
        assert_eq!(seq(buffered(&mut conn).unwrap().unwrap()), 2);
        assert!(buffered(&mut conn).is_none(), "a part of a frame stays in the buffer");
        // A frame still on the socket is the select's to read, not buffered's.
        peer.write_all(&third[10..]).await.unwrap();
        peer.write_all(&enquire_link(4)).await.unwrap();
        assert!(buffered(&mut conn).is_none());
        assert_eq!(seq(conn.next().await.unwrap().unwrap()), 3);
        assert_eq!(seq(buffered(&mut conn).unwrap().unwrap()), 4);
    }

    #[tokio::test]
    async fn a_burst_ends_at_its_turns_share_and_the_next_turn_goes_on() {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut conn = tokio_util::codec::Framed::new(ours, FrameCodec::default());
        let all: Vec<u8> = (1..=40).flat_map(enquire_link).collect();
        peer.write_all(&all).await.unwrap();
        let seq = |frame: bytes::Bytes| Pdu::parse(frame).unwrap().sequence_number;
        let mut turn = vec![seq(conn.next().await.unwrap().unwrap())];
        let mut burst = Burst::started();
        while let Some(frame) = burst.next(&mut conn) {
            turn.push(seq(frame.unwrap()));
        }
        assert_eq!(turn, (1..=FRAMES_PER_TURN as u32).collect::<Vec<_>>());
        let mut burst = Burst::started();
        let mut rest = vec![seq(conn.next().await.unwrap().unwrap())];
        while let Some(frame) = burst.next(&mut conn) {
            rest.push(seq(frame.unwrap()));
        }
        assert_eq!(rest, (FRAMES_PER_TURN as u32 + 1..=40).collect::<Vec<_>>());
    }
}
