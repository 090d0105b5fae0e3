//! Reading a request's `Content-Type`, as the admin API and the webhook receiver both must.

/// The media type without its parameters, trimmed and lower-cased (`application/json` for
/// `Application/JSON; charset=utf-8`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` or any `application/<something>+json`, with any parameters, in any
/// case.
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    ty.trim() == "application"
        && (sub.trim() == "json" || sub.strip_suffix("+json").is_some_and(|x| !x.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_its_structured_suffix_in_any_case_with_parameters() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
            "application/vnd.api+json;charset=UTF-8",
            " application/json ",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "application/+json",
            "application",
            "",
        ] {
            assert!(!is_json(no), "{no}");
        }
        assert_eq!(essence(" Text/JSON ; q=1"), "text/json");
    }
}
