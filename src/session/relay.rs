//! The WebSocket frame relay: the method policy and the frame limits on WebSocket sessions of
//! execution pools, `cut` and seamless alike, and the frame utilities both kinds write with.
//!
//! Client frames are judged from their header as they stream (RFC 6455, read with tungstenite's
//! frame codec): a frame whose declared length would take its message over the limit ends the
//! session at once with close code 1009, before any of its payload is held, so a session never
//! holds more than one message's worth whatever the client sends. Frames the protocol forbids
//! (unmasked, RSV bits set, a reserved opcode, a fragmented or over-long control frame, a
//! continuation out of place) end it with 1002. No extension is ever negotiated on these sessions
//! (the gateway takes `Sec-WebSocket-Extensions` out of the client's upgrade request), so every
//! RSV bit is a violation: a compressed message, which the gateway could not judge, never passes.
//!
//! Each complete message, text or binary, is judged with the same full parse as an HTTP body
//! ([`policy::parse`]); a denied request (or batch element) is replaced by a call to a method no
//! node has, [`DENIED_PLACEHOLDER`], with the same id, so the backend answers a JSON-RPC error in
//! its place and the order of answers is kept, while the denied method never reaches the backend.
//!
//! The backend's frames are not judged, only followed ([`ServerFrames`]), so that the gateway's
//! own close frame goes to the client between two of them and never inside one.

use crate::jsonrpc::policy::{self, MethodPolicy, Request, Verdict};
use crate::limits::held::FREE_BYTES;
use serde_json::Value;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The method a denied request is replaced with; no node implements it.
pub const DENIED_PLACEHOLDER: &str = "ssv_ha_denied";

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Why the gateway ends a client's session: the close code it sends and a reason for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    pub code: CloseCode,
    pub reason: String,
}

impl Closing {
    /// The listener holds as much of its clients' messages as it may (1013, try again later).
    pub fn busy(max_held: usize) -> Closing {
        Closing {
            code: CloseCode::Again,
            reason: format!(
                "the listener holds its limit of {max_held} bytes of messages; try again later"
            ),
        }
    }

    fn protocol(reason: impl Into<String>) -> Closing {
        Closing {
            code: CloseCode::Protocol,
            reason: reason.into(),
        }
    }

