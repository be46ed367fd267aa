//! Raw client traffic for tests that need every byte to be theirs: HTTP requests with the body
//! framed as the test says, and a WebSocket handshake after which frames are written by hand.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How an HTTP request's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    ContentLength,
    /// Chunked, cut at these fractions of the body, each chunk written (and flushed) on its own.
    Chunked(&'static [f64]),
}

/// Sends one request (`Connection: close`) and returns the whole answer as text.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    extra_headers: &str,
    body: &[u8],
    framing: Framing,
) -> String {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    s.set_nodelay(true).unwrap();
    let length = match framing {
        Framing::ContentLength => format!("content-length: {}\r\n", body.len()),
        Framing::Chunked(_) => "transfer-encoding: chunked\r\n".to_string(),
    };
    let head = format!(
        "{method} / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{extra_headers}{length}connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    match framing {
        Framing::ContentLength => s.write_all(body).await.unwrap(),
        Framing::Chunked(cuts) => {
            let mut start = 0;
            let mut ends: Vec<usize> = cuts
                .iter()
                .map(|f| (body.len() as f64 * f) as usize)
                .collect();
            ends.push(body.len());
            for end in ends {
                let end = end.clamp(start, body.len());
                if end > start {
                    let chunk = &body[start..end];
                    s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await
                        .unwrap();
                    s.write_all(chunk).await.unwrap();
                    s.write_all(b"\r\n").await.unwrap();
                    s.flush().await.unwrap();
                    // Let the gateway read this chunk on its own.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                start = end;
            }
            s.write_all(b"0\r\n\r\n").await.unwrap();
        }
    }
    let mut answer = Vec::new();
    // A refused request may be answered before its body is all read: the rest is not sent then.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of an HTTP answer (0 when there was none).
pub fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Opens a WebSocket through the gateway by hand; returns the socket and the answer's head.
pub async fn ws_handshake(
    addr: SocketAddr,
    host: &str,
    extra_headers: &str,
) -> (TcpStream, String) {
    ws_handshake_to(addr, "/", host, extra_headers).await
}

/// [`ws_handshake`] to `path`.
pub async fn ws_handshake_to(
    addr: SocketAddr,
    path: &str,
    host: &str,
    extra_headers: &str,
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    s.set_nodelay(true).unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{extra_headers}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("the handshake's answer in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed during the handshake: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&answer).into_owned())
}

/// An upgrade to `path` that is answered with something other than 101: the answer's status,
/// head and body (its `content-length` bytes, or what comes until the connection closes).
pub async fn upgrade_refused(
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
) -> (u16, String, Vec<u8>) {
    let (mut s, head) = ws_handshake_to(addr, path, "gateway.test", extra_headers).await;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let read = async move {
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                s.read_exact(&mut body).await?;
            }
            None => {
                s.read_to_end(&mut body).await?;
            }
        }
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the answer's body in time")
        .expect("the answer's body");
    (status(&head), head, body)
}

/// A masked client frame; `first` is the first header byte (FIN, RSV bits and opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mask = [0x1b, 0x2c, 0x3d, 0x4e];
    client_header(&mut out, payload.len() as u64);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// The length bytes of a masked client frame header.
pub fn client_header(out: &mut Vec<u8>, length: u64) {
    match length {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Reads server frames until a close frame; returns its code (`None` if the connection ended
/// without one) and the text payloads seen before it.
pub async fn read_until_close(s: &mut TcpStream, within: Duration) -> (Option<u16>, Vec<String>) {
    let mut buf = Vec::new();
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Whole frames in the buffer first.
        while buf.len() >= 2 {
            let (len, header) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < header + len {
                break;
            }
            let payload = buf[header..header + len].to_vec();
            match buf[0] & 0x0f {
                8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return (code, texts);
                }
                1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                _ => {}
            }
            buf.drain(..header + len);
        }
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return (None, texts),
            Err(_) => panic!("no close frame within {within:?}"),
        }
    }
}

/// The JSON body of a raw HTTP answer (chunked or not); `null` when it has none.
pub fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let chunked = answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let (Some(piece), Some(next)) = (tail.get(..size), tail.get(size + 2..)) else {
                break;
            };
            out.push_str(piece);
            rest = next;
        }
        out
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}
