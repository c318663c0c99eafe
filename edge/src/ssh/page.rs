//! The browser terminal's page and assets (docs/protocol.md 13.1), built into
//! the binary: it works offline, with no CDN. xterm.js and its fit addon are
//! vendored under `edge/web/vendor/` by `edge/web/update.sh` from the pinned
//! `package-lock.json`; `terminal.js` and `terminal.css` are ours.
//!
//! The page has no inline script (`script-src 'self'`). Styles allow
//! `'unsafe-inline'` because xterm.js's DOM renderer (the one that keeps the
//! text in the DOM for assistive technology) adds a `<style>` element.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::html;

/// Where the assets are served on an app host.
pub(crate) const ASSETS: &str = "/cdn-cgi/access/ssh/assets";

/// The page's Content-Security-Policy.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Name, content type, bytes.
const FILES: [(&str, &str, &[u8]); 7] = [
    (
        "xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/xterm.js"),
    ),
    (
        "xterm.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/vendor/xterm.css"),
    ),
    (
        "addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/addon-fit.js"),
    ),
    (
        "terminal.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/terminal.js"),
    ),
    (
        "terminal.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/terminal.css"),
    ),
    (
        "LICENSE.xterm",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/LICENSE.xterm"),
    ),
    (
        "LICENSE.addon-fit",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/LICENSE.addon-fit"),
    ),
];

/// The terminal page for `email` on the app `app`.
pub(crate) fn page(app: &str, email: &str) -> Response {
    let app = html::escape(app);
    let email = html::escape(email);
    let body = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{app} · terminal</title>
<link rel="stylesheet" href="{ASSETS}/xterm.css">
<link rel="stylesheet" href="{ASSETS}/terminal.css">
</head>
<body data-state="loading" data-app="{app}" data-email="{email}">
<div id="status" role="status" aria-live="polite">Loading the terminal…</div>
<div id="terminal"></div>
<div id="overlay" hidden>
<div id="overlay-box" role="alertdialog" aria-labelledby="overlay-title" aria-describedby="overlay-message">
<h1 id="overlay-title"></h1>
<p id="overlay-message"></p>
<button id="reconnect" type="button">Reconnect</button>
</div>
</div>
<script src="{ASSETS}/xterm.js"></script>
<script src="{ASSETS}/addon-fit.js"></script>
<script src="{ASSETS}/terminal.js"></script>
</body>
</html>
"#
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /cdn-cgi/access/ssh/assets/<file>`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *content_type),
                // The files change only with the binary; a day is enough
                // for a page that is reloaded rarely.
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => html::text(StatusCode::NOT_FOUND, "access-edge: no such asset"),
    }
}