    /// The close frame for the client (unmasked, as a server sends it); the reason is cut to
    /// what a control frame holds.
    pub fn frame(&self) -> Vec<u8> {
        let mut reason = self.reason.as_str();
        while reason.len() > MAX_CONTROL_PAYLOAD as usize - 2 {
            let mut end = reason.len() - 1;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut payload = u16::from(self.code).to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        frame(OpCode::Control(Control::Close), None, &payload)
    }
}

/// A message being reassembled from its fragments.
#[derive(Debug)]
struct Message {
    opcode: Data,
    mask: [u8; 4],
    data: Vec<u8>,
}

/// Reassembles the client's frames and forwards them, judged.
#[derive(Debug, Default)]
pub struct ClientFrames {
    /// Bytes of the frame being received: its header and as much payload as arrived.
    pending: Vec<u8>,
    message: Option<Message>,
}

impl ClientFrames {
    /// Takes the next bytes from the client and returns what may go to the backend now, or why
    /// the session ends.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        policy: &MethodPolicy,
        max_message: usize,
    ) -> Result<Vec<u8>, Closing> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let mut cursor = Cursor::new(&self.pending[at..]);
            let Some((header, length)) = FrameHeader::parse(&mut cursor)
                .map_err(|e| Closing::protocol(format!("a malformed frame header: {e}")))?
            else {
                break;
            };
            let header_len = cursor.position() as usize;
            let mask = self.admit(&header, length, max_message)?;
            // `admit` held the length to the message limit.
            let end = at + header_len + length as usize;
            if self.pending.len() < end {
                break;
            }
            let payload = unmask(&self.pending[at + header_len..end], mask);
            let received = &self.pending[at..end];
            at = end;
            let opcode = match header.opcode {
                OpCode::Control(_) => {
                    // Control frames (close, ping, pong) pass unchanged, even mid-message.
                    out.extend_from_slice(received);
                    continue;
                }
                OpCode::Data(Data::Continue) => match self.message.as_mut() {
                    Some(message) => {
                        message.data.extend_from_slice(&payload);
                        None
                    }
                    None => None,
                },
                OpCode::Data(opcode) => {
                    self.message = Some(Message {
                        opcode,
                        mask,
                        data: payload,
                    });
                    Some(opcode)
                }
            };
            if !header.is_final {
                continue;
            }
            let Some(message) = self.message.take() else {
                continue;
            };
            // Nodes read JSON-RPC from binary messages too (geth's reader takes either).
            let judged = judge(&message.data, policy);
            match judged {
                // Began and ended in this frame: forwarded as received.
                None if opcode.is_some() => out.extend_from_slice(received),
                None => out.extend(frame(
                    OpCode::Data(message.opcode),
                    Some(message.mask),
                    &message.data,
                )),
                Some(data) => out.extend(frame(
                    OpCode::Data(message.opcode),
                    Some(message.mask),
                    &data,
                )),
            }
        }
        self.pending.drain(..at);
        // A large frame's room is given back once it is through.
        if self.pending.capacity() > FREE_BYTES && self.pending.len() < FREE_BYTES / 2 {
            self.pending.shrink_to(FREE_BYTES / 2);
        }
        Ok(out)
    }

    /// Bytes of the client's held now: the frame being received and the message so far.
    pub fn held(&self) -> usize {
        self.pending.len() + self.message.as_ref().map_or(0, |m| m.data.len())
    }

    /// Judges a frame from its header alone; returns its mask key.
    fn admit(
        &self,
        header: &FrameHeader,
        length: u64,
        max_message: usize,
    ) -> Result<[u8; 4], Closing> {
        let Some(mask) = header.mask else {
            return Err(Closing::protocol("an unmasked frame from the client"));
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Closing::protocol(
                "a frame with RSV bits set (a compressed message?); no extension was negotiated",
            ));
        }
        match header.opcode {
            OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => Err(
                Closing::protocol(format!("a frame with reserved opcode {op}")),
            ),
            OpCode::Control(_) if !header.is_final => {
                Err(Closing::protocol("a fragmented control frame"))
            }
            OpCode::Control(_) if length > MAX_CONTROL_PAYLOAD => {
                Err(Closing::protocol("a control frame longer than 125 bytes"))
            }
            OpCode::Control(_) => Ok(mask),
            OpCode::Data(Data::Continue) if self.message.is_none() => {
                Err(Closing::protocol("a continuation frame without a message"))
            }
            OpCode::Data(Data::Continue) | OpCode::Data(_) => {
                let held = match (&header.opcode, &self.message) {
                    (OpCode::Data(Data::Continue), Some(message)) => message.data.len() as u64,
                    (_, Some(_)) => {
                        return Err(Closing::protocol("a new message before the last one ended"))
                    }
                    (_, None) => 0,
                };
                if held.saturating_add(length) > max_message as u64 {
                    return Err(Closing {
                        code: CloseCode::Size,
                        reason: format!("a message larger than {max_message} bytes"),
                    });
                }
                Ok(mask)
            }
        }
    }
}

/// Follows the backend's frames to know where one ends (`pass` every byte sent to the client).
#[derive(Debug, Default)]
pub struct ServerFrames {
    /// Header bytes of the next frame received so far.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The backend sent something that is not a frame; no boundary is known any more.
    lost: bool,
}

impl ServerFrames {
    pub fn pass(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = chunk
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            let had = self.header.len();
            let take = chunk.len().min(14 - had);
            self.header.extend_from_slice(&chunk[..take]);
            let mut cursor = Cursor::new(&self.header);
            match FrameHeader::parse(&mut cursor) {
                Ok(Some((_, length))) => {
                    let used = cursor.position() as usize - had;
                    self.header.clear();
                    self.remaining = length;
                    chunk = &chunk[used..];
                }
                Ok(None) => chunk = &chunk[take..],
                Err(_) => self.lost = true,
            }
        }
    }

    /// Whether the bytes sent so far end with a whole frame.
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.remaining == 0 && self.header.is_empty()
    }
}

/// `None` to forward the text message unchanged, or the message with its denied requests replaced.
fn judge(message: &[u8], policy: &MethodPolicy) -> Option<Vec<u8>> {
    let Ok(request) = policy::parse(message, policy) else {
        return Some(placeholder(Some(&Value::Null)).to_string().into_bytes());
    };
    let stand_in = |call: &policy::Call| -> Option<String> {
        (call.verdict != Verdict::Permitted).then(|| {
            let id = call.id.map(|_| call.id_value());
            placeholder(id.as_ref()).to_string()
        })
    };
    match request {
        Request::Single(call) => stand_in(&call).map(String::into_bytes),
        // One call in place of a batch over the limit: its elements are never expanded.
        Request::TooLarge(_) => Some(placeholder(Some(&Value::Null)).to_string().into_bytes()),
        Request::Batch(items) => {
            if items.iter().all(|(_, c)| c.verdict == Verdict::Permitted) {
                return None;
            }
            let elements: Vec<String> = items
                .iter()
                .map(|(raw, call)| stand_in(call).unwrap_or_else(|| raw.get().to_string()))
                .collect();
            Some(format!("[{}]", elements.join(",")).into_bytes())
        }
    }
}

