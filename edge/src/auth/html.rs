//! The pages a person (or `access-edge browse`) sees: one layout with inline
//! CSS and no external assets, so the pages work with no network at all.
//!
//! Every page also says what it is in the `x-access-edge-page` header (and the
//! identity in `x-access-edge-email`), so the headless browser can report the
//! outcome without scraping HTML.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Header naming the kind of page (see [`Page`]).
pub const PAGE_HEADER: &str = "x-access-edge-page";
/// Header carrying the identity a page is about.
pub const EMAIL_HEADER: &str = "x-access-edge-email";

/// The kinds of page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The login form: waiting for someone to approve.
    Login,
    /// Login approved: the token is on its way to the client.
    Approved,
    /// The person refused the login.
    Denied,
    /// The identity is outside the app's policy.
    Forbidden,
    /// The link or form is not valid.
    BadRequest,
    /// The auth domain's sign-in page (no org session).
    SignIn,
    /// A post that is not from a form this edge served for this login (a
    /// forged, stale or replayed approval).
    StaleForm,
}

impl Page {
    pub fn as_str(self) -> &'static str {
        match self {
            Page::Login => "login",
            Page::Approved => "approved",
            Page::Denied => "denied",
            Page::Forbidden => "forbidden",
            Page::BadRequest => "bad-request",
            Page::SignIn => "sign-in",
            Page::StaleForm => "stale-form",
        }
    }

    const ALL: [Page; 7] = [
        Page::Login,
        Page::Approved,
        Page::Denied,
        Page::Forbidden,
        Page::BadRequest,
        Page::SignIn,
        Page::StaleForm,
    ];

    pub fn from_header(value: &str) -> Option<Page> {
        Page::ALL.into_iter().find(|p| p.as_str() == value)
    }

    fn status(self) -> StatusCode {
        match self {
            Page::Forbidden | Page::StaleForm => StatusCode::FORBIDDEN,
            Page::BadRequest => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --accent: #f38020; --fg: #1d1f20; --muted: #5f6368;
        --bg: #f3f4f6; --card: #fff; --line: #d9dce1; --ok: #1e8e3e; --bad: #c5221f; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8eaed; --muted: #9aa0a6; --bg: #16181b; --card: #202327; --line: #3c4043; }
}
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
       font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: var(--bg); color: var(--fg); }
main { background: var(--card); width: min(29rem, 94vw); padding: 2rem 2.25rem 1.5rem;
       border-radius: 14px; box-shadow: 0 2px 18px rgba(0,0,0,.09); }
.brand { font-size: .8rem; letter-spacing: .06em; text-transform: uppercase; color: var(--accent);
         font-weight: 600; margin-bottom: 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 .35rem; }
p { margin: .4rem 0; }
.muted { color: var(--muted); font-size: .93rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; }
.facts { margin: 1rem 0 1.25rem; padding: .7rem .9rem; border: 1px solid var(--line); border-radius: 9px;
         font-size: .9rem; display: grid; grid-template-columns: auto 1fr; gap: .2rem .9rem; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
fieldset { border: 0; margin: 0; padding: 0; }
legend { font-weight: 600; margin-bottom: .5rem; }
label.id { display: flex; gap: .65rem; align-items: center; padding: .6rem .8rem; margin-bottom: .45rem;
           border: 1px solid var(--line); border-radius: 9px; cursor: pointer; }
label.id:has(input:checked) { border-color: var(--accent); }
label.other { display: block; margin: .9rem 0 .35rem; font-size: .93rem; color: var(--muted); }
input[type=email] { width: 100%; padding: .55rem .7rem; font-size: 1rem; color: inherit; background: transparent;
                    border: 1px solid var(--line); border-radius: 9px; }
.actions { display: flex; gap: .75rem; margin-top: 1.3rem; }
button { flex: 1; padding: .65rem; font-size: 1rem; border-radius: 9px; cursor: pointer;
         border: 1px solid var(--line); background: transparent; color: inherit; }
button.approve { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
.mark { font-size: 2rem; line-height: 1; margin-bottom: .5rem; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
footer { margin-top: 1.6rem; font-size: .78rem; color: var(--muted); }
"#;

/// A whole page of `kind`, with `title` and the HTML `body` (already escaped).
pub fn page(kind: Page, title: &str, body: &str, email: Option<&str>) -> Response {
    page_with_script(kind, title, body, email, None)
}

/// A page with an inline script (the auto-close of the success page).
pub fn page_with_script(
    kind: Page,
    title: &str,
    body: &str,
    email: Option<&str>,
    script: Option<&str>,
) -> Response {
    let script = script
        .map(|s| format!("<script>{s}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n<div class=\"brand\">Cloudflare Access · local edge</div>\n{body}\n\
         <footer>Served by access-edge, a local stand-in for the Cloudflare Access edge.</footer>\n\
         </main>\n{script}\n</body>\n</html>\n",
        title = escape(title),
    );
    let mut response = (
        kind.status(),
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(PAGE_HEADER, HeaderValue::from_static(kind.as_str()));
    if let Some(value) = email.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(EMAIL_HEADER, value);
    }
    response
}

/// A short plain-text answer (errors that no browser is meant to see).
pub fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn pages_name_themselves() {
        for p in Page::ALL {
            assert_eq!(Page::from_header(p.as_str()), Some(p));
        }
        let r = page(Page::Forbidden, "t", "<p>x</p>", Some("a@b.c"));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[PAGE_HEADER], "forbidden");
        assert_eq!(r.headers()[EMAIL_HEADER], "a@b.c");
    }
}
