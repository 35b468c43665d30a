//! Headless Chromium, driven over the DevTools protocol, for tests of pages
//! a service serves (feature `browser`).
//!
//! [`Browser::launch`] starts `/usr/bin/chromium` (or `$CHROMIUM`) headless,
//! without a sandbox or a GPU, with a fresh profile in a temporary folder;
//! [`Browser::open`] opens a [`Tab`] that records every JavaScript error the
//! page logs (`console.error`, a failed `console.assert`, an uncaught
//! exception or rejected promise, a browser error such as a failed load or
//! a blocked script). A tab reads the page with [`Tab::eval`] and waits for
//! it with [`Tab::wait_for`], which polls an expression until it holds, for
//! at most [`PATIENCE`].
//!
//! [`Browser::close`] closes the browser (killing it if it does not exit in
//! time); dropping a [`Browser`] kills it and its helper processes, and a
//! watchdog process does the same and removes its profile if the test
//! process dies without dropping it.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() {
//! use tidewater_testkit::browser::Browser;
//!
//! let browser = Browser::launch().await.unwrap();
//! let tab = browser.open("http://127.0.0.1:8080/dashboard").await;
//! tab.wait_for::<bool>("the first render", "document.body.dataset.ready === 'true' || null").await;
//! let pool: String = tab.eval("document.querySelector('main').dataset.pool").await;
//! assert!(tab.js_errors().is_empty(), "{:?}", tab.js_errors());
//! browser.close().await;
//! # }
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EvaluateParams, EventConsoleApiCalled, EventExceptionThrown, RemoteObject,
};
use chromiumoxide::{BrowserConfig, Page};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::watchdog::Watchdog;
use crate::{lock, procfs};

/// Where Chromium is looked for when `$CHROMIUM` is not set.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long a launch, a navigation, one evaluation or one
/// [`Tab::wait_for`] may take: generous, for a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long [`Browser::close`] waits for the browser to exit before
/// killing it.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// The browser's flags: headless, no sandbox (tests may run as root), no
/// GPU, no traffic of its own (loopback only), no first-run dialogs.
const ARGS: [&str; 14] = [
    "headless",
    "no-sandbox",
    "disable-gpu",
    "disable-background-networking",
    "no-first-run",
    "no-default-browser-check",
    "disable-dev-shm-usage",
    "disable-component-update",
    "disable-sync",
    "disable-breakpad",
    "hide-scrollbars",
    "mute-audio",
    "password-store=basic",
    "use-mock-keychain",
];

/// Kills every process of the browser (each has the profile's
/// `--user-data-dir` among its arguments), then removes the profile.
const CLEANUP: &str = r#"
profile=$1
for round in 1 2; do
  for cmdline in /proc/[0-9]*/cmdline; do
    if tr '\0' '\n' < "$cmdline" | grep -qxF -- "--user-data-dir=$profile"; then
      pid=${cmdline#/proc/}
      kill -KILL "${pid%/cmdline}"
    fi
  done 2>/dev/null
done
rm -rf "$profile"
"#;

/// A headless Chromium of the test's own. See the [module
/// documentation](self).
pub struct Browser {
    browser: chromiumoxide::Browser,
    /// Drives the DevTools connection; aborted when dropped.
    handler: JoinHandle<()>,
    /// Removed after the browser is gone (fields drop in order).
    _profile: tempfile::TempDir,
    _watchdog: Watchdog,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("websocket", self.browser.websocket_address())
            .finish_non_exhaustive()
    }
}

/// Chromium's path: `$CHROMIUM`, else [`DEFAULT_CHROMIUM`].
///
/// # Errors
/// `NotFound`, saying how to install it, when no executable is there.
pub fn chromium() -> io::Result<PathBuf> {
    let (path, from) = match std::env::var_os("CHROMIUM") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "$CHROMIUM"),
        _ => (PathBuf::from(DEFAULT_CHROMIUM), "the default path"),
    };
    let executable = std::fs::metadata(&path).is_ok_and(|meta| {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    });
    if executable {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the browser tests need headless Chromium, and {} ({from}) is not an executable: \
                 install Debian's `chromium` package (apt-get install chromium; scripts/test does) \
                 or set CHROMIUM to a Chromium or Chrome binary",
                path.display()
            ),
        ))
    }
}

