//! The merchant's "Integrations -> KeyCRM" page, served by the admin API itself.
//!
//! Plain HTML, CSS and JavaScript modules (no framework, nothing from another host), embedded
//! in the binary at build time and served from `/v1/shops/{shop_id}/connection/page`. The page
//! calls the JSON routes next to it with the shop token it was opened with; the token travels
//! in the URL fragment, which browsers never send to a server (see `docs/settings-page.md`).
//!
//! - `GET …/connection/page`: the HTML shell, in Ukrainian or English (`?lang=`, else
//!   `Accept-Language`, else Ukrainian), revalidated on every load (`no-cache` + ETag).
//! - `GET …/connection/page/{version}/{file}`: the assets. `version` is a hash of their
//!   contents, so a deploy changes every asset URL and the browser may keep an asset for a
//!   year; an asset asked for under another version is served fresh and not cached.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests only
//! from this origin, no inline code, Trusted Types, `frame-ancestors` limited to the
//! configured platform origins), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The page's HTML shell. `{{LANG}}`, `{{VERSION}}`, `{{ORIGINS}}` and `{{TITLE}}` are
/// filled in per language when the router is built.
const INDEX_HTML: &str = include_str!("../page/index.html");

/// Every asset the page loads: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/api.js"),
    ),
    (
        "session.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/session.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/dom.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/i18n.js"),
    ),
    (
        "settings.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/settings.js"),
    ),
    (
        "blocks.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/blocks.js"),
    ),
    (
        "status.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/status.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../page/style.css"),
    ),
];

/// Languages the page speaks; the first is the default.
pub const LANGUAGES: [&str; 2] = ["uk", "en"];

/// Every file the page is made of (HTML included) and its size in bytes, uncompressed.
pub fn page_files() -> Vec<(&'static str, usize)> {
    let mut out = vec![("index.html", INDEX_HTML.len())];
    out.extend(ASSETS.iter().map(|(name, _, body)| (*name, body.len())));
    out
}

/// The asset version: a hash of every asset and of the HTML shell.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(INDEX_HTML.as_bytes());
        for (name, _, body) in ASSETS {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(body.as_bytes());
        }
        hex_prefix(&h.finalize(), 8)
    })
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex_prefix(&Sha256::digest(body), 12))
}

/// Everything the page routes answer with, rendered once per router.
pub struct PageAssets {
    /// Per language: the HTML and its ETag.
    html: HashMap<&'static str, (String, String)>,
    /// Per file: content type, bytes, ETag.
    files: HashMap<&'static str, (&'static str, &'static str, String)>,
    csp: HeaderValue,
}

impl PageAssets {
    pub fn new(origins: &[String]) -> Self {
        let origins_attr = origins.join(" ");
        let html = LANGUAGES
            .iter()
            .map(|lang| {
                let title = if *lang == "uk" {
                    "Інтеграції → KeyCRM"
                } else {
                    "Integrations → KeyCRM"
                };
                let body = INDEX_HTML
                    .replace("{{LANG}}", lang)
                    .replace("{{VERSION}}", version())
                    .replace("{{ORIGINS}}", &escape_attr(&origins_attr))
                    .replace("{{TITLE}}", title);
                let tag = etag_of(body.as_bytes());
                (*lang, (body, tag))
            })
            .collect();
        let files = ASSETS
            .iter()
            .map(|(name, ty, body)| (*name, (*ty, *body, etag_of(body.as_bytes()))))
            .collect();
        PageAssets {
            html,
            files,
            csp: csp(origins),
        }
    }
}

