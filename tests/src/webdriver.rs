//! A small W3C WebDriver client for the browser tests: headless Chromium driven through
//! ChromeDriver over HTTP, with the `reqwest` client the tests already use.
//!
//! Only what the settings-page tests need: sessions, navigation, elements, clicks and typing,
//! the keyboard (actions), scripts, full-page screenshots, the browser console log
//! (ChromeDriver's `goog:loggingPrefs`) and permissions (the clipboard). Chromium is started
//! with a fresh profile and every flag that keeps it from reaching for the network (the CI
//! machine has none, and Chromium would otherwise hang on background connections).
//!
//! [`require`] finds the binaries (`CHROMIUM`/`CHROMEDRIVER` or the Debian paths) and fails
//! with instructions when they are missing, like the emulator helper: a green run means the
//! page really ran in a browser.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// W3C key codes.
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
    pub const SPACE: &str = "\u{E00D}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const DOWN: &str = "\u{E015}";
}

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Paths of Chromium and ChromeDriver; panics with instructions when either is missing.
pub fn require() -> (PathBuf, PathBuf) {
    let find = |env: &str, candidates: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(env) {
            return Some(PathBuf::from(p));
        }
        candidates.iter().map(PathBuf::from).find(|p| p.is_file())
    };
    let chromium = find(
        "CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    );
    let driver = find(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        _ => panic!(
            "the browser tests need Chromium and ChromeDriver. Run the whole suite with \
             `bash infra/scripts/test-all.sh` (it installs the Debian packages `chromium` and \
             `chromium-driver` when missing), install them yourself \
             (`apt-get install chromium chromium-driver`), or point CHROMIUM and CHROMEDRIVER \
             at the binaries"
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("chromedriver: {0}")]
    Driver(String),
    #[error("HTTP to chromedriver: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{command}: {error}: {message}")]
    Command {
        command: String,
        error: String,
        message: String,
    },
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

pub type Result<T> = std::result::Result<T, WebDriverError>;

/// A running ChromeDriver, stopped (by its PID) when dropped.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a browser session starts.
#[derive(Clone, Debug)]
pub struct BrowserOptions {
    pub width: u32,
    pub height: u32,
    /// The browser's `Accept-Language` (`uk`, `en-US,en`).
    pub accept_language: String,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            width: 1280,
            height: 1000,
            accept_language: "uk-UA,uk".into(),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9515)
}

impl Driver {
    pub async fn start() -> Result<Driver> {
        let (chromium, driver) = require();
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| WebDriverError::Driver(format!("{}: {e}", driver.display())))?;
        let d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            chromium,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return Ok(d);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Driver("not ready after 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless Chromium with a fresh profile.
    pub async fn browser(&self, opts: BrowserOptions) -> Result<Browser> {
        let profile = std::env::temp_dir().join(format!(
            "shop-keycrm-chromium-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={},{}", opts.width, opts.height),
                ],
                "prefs": {"intl.accept_languages": opts.accept_language},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = post(
            &self.http,
            &format!("{}/session", self.url),
            &caps,
            "new session",
        )
        .await?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Driver(format!("no session id in {v}")))?;
        Ok(Browser {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.url),
            profile,
        })
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value, what: &str) -> Result<Value> {
    let r = http.post(url).json(body).send().await?;
    unwrap(r, what).await
}

async fn unwrap(r: reqwest::Response, what: &str) -> Result<Value> {
    let v: Value = r.json().await?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if let Some(err) = value.get("error").and_then(Value::as_str) {
        return Err(WebDriverError::Command {
            command: what.to_string(),
            error: err.to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    Ok(value)
}

/// One console entry of the page.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// A browser session; closed (and its profile removed) by [`Browser::quit`].
pub struct Browser {
    http: reqwest::Client,
    base: String,
    profile: PathBuf,
}

/// An element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = &body {
            req = req.json(b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let r = req.send().await?;
        unwrap(r, &format!("{method} {path}")).await
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    pub async fn current_url(&self) -> Result<String> {
        let v = self.cmd(reqwest::Method::GET, "/url", None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs a script (`return …` to get a value); arguments may be elements.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs an asynchronous script: its last argument is the callback to call with the result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub async fn find(&self, css: &str) -> Result<Element> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        element_of(&v).ok_or_else(|| WebDriverError::Driver(format!("no element in {v}")))
    }

    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(element_of).collect())
            .unwrap_or_default())
    }

    /// Waits until `css` matches a displayed element.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.find(css).await {
                if self.displayed(&el).await.unwrap_or(false) {
                    return Ok(el);
                }
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Timeout(css.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a script returns something truthy; returns that value.
    pub async fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execute(script, vec![]).await?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Timeout(what.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn displayed(&self, el: &Element) -> Result<bool> {
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{}/displayed", el.0),
                None,
            )
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.wait_for(css, Duration::from_secs(10)).await?;
        self.click_el(&el).await
    }

    pub async fn click_el(&self, el: &Element) -> Result<()> {
        // Into view first: the sticky save bar may cover an element at the bottom edge.
        self.execute(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![el.as_arg()],
        )
        .await?;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", el.0),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Types into the element (after what it holds).
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self.wait_for(css, Duration::from_secs(10)).await?;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    pub async fn clear(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Chooses an `<option>` of a `<select>` by its value, as a user would (a change event).
    pub async fn select_value(&self, css: &str, value: &str) -> Result<()> {
        self.wait_for(css, Duration::from_secs(10)).await?;
        let ok = self
            .execute(
                "const s = document.querySelector(arguments[0]);
                 const o = [...s.options].find(o => o.value === arguments[1]);
                 if (!o) return false;
                 s.focus(); s.value = o.value;
                 s.dispatchEvent(new Event('input', {bubbles: true}));
                 s.dispatchEvent(new Event('change', {bubbles: true}));
                 return true;",
                vec![json!(css), json!(value)],
            )
            .await?;
        if ok != Value::Bool(true) {
            return Err(WebDriverError::Driver(format!(
                "{css} has no option {value}"
            )));
        }
        Ok(())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        let el = self.find(css).await?;
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{}/text", el.0),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Presses keys one after another (each down then up), on whatever has the focus.
    pub async fn press(&self, keys: &[&str]) -> Result<()> {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await
        .map(|_| ())
    }

    /// Shift+Tab.
    pub async fn press_shift_tab(&self) -> Result<()> {
        let actions = json!([
            {"type": "keyDown", "value": keys::SHIFT},
            {"type": "keyDown", "value": keys::TAB},
            {"type": "keyUp", "value": keys::TAB},
            {"type": "keyUp", "value": keys::SHIFT},
        ]);
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await
        .map(|_| ())
    }

    /// Grants or denies a permission (`clipboard-read`, `clipboard-write`) to the page.
    pub async fn set_permission(&self, name: &str, state: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/permissions",
            Some(json!({"descriptor": {"name": name}, "state": state})),
        )
        .await
        .map(|_| ())
    }

    /// The console entries since the last call (ChromeDriver hands each out once).
    pub async fn logs(&self) -> Result<Vec<LogEntry>> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        source: e["source"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Continues in the given `<iframe>`.
    pub async fn switch_to_frame(&self, frame: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/frame",
            Some(json!({ "id": frame.as_arg() })),
        )
        .await
        .map(|_| ())
    }

    /// Back to the top-level document.
    pub async fn switch_to_top(&self) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/frame", Some(json!({ "id": null })))
            .await
            .map(|_| ())
    }

    pub async fn window_handles(&self) -> Result<Vec<String>> {
        let v = self
            .cmd(reqwest::Method::GET, "/window/handles", None)
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn switch_to_window(&self, handle: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window",
            Some(json!({ "handle": handle })),
        )
        .await
        .map(|_| ())
    }

    pub async fn set_window(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(|_| ())
    }

    /// A screenshot of the whole page: the window is stretched to the document's height for
    /// the shot and put back afterwards.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let rect = self.cmd(reqwest::Method::GET, "/window/rect", None).await?;
        let (w, h) = (
            rect["width"].as_u64().unwrap_or(1280) as u32,
            rect["height"].as_u64().unwrap_or(1000) as u32,
        );
        let full = self
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight)",
                vec![],
            )
            .await?
            .as_u64()
            .unwrap_or(u64::from(h)) as u32;
        self.set_window(w, full.clamp(h, 12_000) + 120).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        self.set_window(w, h).await?;
        let b64 = v?;
        let bytes = base64_decode(b64.as_str().unwrap_or_default())
            .ok_or_else(|| WebDriverError::Driver("screenshot is not base64".into()))?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, bytes).map_err(|e| WebDriverError::Driver(e.to_string()))
    }
}

impl Element {
    /// The element as a script argument.
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

fn element_of(v: &Value) -> Option<Element> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|s| Element(s.to_string()))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGk=").unwrap(), b"hi");
        assert!(super::base64_decode("a$b").is_none());
    }
}
