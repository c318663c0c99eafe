//! The Cloudflare API for Access apps' SSH CAs (docs/protocol.md 11), served
//! at `https://api.cloudflare.com/client/v4` for the edge's one account.
//!
//! - `GET {scope}/access/apps`: the apps in scope, paginated;
//! - `GET {scope}/access/apps/ca`: every CA of the apps in scope;
//! - `POST {scope}/access/apps/{app_id}/ca`: make the app's CA, exactly as
//!   `access-edge ca generate` does (the same files, so `cert_sign` signs
//!   with it at once); an app that has one gets that one back, with 200, so
//!   that a retried POST never replaces a CA every sshd trusts;
//! - `GET` the same path: the CA (404 when none); `DELETE`: remove it, after
//!   which `cert_sign` for the app answers as for an app without CA.
//!
//! `{scope}` is `accounts/{account_id}` for the apps with no `zone_id`, or
//! `zones/{zone_id}` for the apps of that zone. The path is routed by hand,
//! so that every answer, a wrong path or method included, is the API's
//! envelope. The checks run in the order a client can act on: the route
//! (404, 7003), the method (405), the credentials (401, 10000), the scope's
//! id (403), the token's permission for POST and DELETE (403), and last the
//! app (404). Counting, faults and body limits happen before, in the front.

mod credentials;
mod envelope;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use cfaccess::access::edge_profile::ProfileApi;
use serde::Serialize;
use ssh_key::HashAlg;

pub(crate) use credentials::Credentials;
use envelope::{ResultInfo, failure, success};

use crate::ops::config::ApiPermission;
use crate::site::Site;
use crate::ssh::ca::{self as ssh_ca, SshCa};

/// The API's base path.
pub(crate) const BASE: &str = "/client/v4";
/// `per_page` when none is asked for.
const DEFAULT_PER_PAGE: usize = 25;
/// The largest `per_page` (Cloudflare's Access lists take up to 1000).
const MAX_PER_PAGE: usize = 1000;

/// What the API handlers need: the credentials, the apps, and where the
/// CAs are kept.
#[derive(Debug)]
pub(crate) struct Api {
    pub credentials: Credentials,
    apps: Vec<ApiApp>,
    state_dir: PathBuf,
}

/// An app as the API shows it.
#[derive(Debug, Clone)]
struct ApiApp {
    id: String,
    name: String,
    /// The configured hostname: the name its CA is kept under too.
    domain: String,
    aud: String,
    zone_id: Option<String>,
}

/// An app in a list.
#[derive(Serialize)]
struct AppView<'a> {
    id: &'a str,
    name: &'a str,
    domain: &'a str,
    aud: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A CA: `{"id", "aud", "public_key"}`.
#[derive(Debug, Serialize)]
struct CaView {
    id: String,
    aud: String,
    public_key: String,
}

/// The part of the URL before `access/apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Account(String),
    Zone(String),
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Apps,
    AllCas,
    Ca(String),
}

impl Api {
    pub fn new(site: &Site, credentials: Credentials, state_dir: &Path) -> Api {
        Api {
            credentials,
            apps: site
                .apps
                .iter()
                .map(|a| ApiApp {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    domain: a.hostname.clone(),
                    aud: a.aud.clone(),
                    zone_id: a.zone_id.clone(),
                })
                .collect(),
            state_dir: state_dir.to_owned(),
        }
    }

    /// What the edge profile says of the API: the account id and a token
    /// that may edit, when there is one.
    pub fn profile_api(&self) -> Option<ProfileApi> {
        self.credentials.edit_token().map(|token| ProfileApi {
            account_id: self.credentials.account_id.clone(),
            token: token.to_owned(),
        })
    }

    /// The apps listed under `scope` (`None`: the scope is not this edge's).
    fn apps_in(&self, scope: &Scope) -> Option<Vec<&ApiApp>> {
        match scope {
            Scope::Account(id) => id
                .eq_ignore_ascii_case(&self.credentials.account_id)
                .then(|| self.apps.iter().filter(|a| a.zone_id.is_none()).collect()),
            Scope::Zone(id) => {
                let apps: Vec<&ApiApp> = self
                    .apps
                    .iter()
                    .filter(|a| {
                        a.zone_id
                            .as_deref()
                            .is_some_and(|z| z.eq_ignore_ascii_case(id))
                    })
                    .collect();
                (!apps.is_empty()).then_some(apps)
            }
        }
    }
}

/// The router of `api.cloudflare.com`.
pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new().fallback(handle).with_state(api)
}

