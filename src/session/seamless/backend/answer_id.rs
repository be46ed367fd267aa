//! The `id` of a message too large to keep, from the bytes kept of its ends
//! ([`super::bounds::KEPT_ENDS`]): where nodes write it, before `result` (geth) or as the last key
//! (Nethermind).

/// The top-level `id` (a number) of the JSON at the start of a message, when it comes before
/// any value that does not fit in `head`: `{"jsonrpc":"2.0","id":7,"result":…` (in a batch, the
/// first element's).
pub fn id_from_head(head: &[u8]) -> Option<u64> {
    let mut at = skip_space(head, 0);
    if head.get(at) == Some(&b'[') {
        at = skip_space(head, at + 1);
    }
    if head.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(head, at);
        let (key, end) = string_at(head, at)?;
        at = skip_space(head, end);
        if head.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(head, at + 1);
        if key == b"id" {
            let digits = head[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            // The number must end inside `head`.
            head.get(at + digits)?;
            return std::str::from_utf8(&head[at..at + digits])
                .ok()?
                .parse()
                .ok();
        }
        at = skip_space(head, value_end(head, at)?);
        match head.get(at) {
            Some(b',') => at += 1,
            _ => return None,
        }
    }
}

/// The top-level `id` (a number) when it is the last member of the message's object:
/// `…],"id":7}` (in a batch, the last element's).
pub fn id_from_tail(tail: &[u8]) -> Option<u64> {
    let mut end = tail.len();
    let back = |end: usize| -> usize {
        let mut end = end;
        while end > 0 && tail[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        end
    };
    end = back(end);
    if end > 0 && tail[end - 1] == b']' {
        end = back(end - 1);
    }
    if end == 0 || tail[end - 1] != b'}' {
        return None;
    }
    end = back(end - 1);
    let digits = tail[..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let number = std::str::from_utf8(&tail[end - digits..end])
        .ok()?
        .parse()
        .ok()?;
    end = back(end - digits);
    if end == 0 || tail[end - 1] != b':' {
        return None;
    }
    end = back(end - 1);
    if end < 4 || &tail[end - 4..end] != b"\"id\"" {
        return None;
    }
    end = back(end - 4);
    // The key opens a member of the object: after a comma or its brace, never inside a string.
    (end > 0 && matches!(tail[end - 1], b',' | b'{')).then_some(number)
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The string starting at `at` (its raw bytes, escapes untouched) and where it ends.
fn string_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some((&bytes[at + 1..i], i + 1)),
            _ => i += 1,
        }
    }
}

/// Where the JSON value starting at `at` ends, if it ends inside `bytes`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_at(bytes, at).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_at(bytes, i)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = bytes[at..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                .count();
            // A scalar must end inside `bytes` to be known whole.
            bytes.get(at + len)?;
            Some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_found_first_or_last() {
        assert_eq!(
            id_from_head(br#"{"jsonrpc":"2.0","id":42,"result":[{"a":"#),
            Some(42)
        );
        assert_eq!(
            id_from_head(br#" { "jsonrpc" : "2.0", "x":{"id":1,"s":"}\""}, "id" : 7 ,"result""#),
            Some(7)
        );
        assert_eq!(
            id_from_head(br#"[{"jsonrpc":"2.0","id":3,"result":[1,"#),
            Some(3)
        );
        // The id not in the head, or cut off: unknown.
        assert_eq!(
            id_from_head(br#"{"jsonrpc":"2.0","result":[{"id":5,"#),
            None
        );
        assert_eq!(id_from_head(br#"{"jsonrpc":"2.0","id":12"#), None);
        assert_eq!(id_from_tail(br#"x"}],"id":99}"#), Some(99));
        assert_eq!(id_from_tail(b"0\"}] ,\n \"id\" : 99 } \n"), Some(99));
        assert_eq!(id_from_tail(br#"x"}],"id":8}]"#), Some(8));
        // A string that ends like an id member is not one.
        assert_eq!(id_from_tail(br#"{"result":"a\"id\":9}"}"#), None);
        assert_eq!(id_from_tail(br#""result":{"id":9}}"#), None);
        assert_eq!(id_from_tail(br#"],"id":"9"}"#), None);
    }
}