impl Browser {
    /// Starts headless Chromium with a fresh profile, within [`PATIENCE`].
    ///
    /// # Errors
    /// No Chromium (see [`chromium`]), or one that does not start.
    pub async fn launch() -> io::Result<Self> {
        let executable = chromium()?;
        let profile = tempfile::Builder::new()
            .prefix("tidewater-chromium-")
            .tempdir()?;
        let config = BrowserConfig::builder()
            .chrome_executable(&executable)
            .disable_default_args()
            .args(ARGS)
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1280, 1000)
            .viewport(None)
            .launch_timeout(PATIENCE)
            .request_timeout(PATIENCE)
            .build()
            .map_err(io::Error::other)?;
        let (browser, mut handler) = timeout(
            PATIENCE + Duration::from_secs(5),
            chromiumoxide::Browser::launch(config),
        )
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not start within {PATIENCE:?}", executable.display()),
            )
        })?
        .map_err(|error| {
            io::Error::other(format!("{} did not start: {error}", executable.display()))
        })?;
        let watchdog = Watchdog::spawn(CLEANUP, &[profile.path().as_os_str()])?;
        // The protocol's messages flow only while the handler is polled. An
        // event it cannot parse (a newer browser's) is not fatal.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Ok(Self {
            browser,
            handler,
            _profile: profile,
            _watchdog: watchdog,
        })
    }

    /// Opens a tab on `url` and returns once the page has loaded (within
    /// [`PATIENCE`]); the tab records the page's JavaScript errors from
    /// the start.
    ///
    /// # Panics
    /// When the page does not load.
    pub async fn open(&self, url: &str) -> Tab {
        let page = bounded("opening a tab", self.browser.new_page("about:blank")).await;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut listeners = Vec::new();

        let mut console =
            bounded("listening", page.event_listener::<EventConsoleApiCalled>()).await;
        let sink = errors.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(event) = console.next().await {
                if matches!(
                    event.r#type,
                    ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert
                ) {
                    let text: Vec<String> = event.args.iter().map(describe).collect();
                    record(
                        &sink,
                        format!("console.{:?}: {}", event.r#type, text.join(" ")),
                    );
                }
            }
        }));
        let mut thrown = bounded("listening", page.event_listener::<EventExceptionThrown>()).await;
        let sink = errors.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(event) = thrown.next().await {
                let details = &event.exception_details;
                let mut text = format!("uncaught: {}", details.text);
                if let Some(exception) = &details.exception {
                    let _ = write!(text, " {}", describe(exception));
                }
                if let Some(url) = &details.url {
                    let _ = write!(
                        text,
                        " at {url}:{}:{}",
                        details.line_number + 1,
                        details.column_number + 1
                    );
                }
                record(&sink, text);
            }
        }));
        let mut logged = bounded("listening", page.event_listener::<EventEntryAdded>()).await;
        let sink = errors.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(event) = logged.next().await {
                let entry = &event.entry;
                if entry.level == LogEntryLevel::Error {
                    record(
                        &sink,
                        format!(
                            "browser {:?} error: {} ({})",
                            entry.source,
                            entry.text,
                            entry.url.as_deref().unwrap_or("-")
                        ),
                    );
                }
            }
        }));

        bounded(&format!("loading {url}"), page.goto(url)).await;
        bounded(&format!("loading {url}"), page.wait_for_navigation()).await;
        Tab {
            page,
            errors,
            listeners,
        }
    }

    /// Closes the browser and waits for it to exit; kills it if it has not
    /// within a few seconds.
    pub async fn close(mut self) {
        let closed = timeout(CLOSE_PATIENCE, async {
            let _ = self.browser.close().await;
            let _ = self.browser.wait().await;
        })
        .await;
        if closed.is_err() {
            let _ = self.browser.kill().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
        // After `close`, nothing is left; otherwise (a failing test) the
        // browser and its helpers, which would write to the profile while
        // it is being removed. Then the profile goes, and the watchdog.
        kill_all(self._profile.path());
    }
}

