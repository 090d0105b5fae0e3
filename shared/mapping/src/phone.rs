//! Phone numbers as KeyCRM wants them: international, with a leading `+`.

/// Normalises a phone typed by a buyer. Ukrainian numbers in any local form become
/// `+380XXXXXXXXX`; other numbers already in international form are kept. Returns `None` for
/// text that is not a phone number, so the caller can keep the original elsewhere.
pub fn normalize(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let has_plus = trimmed.starts_with('+') || trimmed.starts_with("00");
    let digits: String = trimmed.chars().filter(|c| c.is_ascii_digit()).collect();
    if trimmed
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
    {
        return None;
    }
    let digits = digits
        .strip_prefix("00")
        .map(str::to_string)
        .unwrap_or(digits);
    let ua = match digits.len() {
        12 if digits.starts_with("380") => Some(digits.clone()),
        11 if digits.starts_with("80") => Some(format!("3{digits}")),
        10 if digits.starts_with('0') => Some(format!("38{digits}")),
        9 if !has_plus && !digits.starts_with('0') => Some(format!("380{digits}")),
        _ => None,
    };
    if let Some(n) = ua {
        return Some(format!("+{n}"));
    }
    if has_plus && (8..=15).contains(&digits.len()) {
        return Some(format!("+{digits}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn ukrainian_local_forms() {
        for raw in [
            "0501112233",
            "050 111 22 33",
            "(050) 111-22-33",
            "80501112233",
            "380501112233",
            "+380501112233",
            "+38 (050) 111-22-33",
            "00380501112233",
            "501112233",
        ] {
            assert_eq!(normalize(raw).as_deref(), Some("+380501112233"), "{raw}");
        }
    }

    #[test]
    fn foreign_international_numbers_are_kept() {
        assert_eq!(
            normalize("+48 601 234 567").as_deref(),
            Some("+48601234567")
        );
        assert_eq!(
            normalize("+1 (555) 234-1234").as_deref(),
            Some("+15552341234")
        );
    }

    #[test]
    fn junk_is_refused() {
        for raw in [
            "",
            "call me",
            "12345",
            "+12",
            "050-111-22-33 ext 5",
            "0501112233444",
        ] {
            assert_eq!(normalize(raw), None, "{raw}");
        }
    }
}
