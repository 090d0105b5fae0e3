//! Timestamp formatting/parsing in the shapes KeyCRM uses.
//!
//! Internally every timestamp is an `i64` of UTC unix seconds.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

pub(crate) fn now() -> i64 {
    Utc::now().timestamp()
}

fn to_dt(ts: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(ts, 0).single().unwrap_or_default()
}

/// Laravel ISO form used by live responses for `*_at` fields: `2026-11-28T10:00:00.000000Z`.
pub(crate) fn iso(ts: i64) -> String {
    to_dt(ts).format("%Y-%m-%dT%H:%M:%S.000000Z").to_string()
}

/// Space form used by `closed_at` / `last_synced_at`: `2026-11-28 10:00:00`.
pub(crate) fn space(ts: i64) -> String {
    to_dt(ts).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Parses input datetimes: `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD`, or ISO/RFC 3339.
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(dt.and_utc().timestamp());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        return Some(dt.and_utc().timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(dt.and_utc().timestamp());
    }
    None
}

/// Parses a `"<from>,<to>"` range filter (`created_between`, `updated_between`, ...).
/// A date-only bound means `00:00:00` of that day (as live KeyCRM appears to read it).
pub(crate) fn parse_between(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.split_once(',')?;
    let from = parse_datetime(a)?;
    let to = parse_datetime(b)?;
    Some((from, to))
}

/// Parses a shipping date (`YYYY-MM-DD` or a datetime).
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    parse_datetime(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ts = parse_datetime("2026-11-28 10:00:00").unwrap_or_default();
        assert_eq!(iso(ts), "2026-11-28T10:00:00.000000Z");
        assert_eq!(space(ts), "2026-11-28 10:00:00");
        assert_eq!(parse_datetime("2026-11-28T10:00:00.000000Z"), Some(ts));
        assert_eq!(
            parse_between("2020-08-24 00:00:00, 2020-09-22 23:59:59").map(|(a, b)| b - a > 0),
            Some(true)
        );
        assert_eq!(
            parse_between("2020-08-24,2020-09-22"),
            Some((
                parse_datetime("2020-08-24").unwrap_or_default(),
                parse_datetime("2020-09-22 00:00:00").unwrap_or_default()
            ))
        );
        assert_eq!(parse_between("garbage"), None);
    }
}