async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some((scope, route)) = parse_path(&path) else {
        return envelope::no_route(&path);
    };
    let method = request.method().clone();
    let allowed = match route {
        Route::Apps | Route::AllCas => method == Method::GET,
        Route::Ca(_) => [Method::GET, Method::POST, Method::DELETE].contains(&method),
    };
    if !allowed {
        return envelope::method_not_allowed(match route {
            Route::Ca(_) => "GET, POST, DELETE",
            _ => "GET",
        });
    }
    let Some(permission) = api.credentials.check(request.headers()) else {
        tracing::info!(%method, path, "API: refused a request without valid credentials");
        return envelope::authentication(StatusCode::UNAUTHORIZED);
    };
    let Some(apps) = api.apps_in(&scope) else {
        tracing::info!(%method, path, "API: refused a request for another account or zone");
        return envelope::authentication(StatusCode::FORBIDDEN);
    };
    if method != Method::GET && permission < ApiPermission::Edit {
        tracing::info!(%method, path, "API: refused a read-only token's edit");
        return envelope::authentication(StatusCode::FORBIDDEN);
    }
    let query = request.uri().query().unwrap_or_default();
    match route {
        Route::Apps => list_apps(&apps, query),
        Route::AllCas => list_cas(&api.state_dir, &apps, query),
        Route::Ca(id) => {
            let Some(app) = apps.iter().find(|a| a.id.eq_ignore_ascii_case(&id)) else {
                return failure(
                    StatusCode::NOT_FOUND,
                    envelope::UNKNOWN_APP,
                    "access.api.error.invalid_application_id: no Access application with this id here",
                );
            };
            let app = (*app).clone();
            match method {
                Method::POST => create_ca(&api.state_dir, app).await,
                Method::DELETE => delete_ca(&api.state_dir, app).await,
                _ => get_ca(&api.state_dir, &app),
            }
        }
    }
}

/// `/client/v4/{accounts|zones}/{id}/access/apps[/ca | /{app_id}/ca]`.
fn parse_path(path: &str) -> Option<(Scope, Route)> {
    let rest = path.strip_prefix(BASE)?.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let (scope, id, tail) = match segments.as_slice() {
        [scope, id, "access", "apps", tail @ ..] if !id.is_empty() => (*scope, *id, tail),
        _ => return None,
    };
    let scope = match scope {
        "accounts" => Scope::Account(id.to_owned()),
        "zones" => Scope::Zone(id.to_owned()),
        _ => return None,
    };
    let route = match tail {
        [] => Route::Apps,
        ["ca"] => Route::AllCas,
        [app, "ca"] if !app.is_empty() => Route::Ca((*app).to_owned()),
        _ => return None,
    };
    Some((scope, route))
}

/// `page` and `per_page`, checked: the slice of `len` items to show, or
/// what is wrong with them.
fn page(query: &str, len: usize) -> Result<(std::ops::Range<usize>, ResultInfo), String> {
    let mut page = 1;
    let mut per_page = DEFAULT_PER_PAGE;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let target = match name.as_ref() {
            "page" => &mut page,
            "per_page" => &mut per_page,
            _ => continue,
        };
        *target = match value.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(format!("{name}={value:?} is not a whole number from 1")),
        };
    }
    let per_page = per_page.min(MAX_PER_PAGE);
    let start = (page - 1).saturating_mul(per_page).min(len);
    let end = start.saturating_add(per_page).min(len);
    Ok((
        start..end,
        ResultInfo {
            page,
            per_page,
            count: end - start,
            total_count: len,
            total_pages: len.div_ceil(per_page),
        },
    ))
}

fn list_apps(apps: &[&ApiApp], query: &str) -> Response {
    let (range, info) = match page(query, apps.len()) {
        Ok(page) => page,
        Err(message) => {
            return failure(StatusCode::BAD_REQUEST, envelope::BAD_QUERY, &message);
        }
    };
    let views: Vec<AppView<'_>> = apps[range]
        .iter()
        .map(|a| AppView {
            id: &a.id,
            name: &a.name,
            domain: &a.domain,
            aud: &a.aud,
            kind: "self_hosted",
        })
        .collect();
    success(views, Some(info))
}

fn list_cas(state_dir: &Path, apps: &[&ApiApp], query: &str) -> Response {
    let mut cas = Vec::new();
    for app in apps {
        match ssh_ca::load(state_dir, &app.domain) {
            Ok(Some(ca)) => cas.push(view(app, &ca)),
            Ok(None) => {}
            Err(e) => return unreadable(app, &e),
        }
    }
    let (range, info) = match page(query, cas.len()) {
        Ok(page) => page,
        Err(message) => {
            return failure(StatusCode::BAD_REQUEST, envelope::BAD_QUERY, &message);
        }
    };
    let cas: Vec<CaView> = cas.drain(range).collect();
    success(cas, Some(info))
}

