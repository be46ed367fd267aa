//! Reading a directive's values: numbers and haproxy times, each refused with the line it stands
//! on when it is not one.

use crate::import::error::ImportError;

/// A directive's number, or a syntax error naming the line.
pub(super) fn number<T: std::str::FromStr>(
    value: Option<&&str>,
    what: &str,
    line: usize,
) -> Result<T, ImportError> {
    let value = value.copied().unwrap_or("");
    value.parse().map_err(|_| ImportError::Syntax {
        line,
        message: format!("{what} `{value}` is not a number"),
    })
}

/// A directive's haproxy time in milliseconds, or a syntax error naming the line.
pub(super) fn time(value: Option<&&str>, what: &str, line: usize) -> Result<u64, ImportError> {
    let value = value.copied().unwrap_or("");
    haproxy_ms(value).ok_or_else(|| ImportError::Syntax {
        line,
        message: format!("{what} `{value}` is not an haproxy time (like 5s or 500ms)"),
    })
}

/// An haproxy time (`5s`, `5m`, `3600s`, `500ms`, or bare milliseconds) in milliseconds.
pub(super) fn haproxy_ms(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000),
        "" | "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_times() {
        assert_eq!(haproxy_ms("5s"), Some(5000));
        assert_eq!(haproxy_ms("5m"), Some(300_000));
        assert_eq!(haproxy_ms("10000"), Some(10_000));
        assert_eq!(haproxy_ms("soon"), None);
        assert_eq!(haproxy_ms("500000us"), Some(500));
        assert_eq!(haproxy_ms("213503982336d"), None, "no overflow");
    }
}
