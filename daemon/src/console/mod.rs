//! The web console served at `/`: a single-page app for the developer on a dev box
//! (agents, chat with the official `@21st-sdk/react` components, sandboxes, threads,
//! event logs, permissions, files, commands). Its sources live in `console/`; the
//! bundle is embedded at compile time (`daemon/build.rs`).
//!
//! The page holds no secret: it asks for the API key, keeps it in the tab's
//! `sessionStorage` and sends it as a bearer header to the same `/v1` API as every
//! other client. Served with a strict Content-Security-Policy (scripts and styles
//! from this origin only, connections to this origin only, no framing).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// What the page may load: its own scripts, styles and API, nothing else. (React
/// sets style properties through the DOM, which `style-src 'self'` allows.)
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Shown at `/` when the binary was built without the console bundle.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>sandboxd</title>\
<p>The web console was not built into this binary. Run <code>scripts/serve</code> \
(it builds <code>console/</code> with npm, then the daemon), or \
<code>. scripts/lib.sh &amp;&amp; build_console</code> before <code>cargo build</code>.\
<p>The API is at <code>/v1</code>; see <code>/openapi.json</code>.";

/// The console's routes: `/` and its two assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
}

/// Whether the bundle is embedded (the start-up message says where the console is).
pub fn built() -> bool {
    assets::BUILT
}

async fn index() -> Response {
    if assets::BUILT {
        asset("text/html; charset=utf-8", assets::INDEX_HTML)
    } else {
        asset("text/html; charset=utf-8", NOT_BUILT.as_bytes())
    }
}

async fn app_js() -> Response {
    if !assets::BUILT {
        return StatusCode::NOT_FOUND.into_response();
    }
    asset("text/javascript; charset=utf-8", assets::APP_JS)
}

async fn app_css() -> Response {
    if !assets::BUILT {
        return StatusCode::NOT_FOUND.into_response();
    }
    asset("text/css; charset=utf-8", assets::APP_CSS)
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The binary is the version: a new build must not be masked by a cached asset.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
