//! The merchant's language for messages: Ukrainian when the request prefers it, English
//! otherwise. Only these two exist; everything the merchant reads is written in both.

/// A language messages are rendered in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    #[default]
    En,
    Uk,
}

impl Lang {
    /// The language an `Accept-Language` header prefers among the two we speak. Ukrainian only
    /// when `uk` is weighted at least as high as English (ties go to the one listed first);
    /// anything unreadable, absent or naming neither means English.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::En;
        };
        // (weight, position) of the best entry for each language; `*` counts as English.
        let mut uk: Option<(f32, usize)> = None;
        let mut en: Option<(f32, usize)> = None;
        for (pos, part) in header.split(',').enumerate().take(32) {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let primary = tag.split('-').next().unwrap_or("");
            let mut q = 1.0f32;
            for p in pieces {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q = match v.trim().parse::<f32>() {
                        Ok(x) if x.is_finite() && (0.0..=1.0).contains(&x) => x,
                        _ => 0.0,
                    };
                }
            }
            if q <= 0.0 {
                continue;
            }
            let slot = match primary {
                "uk" => &mut uk,
                "en" | "*" => &mut en,
                _ => continue,
            };
            if slot.is_none_or(|(best, _)| q > best) {
                *slot = Some((q, pos));
            }
        }
        match (uk, en) {
            (Some(_), None) => Lang::Uk,
            (Some((qu, pu)), Some((qe, pe))) if qu > qe || (qu == qe && pu < pe) => Lang::Uk,
            _ => Lang::En,
        }
    }

    /// The text for this language.
    pub fn pick<'a>(self, en: &'a str, uk: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Uk => uk,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Uk => "uk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ukrainian_only_when_preferred() {
        let l = |h: &str| Lang::from_accept_language(Some(h));
        assert_eq!(Lang::from_accept_language(None), Lang::En);
        assert_eq!(l("uk"), Lang::Uk);
        assert_eq!(l("uk-UA,uk;q=0.9,en-US;q=0.8,en;q=0.7"), Lang::Uk);
        assert_eq!(l("ru-RU, uk;q=0.9, en;q=0.8"), Lang::Uk);
        assert_eq!(l("en-US,en;q=0.9,uk;q=0.8"), Lang::En);
        assert_eq!(l("uk;q=0.5, *"), Lang::En);
        assert_eq!(l("en, uk"), Lang::En, "a tie goes to the first listed");
        assert_eq!(l("uk, en"), Lang::Uk);
        assert_eq!(l("uk;q=0"), Lang::En);
        assert_eq!(l("uk;q=banana"), Lang::En);
        assert_eq!(l("de, fr"), Lang::En);
        assert_eq!(l(""), Lang::En);
        assert_eq!(l(";;;,,,=q"), Lang::En);
        assert_eq!(l("UK-ua"), Lang::Uk);
    }
}
