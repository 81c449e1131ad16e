//! RFC 3339 times as both APIs write and read them: UTC with milliseconds out, a `Z` or
//! a numeric offset in (Python's `isoformat` gives `+00:00`). A leaf.

use std::time::{Duration, SystemTime};

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z, in Unix milliseconds.
const LAST_MS: u64 = 253_402_300_799_999;

/// Formats a time as RFC 3339 with milliseconds, in UTC. A time RFC 3339 cannot write
/// (before 1970, as a file's modification time can be, or past the year 9999) is
/// written as the nearest one it can.
pub fn format(t: SystemTime) -> String {
    let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => u64::try_from(since.as_millis()).unwrap_or(LAST_MS),
        Err(_) => 0,
    };
    let clamped = SystemTime::UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS));
    humantime::format_rfc3339_millis(clamped).to_string()
}

/// Formats milliseconds since the Unix epoch as RFC 3339, as [`format`] does.
pub fn format_ms(ms: i64) -> String {
    format(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// Parses an RFC 3339 time with a `Z` or a numeric offset; `None` for anything else,
/// whatever bytes it holds.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let split = text
        .len()
        .checked_sub(6)
        .filter(|&i| text.is_char_boundary(i))
        .map(|i| text.split_at(i));
    let (local, offset_secs) = match split {
        Some((local, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':' =>
        {
            let hours: u64 = offset.get(1..3)?.parse().ok()?;
            let minutes: u64 = offset.get(4..6)?.parse().ok()?;
            let secs = Duration::from_secs(hours * 3600 + minutes * 60);
            (local, Some((offset.starts_with('-'), secs)))
        }
        _ => (text.trim_end_matches(['Z', 'z']), None),
    };
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    // `local + offset = UTC`: a `+02:00` time is two hours ahead of UTC.
    match offset_secs {
        None => Some(t),
        Some((false, secs)) => t.checked_sub(secs),
        Some((true, secs)) => t.checked_add(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_read_as_utc() {
        let utc = parse("2026-01-02T03:04:05.678Z").expect("utc");
        assert_eq!(parse("2026-01-02T05:04:05.678+02:00"), Some(utc));
        assert_eq!(parse("2026-01-02T01:04:05.678-02:00"), Some(utc));
        assert_eq!(parse("2026-01-02T03:04:05.678+00:00"), Some(utc));
        assert_eq!(format(utc), "2026-01-02T03:04:05.678Z");
    }

    #[test]
    fn anything_else_is_none_and_never_a_panic() {
        for text in [
            "yesterday",
            "",
            "+",
            "ééé",
            "2026-01-02T03:04:05é00:00",
            "x+0é:00",
            "+00:0é",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn times_rfc_3339_cannot_write_are_clamped_not_a_panic() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format(before), "1970-01-01T00:00:00.000Z");
    }
}
