//! The vanish guard: a sweep that would take away more than a share of the linked catalog at
//! once is refused (an empty or shifted listing looks exactly like a mass deletion).

#[derive(Clone, Debug, PartialEq)]
pub enum GuardVerdict {
    Allow,
    Refuse { message: String },
}

/// Refuses a sweep that would hide or disable more than `share` of the linked catalog.
pub fn vanish_guard(to_sweep: u64, linked: u64, share: f64) -> GuardVerdict {
    if to_sweep == 0 {
        return GuardVerdict::Allow;
    }
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let allowed = (linked as f64 * share).floor() as u64;
    if to_sweep <= allowed {
        GuardVerdict::Allow
    } else {
        GuardVerdict::Refuse {
            message: format!(
                "{to_sweep} of {linked} linked products vanished from KeyCRM ({:.1}%), more than \
                 the vanish guard allows ({:.0}%, at most {allowed}); nothing was hidden or made \
                 unavailable. Check the KeyCRM catalog and the category filter, or raise the guard.",
                if linked == 0 { 100.0 } else { to_sweep as f64 * 100.0 / linked as f64 },
                share * 100.0
            ),
        }
    }
}

/// The same guard for offers that vanished from products still listed: an empty or shifted
/// page in the middle of the listing looks exactly like that, so more than `share` of the
/// linked variants going at once is refused rather than made unavailable.
pub fn offers_guard(missing: u64, linked: u64, share: f64) -> GuardVerdict {
    if missing == 0 {
        return GuardVerdict::Allow;
    }
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let allowed = (linked as f64 * share).floor() as u64;
    if missing <= allowed {
        GuardVerdict::Allow
    } else {
        GuardVerdict::Refuse {
            message: format!(
                "{missing} of {linked} linked variants vanished from KeyCRM products that are \
                 still listed ({:.1}%), more than the vanish guard allows ({:.0}%, at most \
                 {allowed}); no variant was made unavailable. Check the KeyCRM catalog, or \
                 raise the guard.",
                if linked == 0 {
                    100.0
                } else {
                    missing as f64 * 100.0 / linked as f64
                },
                share * 100.0
            ),
        }
    }
}
