//! The vanish guard: a sweep that would take away more than a share of the linked catalog at
//! once is refused (an empty or shifted listing looks exactly like a mass deletion).

#[derive(Clone, Debug, PartialEq)]
pub enum GuardVerdict {
    Allow,
    Refuse { message: String },
}

/// Why a guard refused: the figures its message quotes.
struct Excess {
    gone: u64,
    linked: u64,
    /// The guard's share in percent, after clamping.
    allowed_percent: f64,
    allowed: u64,
}

impl Excess {
    fn gone_percent(&self) -> f64 {
        if self.linked == 0 {
            100.0
        } else {
            self.gone as f64 * 100.0 / self.linked as f64
        }
    }
}

/// The one rule both guards apply: `gone` of `linked` may vanish at once when it is at most
/// `share` of them (a share that is not a number allows nothing; it is clamped to 0..=1).
fn check(
    gone: u64,
    linked: u64,
    share: f64,
    refuse: impl FnOnce(Excess) -> String,
) -> GuardVerdict {
    if gone == 0 {
        return GuardVerdict::Allow;
    }
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let allowed = (linked as f64 * share).floor() as u64;
    if gone <= allowed {
        return GuardVerdict::Allow;
    }
    GuardVerdict::Refuse {
        message: refuse(Excess {
            gone,
            linked,
            allowed_percent: share * 100.0,
            allowed,
        }),
    }
}

/// Refuses a sweep that would hide or disable more than `share` of the linked catalog.
pub fn vanish_guard(to_sweep: u64, linked: u64, share: f64) -> GuardVerdict {
    check(to_sweep, linked, share, |e| {
        format!(
            "{} of {} linked products vanished from KeyCRM ({:.1}%), more than \
             the vanish guard allows ({:.0}%, at most {}); nothing was hidden or made \
             unavailable. Check the KeyCRM catalog and the category filter, or raise the guard.",
            e.gone,
            e.linked,
            e.gone_percent(),
            e.allowed_percent,
            e.allowed
        )
    })
}

/// The same guard for offers that vanished from products still listed: an empty or shifted
/// page in the middle of the listing looks exactly like that, so more than `share` of the
/// linked variants going at once is refused rather than made unavailable.
pub fn offers_guard(missing: u64, linked: u64, share: f64) -> GuardVerdict {
    check(missing, linked, share, |e| {
        format!(
            "{} of {} linked variants vanished from KeyCRM products that are \
             still listed ({:.1}%), more than the vanish guard allows ({:.0}%, at most \
             {}); no variant was made unavailable. Check the KeyCRM catalog, or \
             raise the guard.",
            e.gone,
            e.linked,
            e.gone_percent(),
            e.allowed_percent,
            e.allowed
        )
    })
}
