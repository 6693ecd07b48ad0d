//! Timestamps as stored text: RFC 3339 UTC with milliseconds on write, tolerant on read.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Formats `t` the way every FLM table stores time: `2026-11-25T10:00:00.123Z`.
///
/// Text in this shape sorts in time order, so `ORDER BY` and range queries on the
/// column work without parsing.
pub fn format_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored timestamp.
///
/// Accepts RFC 3339 (any offset, converted to UTC), SQLite's `datetime('now')` /
/// `CURRENT_TIMESTAMP` form `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC), the same with a
/// `T` separator, and whole Unix seconds. Returns `None` for anything else.
pub fn parse_ts(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trip_and_sqlite_forms() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let s = format_ts(&t);
        assert_eq!(s, "2026-11-25T10:00:00.123Z");
        assert_eq!(parse_ts(&s), Some(t));
        assert_eq!(
            parse_ts("2026-11-25 10:00:00"),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap())
        );
        assert_eq!(parse_ts("2026-11-25 10:00:00.123"), Some(t));
        assert_eq!(parse_ts("2026-11-25T11:00:00.123+01:00"), Some(t));
        assert_eq!(
            parse_ts("1700000000"),
            DateTime::from_timestamp(1_700_000_000, 0)
        );
        assert_eq!(parse_ts("yesterday"), None);
        assert_eq!(parse_ts(""), None);
    }
}