/// The page's Content-Security-Policy. Origins were validated as bare `scheme://host[:port]`
/// when the configuration was read, so they cannot smuggle a directive in.
pub fn csp(origins: &[String]) -> HeaderValue {
    let ancestors = if origins.is_empty() {
        "'none'".to_string()
    } else {
        origins.join(" ")
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         require-trusted-types-for 'script'; trusted-types 'none'; \
         frame-ancestors {ancestors}"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The language to serve: `?lang=uk|en` first, then the best of `Accept-Language` (by its
/// q-values, earlier wins a tie), Ukrainian when neither names one the page speaks.
pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> &'static str {
    if let Some(lang) = crate::query_param(query, "lang") {
        if let Some(l) = LANGUAGES.iter().find(|l| **l == lang) {
            return l;
        }
    }
    let mut best: Option<(&'static str, f32)> = None;
    for part in accept_language.unwrap_or_default().split(',') {
        let mut pieces = part.split(';');
        let tag = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let primary = tag.split('-').next().unwrap_or_default();
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
            .and_then(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        // `q=0` means "not this one"; a NaN is no preference either.
        if q.is_nan() || q <= 0.0 {
            continue;
        }
        let Some(lang) = LANGUAGES.iter().find(|l| **l == primary) else {
            continue;
        };
        if best.is_none_or(|(_, bq)| q > bq) {
            best = Some((lang, q));
        }
    }
    best.map_or(LANGUAGES[0], |(l, _)| l)
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
}

/// The headers every page answer carries.
fn secured(mut resp: Response, assets: &PageAssets) -> Response {
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, assets.csp.clone());
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

fn respond(
    headers: &HeaderMap,
    assets: &PageAssets,
    content_type: &'static str,
    body: &str,
    etag: &str,
    cache: &'static str,
    vary_language: bool,
) -> Response {
    let mut resp = if matches_etag(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.to_string().into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if vary_language {
        h.insert(VARY, HeaderValue::from_static("Accept-Language"));
    }
    secured(resp, assets)
}

/// `GET /v1/shops/{shop_id}/connection/page`
pub async fn get_page(
    State(assets): State<Arc<PageAssets>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let assets = assets.as_ref();
    let lang = negotiate(
        q.as_deref(),
        headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    );
    let Some((body, etag)) = assets.html.get(lang) else {
        return secured(StatusCode::NOT_FOUND.into_response(), assets);
    };
    respond(
        &headers,
        assets,
        "text/html; charset=utf-8",
        body,
        etag,
        "no-cache",
        true,
    )
}

/// `GET /v1/shops/{shop_id}/connection/page/{version}/{file}`
pub async fn get_asset(
    State(assets): State<Arc<PageAssets>>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let assets = assets.as_ref();
    let file = params.get("file").map(String::as_str).unwrap_or_default();
    let Some((ty, body, etag)) = assets.files.get(file) else {
        let mut resp = (StatusCode::NOT_FOUND, "not found").into_response();
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return secured(resp, assets);
    };
    // The current version may be kept for good; an old one is answered with today's file,
    // which must not be cached under the old name.
    let cache = if params.get("version").map(String::as_str) == Some(version()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    respond(&headers, assets, ty, body, etag, cache, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_follow_the_query_then_the_browser_then_ukrainian() {
        assert_eq!(negotiate(None, None), "uk");
        assert_eq!(negotiate(None, Some("en-US,en;q=0.9")), "en");
        assert_eq!(negotiate(None, Some("uk-UA,uk;q=0.9,en;q=0.8")), "uk");
        assert_eq!(negotiate(None, Some("de-DE,en;q=0.5,uk;q=0.7")), "uk");
        assert_eq!(negotiate(None, Some("de-DE,fr;q=0.5")), "uk");
        assert_eq!(negotiate(None, Some("en;q=0")), "uk");
        assert_eq!(negotiate(Some("lang=en"), Some("uk")), "en");
        assert_eq!(negotiate(Some("lang=xx"), Some("en")), "en");
        assert_eq!(negotiate(None, Some(";;;q=abc,,")), "uk");
    }

    #[test]
    fn the_page_stays_light() {
        let total: usize = page_files().iter().map(|(_, n)| n).sum();
        assert!(total < 150 * 1024, "the page weighs {total} bytes");
    }

    #[test]
    fn the_policy_frames_only_configured_origins() {
        let p = csp(&[]);
        assert!(p.to_str().unwrap().contains("frame-ancestors 'none'"));
        let p = csp(&[
            "https://admin.example.com".into(),
            "http://127.0.0.1:9".into(),
        ]);
        let p = p.to_str().unwrap();
        assert!(p.contains("frame-ancestors https://admin.example.com http://127.0.0.1:9"));
        assert!(p.contains("script-src 'self'"));
        assert!(!p.contains("unsafe-inline"));
    }

    #[test]
    fn every_asset_the_shell_names_is_served() {
        let assets = PageAssets::new(&[]);
        let (html, _) = &assets.html["uk"];
        let prefix = format!("page/{}/", version());
        let mut named = 0;
        for piece in html.split(&prefix).skip(1) {
            let file = piece.split('"').next().unwrap();
            assert!(assets.files.contains_key(file), "{file} is not served");
            named += 1;
        }
        assert!(named >= 2, "the shell loads its script and style");
        assert!(!html.contains("{{"), "an unfilled placeholder");
    }

    /// The keys of one language's table in i18n.js (`  'key': '…',` lines).
    fn keys_of(lang: &str) -> std::collections::BTreeSet<String> {
        let src = ASSETS.iter().find(|(n, _, _)| *n == "i18n.js").unwrap().2;
        let start = src.find(&format!("const {lang} = {{")).unwrap();
        let body = &src[start..];
        let body = &body[..body.find("\n};").unwrap()];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix('\''))
            .filter_map(|l| l.split_once("':").map(|(k, _)| k.to_string()))
            .collect()
    }

    #[test]
    fn both_languages_have_every_string_the_page_names() {
        let uk = keys_of("uk");
        let en = keys_of("en");
        assert!(uk.len() > 100, "{}", uk.len());
        let only_uk: Vec<_> = uk.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&uk).collect();
        assert!(
            only_uk.is_empty() && only_en.is_empty(),
            "{only_uk:?} {only_en:?}"
        );
        // Every literal key the scripts ask for exists.
        for (name, _, body) in ASSETS {
            for (at, _) in body.match_indices("t('") {
                // `t(` itself, not the end of another name (`insertAdjacentElement('…`).
                let before = body[..at].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                let key = body[at + 3..].split('\'').next().unwrap();
                assert!(uk.contains(key), "{name} asks for a missing string {key}");
            }
        }
    }

    #[test]
    fn modules_import_only_served_files() {
        for (name, _, body) in ASSETS {
            for line in body.lines() {
                let line = line.trim();
                if !(line.starts_with("import ") || line.starts_with("export ")) {
                    continue;
                }
                if let Some(spec) = line.split(" from ").nth(1) {
                    let spec = spec.trim_matches(|c| c == '\'' || c == '"' || c == ';');
                    let file = spec.trim_start_matches("./");
                    assert!(
                        ASSETS.iter().any(|(n, _, _)| *n == file),
                        "{name} imports {spec}, which is not served"
                    );
                }
            }
        }
    }
}
