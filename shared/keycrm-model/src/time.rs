//! KeyCRM timestamps. Live responses use Laravel's ISO form (`2023-06-20T12:27:55.000000Z`)
//! for most `*_at` fields and the space form (`2024-05-28 09:34:10`) for a few (`closed_at`,
//! `last_synced_at`); both are UTC. Request bodies take the space form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Parses either live form (and plain dates, as midnight UTC).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The form KeyCRM takes in request bodies and `*_between` filters.
pub fn format_request(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The ISO form live responses use (what the simulator emits too).
pub fn format_live(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `#[serde(deserialize_with = "time::opt", default)]` for nullable timestamps in either form.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse(&s)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("\"{s}\" is not a KeyCRM timestamp"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn both_live_forms_parse_to_the_same_instant() {
        let iso = parse("2024-05-28T09:34:10.000000Z").unwrap();
        let space = parse("2024-05-28 09:34:10").unwrap();
        assert_eq!(iso, space);
        assert_eq!(iso, Utc.with_ymd_and_hms(2024, 5, 28, 9, 34, 10).unwrap());
    }

    #[test]
    fn dates_and_offsets() {
        assert_eq!(
            parse("2024-05-28").unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 28, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse("2024-05-28T12:34:10+03:00").unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 28, 9, 34, 10).unwrap()
        );
        assert!(parse("28.05.2024").is_none());
    }

    #[test]
    fn formats_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 5).unwrap();
        assert_eq!(format_request(t), "2026-11-28 10:00:05");
        assert_eq!(format_live(t), "2026-11-28T10:00:05.000000Z");
        assert_eq!(parse(&format_live(t)), Some(t));
    }
}