/// Kills every process started with `profile` as its `--user-data-dir`, and
/// waits (at most a few seconds) until they are gone.
fn kill_all(profile: &std::path::Path) {
    let arg = format!("--user-data-dir={}", profile.display());
    let deadline = std::time::Instant::now() + CLOSE_PATIENCE;
    loop {
        let running = procfs::with_arg(&arg);
        if running.is_empty() || std::time::Instant::now() >= deadline {
            return;
        }
        for pid in running {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One page of a [`Browser`], and the JavaScript errors it logged.
pub struct Tab {
    page: Page,
    errors: Arc<Mutex<Vec<String>>>,
    listeners: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Tab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tab")
            .field("errors", &*lock(&self.errors))
            .finish_non_exhaustive()
    }
}

impl Tab {
    /// The value of JavaScript `expression` in the page (awaited when a
    /// promise), as `T`.
    ///
    /// # Panics
    /// When it throws, takes longer than [`PATIENCE`], or is not a `T`.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        let value = self
            .try_eval(expression)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        serde_json::from_value(value.clone()).unwrap_or_else(|error| {
            panic!("`{expression}` gave {value}, which does not read as expected: {error}")
        })
    }

    /// Evaluates `expression` until it gives something other than `null`
    /// or `false`, every 50 ms, and returns that as `T`.
    ///
    /// # Panics
    /// After [`PATIENCE`], naming `what`, the page's JavaScript errors and
    /// the last outcome.
    pub async fn wait_for<T: DeserializeOwned>(&self, what: &str, expression: &str) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let outcome = self.try_eval(expression).await;
            match &outcome {
                Ok(value) if !value.is_null() && *value != Value::Bool(false) => {
                    return serde_json::from_value(value.clone()).unwrap_or_else(|error| {
                        panic!("{what}: `{expression}` gave {value}, which does not read as expected: {error}")
                    });
                }
                _ if Instant::now() >= deadline => panic!(
                    "{what}: still not so after {PATIENCE:?}; last: {outcome:?}; JavaScript errors: {:?}",
                    self.js_errors()
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Every JavaScript error the page logged so far, each distinct one
    /// once, in the order first seen.
    pub fn js_errors(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }

    /// Navigates to `url` and waits for it to load.
    ///
    /// # Panics
    /// When it does not load within [`PATIENCE`].
    pub async fn goto(&self, url: &str) {
        bounded(&format!("loading {url}"), self.page.goto(url)).await;
        bounded(&format!("loading {url}"), self.page.wait_for_navigation()).await;
    }

    /// The underlying page, for what the helpers do not cover.
    pub fn page(&self) -> &Page {
        &self.page
    }

    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(|error| format!("`{expression}`: {error}"))?;
        match timeout(PATIENCE, self.page.evaluate_expression(params)).await {
            Err(_) => Err(format!("`{expression}` gave no answer within {PATIENCE:?}")),
            Ok(Err(error)) => Err(format!("`{expression}` failed: {error}")),
            Ok(Ok(result)) => Ok(result.value().cloned().unwrap_or(Value::Null)),
        }
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Adds `error` to `errors` unless it is there already (a bug in a page
/// that redraws every second would repeat it every second).
fn record(errors: &Mutex<Vec<String>>, error: String) {
    let mut errors = lock(errors);
    if !errors.contains(&error) {
        errors.push(error);
    }
}

/// A console argument or an exception as text.
fn describe(object: &RemoteObject) -> String {
    match (&object.value, &object.description) {
        (Some(Value::String(text)), _) => text.clone(),
        (Some(value), _) => value.to_string(),
        (None, Some(description)) => description.clone(),
        (None, None) => format!("{:?}", object.r#type),
    }
}

/// `step` within [`PATIENCE`], or a panic naming `what`.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> T {
    match timeout(PATIENCE, step).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what}: no answer within {PATIENCE:?}"),
    }
}
