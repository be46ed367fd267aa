//! Times in ssv-ha's notation: what [`super::rules`] notes and [`super::render`] writes, so
//! both say a time the same way.

/// A time in ms in ssv-ha's notation, in the largest unit that divides it.
pub(super) fn duration(ms: u64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_unit_that_divides() {
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(120_000), "2m");
        assert_eq!(duration(1500), "1500ms");
    }
}
