//! The method policy on WebSocket messages from the client.
//!
//! Client frames are parsed as they stream (RFC 6455: masked, possibly fragmented, control frames
//! interleaved). Each complete text message is judged like an HTTP body; a denied request (or batch
//! element) is replaced by a call to a method no node has, `ssv_ha_denied`, with the same id, so
//! the backend answers a JSON-RPC error in its place and the order of answers is kept, while the
//! denied method itself never reaches the backend. Messages are re-framed whole and re-masked.

use super::policy::{self, MethodPolicy};
use serde_json::Value;

/// The method a denied request is replaced with; no node implements it.
pub const DENIED_PLACEHOLDER: &str = "ssv_ha_denied";

/// Reassembles the client's frames and forwards them, judged.
#[derive(Debug, Default)]
pub struct ClientFrames {
    pending: Vec<u8>,
    /// The message being reassembled: its opcode, mask key and payload so far.
    message: Option<(u8, [u8; 4], Vec<u8>)>,
}

impl ClientFrames {
    /// Takes the next bytes from the client and returns what may go to the backend now.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        policy: &MethodPolicy,
        max_message: usize,
    ) -> Result<Vec<u8>, String> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(frame) = parse(&self.pending)? {
            let consumed = frame.len;
            if frame.opcode >= 8 {
                // Control frames (close, ping, pong) pass unchanged, even mid-message.
                out.extend_from_slice(&self.pending[..consumed]);
            } else {
                let payload = frame.payload(&self.pending);
                match (frame.opcode, self.message.as_mut()) {
                    (0, Some((_, _, data))) => data.extend_from_slice(&payload),
                    (0, None) => return Err("a continuation frame without a message".into()),
                    (_, Some(_)) => return Err("a new message before the last one ended".into()),
                    (opcode, None) => self.message = Some((opcode, frame.mask, payload)),
                }
                if self
                    .message
                    .as_ref()
                    .is_some_and(|(_, _, data)| data.len() > max_message)
                {
                    return Err(format!("a message larger than {max_message} bytes"));
                }
                if frame.fin {
                    if let Some((opcode, mask, data)) = self.message.take() {
                        // Began and ended in this frame (not a continuation).
                        let single = frame.opcode != 0;
                        let judged = if opcode == 1 {
                            judge(&data, policy)
                        } else {
                            None
                        };
                        match judged {
                            None if single => out.extend_from_slice(&self.pending[..consumed]),
                            None => out.extend_from_slice(&encode(opcode, mask, &data)),
                            Some(data) => out.extend_from_slice(&encode(opcode, mask, &data)),
                        }
                    }
                }
            }
            self.pending.drain(..consumed);
        }
        Ok(out)
    }
}

/// `None` to forward the text message unchanged, or the message with its denied requests replaced.
fn judge(message: &[u8], policy: &MethodPolicy) -> Option<Vec<u8>> {
    // The common case, decided by a scan without copying the policy or parsing the JSON.
    if policy::all_methods_permitted(message, policy) {
        return None;
    }
    let lenient = MethodPolicy {
        max_batch: usize::MAX,
        ..policy.clone()
    };
    if policy::inspect(message, &lenient) == policy::Decision::Pass {
        return None;
    }
    let Ok(request) = serde_json::from_slice::<Value>(message) else {
        return Some(placeholder(&Value::Null).to_string().into_bytes());
    };
    let neutral = |item: &Value| -> Value {
        let permitted =
            policy::inspect(item.to_string().as_bytes(), &lenient) == policy::Decision::Pass;
        if permitted {
            item.clone()
        } else {
            placeholder(item.get("id").unwrap_or(&Value::Null))
        }
    };
    let judged = match &request {
        Value::Array(items) => Value::Array(items.iter().map(neutral).collect()),
        single => neutral(single),
    };
    Some(judged.to_string().into_bytes())
}

fn placeholder(id: &Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": DENIED_PLACEHOLDER, "params": []})
}

struct Frame {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header: usize,
    len: usize,
}

impl Frame {
    fn payload(&self, bytes: &[u8]) -> Vec<u8> {
        bytes[self.header..self.len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ self.mask[i % 4])
            .collect()
    }
}

/// The first complete frame of `bytes`, `None` if more bytes are needed.
fn parse(bytes: &[u8]) -> Result<Option<Frame>, String> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let fin = bytes[0] & 0x80 != 0;
    let opcode = bytes[0] & 0x0f;
    if bytes[1] & 0x80 == 0 {
        return Err("an unmasked frame from the client".into());
    }
    let (payload_len, mut header) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&bytes[2..10]);
            let len = usize::try_from(u64::from_be_bytes(len))
                .map_err(|_| "a frame too large".to_string())?;
            (len, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if bytes.len() < header + 4 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&bytes[header..header + 4]);
    header += 4;
    let Some(len) = header.checked_add(payload_len) else {
        return Err("a frame too large".into());
    };
    if bytes.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        mask,
        header,
        len,
    }))
}

/// One final, masked frame.
fn encode(opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
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

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = encode(opcode, [1, 2, 3, 4], payload);
        if !fin {
            f[0] &= 0x7f;
        }
        f
    }

    fn messages(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(f) = parse(rest).unwrap() {
            out.push((f.opcode, f.payload(rest)));
            rest = &rest[f.len..];
        }
        out
    }

    #[test]
    fn permitted_messages_pass_byte_for_byte() {
        let mut frames = ClientFrames::default();
        let msg = frame(
            true,
            1,
            br#"{"id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
        );
        assert_eq!(frames.feed(&msg, &policy(), 1 << 20).unwrap(), msg);
    }

    #[test]
    fn denied_requests_are_replaced_in_place_across_fragments_and_split_reads() {
        let mut frames = ClientFrames::default();
        let body = br#"[{"id":1,"method":"eth_chainId"},{"id":2,"method":"admin_peers"}]"#;
        let mut bytes = frame(false, 1, &body[..20]);
        bytes.extend(frame(true, 9, b"ping"));
        bytes.extend(frame(true, 0, &body[20..]));
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            out.extend(frames.feed(piece, &policy(), 1 << 20).unwrap());
        }
        let got = messages(&out);
        assert_eq!(got[0], (9, b"ping".to_vec()), "the ping passes at once");
        let batch: Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(batch[0]["method"], "eth_chainId");
        assert_eq!(
            (batch[1]["id"].as_u64(), batch[1]["method"].as_str()),
            (Some(2), Some(DENIED_PLACEHOLDER))
        );
        assert!(
            !String::from_utf8_lossy(&out).contains("admin_peers")
                && !String::from_utf8_lossy(&got[1].1).contains("admin_peers")
        );
    }

    #[test]
    fn protocol_violations_and_oversize_messages_are_errors() {
        let mut unmasked = frame(true, 1, b"{}");
        unmasked[1] &= 0x7f;
        assert!(ClientFrames::default()
            .feed(&unmasked, &policy(), 100)
            .is_err());
        assert!(ClientFrames::default()
            .feed(&frame(true, 0, b"x"), &policy(), 100)
            .is_err());
        assert!(ClientFrames::default()
            .feed(&frame(true, 1, &[b'a'; 200]), &policy(), 100)
            .is_err());
        let mut huge = vec![0x81, 0xff];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(ClientFrames::default().feed(&huge, &policy(), 100).is_err());
    }
}