/// A call of [`DENIED_PLACEHOLDER`] with the denied request's id; without one when the request
/// had none (a notification stays a notification, so the backend answers nothing).
fn placeholder(id: Option<&Value>) -> Value {
    let mut call =
        serde_json::json!({"jsonrpc": "2.0", "method": DENIED_PLACEHOLDER, "params": []});
    if let (Some(id), Some(object)) = (id, call.as_object_mut()) {
        object.insert("id".into(), id.clone());
    }
    call
}

fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect()
}

/// The frames in `bytes` that are whole (as [`ClientFrames::feed`] returns them: whole messages
/// and control frames), each with its opcode and its payload unmasked.
pub(crate) fn whole_frames(bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cursor = Cursor::new(bytes);
    while let Ok(Some((header, length))) = FrameHeader::parse(&mut cursor) {
        let start = cursor.position() as usize;
        let Some(payload) = usize::try_from(length)
            .ok()
            .and_then(|length| bytes.get(start..start.checked_add(length)?))
        else {
            break;
        };
        let end = start + payload.len();
        let payload = match header.mask {
            Some(mask) => unmask(payload, mask),
            None => payload.to_vec(),
        };
        out.push((header.opcode, payload));
        cursor.set_position(end as u64);
    }
    out
}

/// One final frame; masked when `mask` is given (client to server).
pub(crate) fn frame(opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    let length = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(length) + payload.len());
    // Writing into a Vec cannot fail.
    if header.format(length, &mut out).is_ok() {
        match mask {
            Some(mask) => out.extend(unmask(payload, mask)),
            None => out.extend_from_slice(payload),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> MethodPolicy {
        MethodPolicy {
            allow: vec![],
            deny: vec![],
            max_batch: 10,
        }
    }

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(OpCode::from(opcode), Some([1, 2, 3, 4]), payload);
        if !fin {
            f[0] &= 0x7f;
        }
        f
    }

    /// Every frame in `bytes`: opcode and unmasked payload.
    fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        whole_frames(bytes)
            .into_iter()
            .map(|(opcode, payload)| (u8::from(opcode), payload))
            .collect()
    }

    fn closing(bytes: &[u8], max: usize) -> Closing {
        ClientFrames::default()
            .feed(bytes, &policy(), max)
            .unwrap_err()
    }

    #[test]
    fn permitted_messages_pass_byte_for_byte() {
        let mut frames = ClientFrames::default();
        let msg = client_frame(
            true,
            1,
            br#"{"id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
        );
        assert_eq!(frames.feed(&msg, &policy(), 1 << 20).unwrap(), msg);
        assert!(frames.pending.is_empty());
    }

    #[test]
    fn denied_requests_are_replaced_in_place_across_fragments_and_split_reads() {
        let mut judge = ClientFrames::default();
        let body = br#"[{"id":1,"method":"eth_chainId"},{"id":2,"method":"admin\u005fpeers"},{"method":"debug_x"}]"#;
        let mut bytes = client_frame(false, 1, &body[..20]);
        bytes.extend(client_frame(true, 9, b"ping"));
        bytes.extend(client_frame(false, 0, &body[20..40]));
        bytes.extend(client_frame(true, 0, &body[40..]));
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            out.extend(judge.feed(piece, &policy(), 1 << 20).unwrap());
        }
        let got = frames(&out);
        assert_eq!(got[0], (9, b"ping".to_vec()), "the ping passes at once");
        let batch: Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(batch[0], serde_json::json!({"id":1,"method":"eth_chainId"}));
        assert_eq!(
            (batch[1]["id"].as_u64(), batch[1]["method"].as_str()),
            (Some(2), Some(DENIED_PLACEHOLDER))
        );
        assert!(
            batch[2].get("id").is_none(),
            "a denied notification stays one"
        );
        assert_eq!(batch[2]["method"], DENIED_PLACEHOLDER);
    }

    #[test]
    fn a_declared_length_over_the_limit_closes_before_any_payload() {
        // The header alone (2^40 bytes declared) is enough to decide.
        let mut huge = vec![0x81, 0xff];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(closing(&huge, 100).code, CloseCode::Size);
        // Fragments count together.
        let mut judge = ClientFrames::default();
        judge
            .feed(&client_frame(false, 1, &[b' '; 60]), &policy(), 100)
            .unwrap();
        let too_much = client_frame(true, 0, &[b' '; 60]);
        let e = judge.feed(&too_much[..8], &policy(), 100).unwrap_err();
        assert_eq!(e.code, CloseCode::Size);
    }

    #[test]
    fn held_bytes_are_what_arrived_of_one_message_and_go_when_it_is_through() {
        let mut judge = ClientFrames::default();
        let call = format!(
            r#"{{"id":1,"method":"eth_call","params":["{}"]}}"#,
            "x".repeat(950)
        );
        let message = client_frame(true, 1, call.as_bytes());
        let mut fed = 0;
        for piece in message[..900].chunks(100) {
            fed += piece.len();
            assert!(judge.feed(piece, &policy(), 1000).unwrap().is_empty());
            assert_eq!(
                judge.held(),
                fed,
                "held is what came, not what was declared"
            );
        }
        assert_eq!(
            judge.feed(&message[900..], &policy(), 1000).unwrap(),
            message
        );
        assert_eq!(judge.held(), 0);
        // A large frame's room is given back once it is through.
        let big = client_frame(true, 1, &vec![b' '; 200_000]);
        judge.feed(&big, &policy(), 1 << 20).unwrap();
        assert!(judge.pending.capacity() <= FREE_BYTES);
    }

    #[test]
    fn a_batch_over_the_limit_becomes_one_call_and_is_never_expanded() {
        let small = MethodPolicy {
            max_batch: 3,
            ..policy()
        };
        let batch = format!("[{}1]", "1,".repeat(5000));
        let out = ClientFrames::default()
            .feed(&client_frame(true, 1, batch.as_bytes()), &small, 1 << 20)
            .unwrap();
        let got = frames(&out);
        let call: Value = serde_json::from_slice(&got[0].1).unwrap();
        assert_eq!(call["method"], DENIED_PLACEHOLDER);
        assert!(got[0].1.len() < 100);
    }

    #[test]
    fn protocol_violations_close_with_1002() {
        let mut unmasked = client_frame(true, 1, b"{}");
        unmasked[1] &= 0x7f;
        let mut compressed = client_frame(true, 1, b"\xf2\x48\xcd\xc9\xc9\x07\x00");
        compressed[0] |= 0x40;
        let mut rsv3 = client_frame(true, 2, b"x");
        rsv3[0] |= 0x10;
        let cases = [
            ("unmasked", unmasked),
            ("compressed", compressed),
            ("rsv3", rsv3),
            ("reserved opcode", client_frame(true, 3, b"x")),
            ("orphan continuation", client_frame(true, 0, b"x")),
            ("fragmented ping", client_frame(false, 9, b"x")),
            ("long ping", client_frame(true, 9, &[0; 126])),
            ("long close", client_frame(true, 8, &[0; 200])),
            ("interleaved message", {
                let mut b = client_frame(false, 1, b"[");
                b.extend(client_frame(true, 1, b"{}"));
                b
            }),
        ];
        for (what, bytes) in cases {
            assert_eq!(closing(&bytes, 1 << 20).code, CloseCode::Protocol, "{what}");
        }
        // A 125-byte ping is fine.
        let ping = client_frame(true, 9, &[0; 125]);
        assert_eq!(
            ClientFrames::default()
                .feed(&ping, &policy(), 1 << 20)
                .unwrap(),
            ping
        );
    }

    #[test]
    fn the_close_frame_holds_the_code_and_fits_a_control_frame() {
        let close = Closing {
            code: CloseCode::Size,
            reason: "é".repeat(200),
        }
        .frame();
        let got = frames(&close);
        assert_eq!(got[0].0, 8);
        assert_eq!(&got[0].1[..2], &1009u16.to_be_bytes());
        assert!(got[0].1.len() <= 125);
        assert!(std::str::from_utf8(&got[0].1[2..]).is_ok());
    }

    #[test]
    fn server_frame_boundaries_are_followed_across_reads() {
        let mut bytes = frame(OpCode::Data(Data::Text), None, &[b'a'; 300]);
        bytes.extend(frame(OpCode::Data(Data::Binary), None, &[0; 70_000]));
        bytes.extend(frame(OpCode::Control(Control::Ping), None, b""));
        for size in [1, 3, 100, 70_000] {
            let mut follow = ServerFrames::default();
            let mut boundaries = 0;
            for piece in bytes.chunks(size) {
                follow.pass(piece);
                boundaries += usize::from(follow.at_boundary());
            }
            assert!(follow.at_boundary(), "chunks of {size}");
            assert!(boundaries >= 1);
        }
        let mut follow = ServerFrames::default();
        follow.pass(&bytes[..310]);
        assert!(!follow.at_boundary(), "mid-frame");
    }
}