fn get_ca(state_dir: &Path, app: &ApiApp) -> Response {
    match ssh_ca::load(state_dir, &app.domain) {
        Ok(Some(ca)) => success(view(app, &ca), None),
        Ok(None) => no_ca(app),
        Err(e) => unreadable(app, &e),
    }
}

async fn create_ca(state_dir: &Path, app: ApiApp) -> Response {
    let dir = state_dir.to_owned();
    let domain = app.domain.clone();
    let made = tokio::task::spawn_blocking(move || ssh_ca::generate(&dir, &domain, None)).await;
    match made {
        Ok(Ok(generated)) => {
            if generated.created {
                tracing::info!(app = %app.domain, "API: made the app's SSH CA");
            }
            success(view(&app, &generated.ca), None)
        }
        Ok(Err(e)) => unreadable(&app, &e),
        Err(e) => internal(&app, &e),
    }
}

async fn delete_ca(state_dir: &Path, app: ApiApp) -> Response {
    let dir = state_dir.to_owned();
    let domain = app.domain.clone();
    let removed = tokio::task::spawn_blocking(move || ssh_ca::remove(&dir, &domain)).await;
    match removed {
        Ok(Ok(Some(ca))) => {
            tracing::info!(app = %app.domain, "API: removed the app's SSH CA");
            success(serde_json::json!({ "id": ca_id(&ca) }), None)
        }
        Ok(Ok(None)) => no_ca(&app),
        Ok(Err(e)) => unreadable(&app, &e),
        Err(e) => internal(&app, &e),
    }
}

fn view(app: &ApiApp, ca: &SshCa) -> CaView {
    CaView {
        id: ca_id(ca),
        aud: app.aud.clone(),
        public_key: ca.public_line(),
    }
}

/// A CA's id: the first 48 hex digits of its key's SHA-256 fingerprint, so
/// it names the key and changes with it.
fn ca_id(ca: &SshCa) -> String {
    let fingerprint = ca.private_key().public_key().fingerprint(HashAlg::Sha256);
    let mut id = hex::encode(fingerprint.as_bytes());
    id.truncate(48);
    id
}

fn no_ca(app: &ApiApp) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        envelope::NO_CA,
        &format!(
            "access.api.error.not_found: the application {} has no SSH CA (POST to this path makes one)",
            app.domain
        ),
    )
}

fn unreadable(app: &ApiApp, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(app = %app.domain, "API: the SSH CA cannot be used: {e}");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        envelope::INTERNAL,
        &format!(
            "the SSH CA of {} cannot be used (see the edge's log)",
            app.domain
        ),
    )
}

fn internal(app: &ApiApp, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(app = %app.domain, "API: {e}");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        envelope::INTERNAL,
        "the edge failed (see its log)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_by_scope_and_shape() {
        let account = |id: &str| Scope::Account(id.to_owned());
        assert_eq!(
            parse_path("/client/v4/accounts/abc/access/apps"),
            Some((account("abc"), Route::Apps))
        );
        assert_eq!(
            parse_path("/client/v4/accounts/abc/access/apps/"),
            Some((account("abc"), Route::Apps))
        );
        assert_eq!(
            parse_path("/client/v4/zones/z/access/apps/ca"),
            Some((Scope::Zone("z".into()), Route::AllCas))
        );
        assert_eq!(
            parse_path("/client/v4/accounts/abc/access/apps/u-1/ca"),
            Some((account("abc"), Route::Ca("u-1".into())))
        );
        for bad in [
            "/client/v4",
            "/client/v4/accounts/abc",
            "/client/v4/users/abc/access/apps",
            "/client/v4/accounts//access/apps",
            "/client/v4/accounts/abc/access/apps/u-1",
            "/client/v4/accounts/abc/access/apps/u-1/ca/x",
            "/v4/accounts/abc/access/apps",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_slice_and_say_where_they_are() {
        let (range, info) = page("", 30).unwrap();
        assert_eq!(range, 0..25);
        assert_eq!(
            info,
            ResultInfo {
                page: 1,
                per_page: 25,
                count: 25,
                total_count: 30,
                total_pages: 2
            }
        );
        let (range, info) = page("page=2&per_page=25", 30).unwrap();
        assert_eq!((range, info.count), (25..30, 5));
        let (range, info) = page("page=9", 30).unwrap();
        assert_eq!((range, info.count, info.page), (30..30, 0, 9));
        assert_eq!(page("per_page=5000", 3).unwrap().1.per_page, 1000);
        assert!(page("page=0", 3).unwrap_err().contains("page=\"0\""));
        assert!(page("per_page=x", 3).is_err());
    }
}
