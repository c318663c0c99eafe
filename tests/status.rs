// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! What scripts and people switching accounts rely on: `status --json` and
//! its schema, `status <url>`'s exit code, `token --json`, `logout --team`
//! (and what plain `logout <url>` keeps), and a second config dir that the
//! printed ssh config carries by itself (`--config-dir`), with `ssh -G` and
//! a real ssh session with `CFACCESS_DIR` unset.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use access_edge::CaKeyType;
use common::sshd::{Sshd, current_user};
use common::*;
use serde_json::Value;

const OTHER: &str = "https://other.demo.test";
const OTHER_HOST: &str = "other.demo.test";
const SECOND: &str = "second@example.com";

/// The demo edge with a second app of the same team, and a second identity.
fn env() -> TestEnv {
    TestEnv::with(|opts| {
        let mut other = opts.config.apps[0].clone();
        other.hostname = OTHER_HOST.into();
        other.aud = None;
        opts.config.apps.push(other);
        opts.config.identities.push(SECOND.to_owned());
    })
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

#[test]
fn status_json_has_the_documented_schema() {
    let env = TestEnv::with(|opts| {
        opts.config.apps[0].origin = Some("127.0.0.1:9".into());
    });
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let token = env.login();
    env.run(&["ssh-gen", "--hostname", APP_HOST]).success();
    let run = env.run(&["status", "--json"]);
    run.success();
    assert!(!run.stdout.contains(&token), "no token in the status");
    let s = json(&run);
    assert_eq!(s["version"], 1);
    assert_eq!(s["config_dir"], env.dir.display().to_string());
    assert!(s["url"].is_null());
    let now = s["now"].as_i64().unwrap();

    let apps = s["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{s:#}");
    let app = &apps[0];
    assert_eq!(app["app"], APP_HOST);
    assert_eq!(app["aud"], env.aud());
    assert_eq!(app["team"], AUTH_DOMAIN);
    assert_eq!(app["email"], EMAIL);
    assert_eq!(app["valid"], true);
    assert_eq!(app["expires"], claims(&token)["exp"]);
    assert_eq!(
        app["seconds_left"].as_i64().unwrap(),
        app["expires"].as_i64().unwrap() - now
    );
    assert_eq!(app["file"], env.token_file().display().to_string());

    let teams = s["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0]["team"], AUTH_DOMAIN);
    assert_eq!(teams[0]["email"], EMAIL);
    assert_eq!(teams[0]["valid"], true);

    let certs = s["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    let cert = &certs[0];
    assert_eq!(cert["host"], APP_HOST);
    assert_eq!(cert["team"], AUTH_DOMAIN);
    assert_eq!(cert["principals"], serde_json::json!(["tester"]));
    assert_eq!(cert["valid"], true);
    assert!(cert["valid_after"].as_i64().unwrap() <= now);
    assert!(
        (100..=180).contains(&cert["seconds_left"].as_i64().unwrap()),
        "{cert:#}"
    );
    assert!(cert["key_id"].is_string());

    assert_eq!(
        s["identities"],
        serde_json::json!([{"email": EMAIL, "teams": [AUTH_DOMAIN], "apps": [APP_HOST]}])
    );
    // every key of the documented schema, and no other
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&s),
        [
            "apps",
            "certificates",
            "config_dir",
            "identities",
            "now",
            "teams",
            "url",
            "version"
        ]
    );
    assert_eq!(
        keys(app),
        [
            "app",
            "aud",
            "email",
            "expires",
            "file",
            "seconds_left",
            "team",
            "valid"
        ]
    );
    assert_eq!(
        keys(cert),
        [
            "expires",
            "file",
            "host",
            "key_id",
            "principals",
            "seconds_left",
            "team",
            "valid",
            "valid_after"
        ]
    );
}

#[test]
fn status_of_an_app_fails_when_nothing_of_it_is_valid() {
    let env = env();
    let nothing = env.run(&["status", APP]);
    assert_eq!(nothing.code, Some(1), "{nothing:#?}");
    assert!(
        nothing
            .error_line()
            .starts_with("error: nothing valid for ssh.demo.test in "),
        "{nothing:#?}"
    );
    assert!(
        nothing
            .error_line()
            .contains("hint: run `cfaccess login https://ssh.demo.test"),
        "{nothing:#?}"
    );
    env.login();
    let ok = env.run(&["status", APP]);
    ok.success();
    assert!(
        ok.stdout.contains(APP_HOST) && ok.stdout.contains(AUTH_DOMAIN),
        "{ok:#?}"
    );
    // an app never visited: status asks nobody, so it knows nothing of it
    let other = env.run(&["status", "--json", OTHER]);
    assert_eq!(other.code, Some(1), "{other:#?}");
    let s = json(&other);
    assert_eq!(s["url"], OTHER_HOST);
    assert_eq!(s["apps"], serde_json::json!([]));
    assert_eq!(s["teams"], serde_json::json!([]), "{s:#}");
    // an expired token counts as nothing
    env.edge
        .set_token_lifetimes(Duration::from_secs(1), Duration::from_secs(3600));
    env.run(&["logout", APP]).success();
    env.login();
    wait_for(Duration::from_secs(10), "the token to expire", || {
        env.run(&["status", APP]).code == Some(1)
    });
    let expired = env.run(&["status", "--json", APP]);
    assert_eq!(json(&expired)["apps"][0]["valid"], false);
}

#[test]
fn token_json_gives_the_expiry_identity_and_audience() {
    let env = TestEnv::new();
    let token = env.login();
    let run = env.run(&["token", "--json", APP]);
    run.success();
    let t = json(&run);
    assert_eq!(
        t,
        serde_json::json!({
            "token": token,
            "exp": claims(&token)["exp"],
            "email": EMAIL,
            "aud": env.aud(),
        })
    );
    let plain = env.run(&["access", "token", "-app", APP]);
    assert_eq!(
        plain.stdout, token,
        "without --json, the bare token as before"
    );
}

#[test]
fn logout_keeps_the_team_and_logout_team_switches_accounts() {
    let env = env();
    env.login();
    env.run(&["login", "--no-verbose", OTHER]).success();
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1, "one browser login");
    let status = env.run(&["status"]);
    assert!(
        status.stdout.contains(&format!(
            "Teams (single sign-on: a login to any of their apps signs in as this identity)\n  \
             {AUTH_DOMAIN:<32} {EMAIL:<28} valid for"
        )),
        "status names the team's identity: {status:#?}"
    );
    assert!(
        status.stdout.contains("cfaccess logout --team <app url>"),
        "{status:#?}"
    );

    // another account approves from now on
    env.edge.set_auto_approve(Some(SECOND.into()));
    // plain logout of one app: the team's sign-on stays, so the same person comes back
    let one = env.run(&["logout", APP]);
    one.success();
    assert!(
        one.stderr
            .contains("removed 1 token and 0 ssh certificates"),
        "{one:#?}"
    );
    assert!(env.org_token_file().exists());
    let again = env.login();
    assert_eq!(claims(&again)["email"], EMAIL);
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1, "no browser");

    // --team: the team's org token and every token it issued go
    let team = env.run(&["logout", "--team", APP]);
    team.success();
    assert!(
        team.stderr.contains(&format!(
            "Logged out of ssh.demo.test and its team {AUTH_DOMAIN}: removed 3 tokens"
        )),
        "{team:#?}"
    );
    assert!(!env.org_token_file().exists());
    assert!(
        !env.dir_entries().iter().any(|f| f.ends_with("-token")),
        "{:?}",
        env.dir_entries()
    );
    let switched = env.login();
    assert_eq!(
        claims(&switched)["email"],
        SECOND,
        "the next login asks who you are"
    );
    assert_eq!(env.edge.count(Endpoint::LoginPage), 2);
    let json = json(&env.run(&["status", "--json"]));
    assert_eq!(json["teams"][0]["email"], SECOND);

    let unknown = env.run(&["logout", "--team", "https://unknown.example.com"]);
    unknown.failure(1);
    assert!(
        unknown
            .error_line()
            .contains("cannot tell which team unknown.example.com belongs to"),
        "{unknown:#?}"
    );
}

#[test]
fn help_explains_the_logout_default_and_the_json_outputs() {
    let env = TestEnv::new();
    let logout = env.run(&["logout", "--help"]);
    logout.success();
    for expected in [
        "the team's single sign-on (its org token) stays",
        "To switch accounts, add --team",
        "cfaccess logout --team https://app.example.com",
    ] {
        assert!(
            logout.stdout.contains(expected),
            "{expected:?}: {}",
            logout.stdout
        );
    }
    let status = env.run(&["status", "--help"]);
    assert!(
        status
            .stdout
            .contains("0 when its token or certificate is, else 1"),
        "{}",
        status.stdout
    );
    let token = env.run(&["token", "--help"]);
    assert!(
        token.stdout.contains(r#"{"token","exp","email","aud"}"#),
        "{}",
        token.stdout
    );
}

/// A second profile: a config dir of its own, named only in the printed
/// ssh config, not in the environment ssh runs with.
#[test]
fn the_printed_config_carries_a_moved_config_dir_by_itself() {
    let me = current_user();
    let port = common::sshd::free_port();
    let env = TestEnv::with(|opts| {
        opts.auto_approve = Some(format!("{me}@example.com"));
        opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
    });
    let ca = env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let ca_file = env.tmp.path().join("trusted_user_ca_keys");
    let sshd = Sshd::trusting_ca(port, &ca_file, &ca);
    let profile = env.tmp.path().join("work profile");
    let printed = env.run(&[
        "--config-dir",
        profile.to_str().unwrap(),
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--short-lived-cert",
    ]);
    printed.success();
    let config = env.tmp.path().join("ssh_config");
    std::fs::write(&config, &printed.stdout).unwrap();
    let quoted = format!("'{}'", profile.display());
    assert!(
        printed
            .stdout
            .contains(&format!("access ssh --hostname %h --config-dir {quoted}\n")),
        "{printed:#?}"
    );

    // what ssh itself makes of it, with no variable set
    let unset = |cmd: &mut Command| {
        env.isolate(cmd);
        cmd.env_remove("CFACCESS_DIR");
    };
    let mut g = common::sshd::ssh_with_config(&config);
    g.arg("-G").arg(APP_HOST);
    unset(&mut g);
    let g = run_with_deadline(g, Duration::from_secs(30));
    g.success();
    let exe = env!("CARGO_BIN_EXE_cfaccess");
    assert!(
        g.stdout.contains(&format!(
            "proxycommand {exe} access ssh --hostname %h --config-dir {quoted}\n"
        )),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout.contains(&format!(
            "certificatefile {}/%h-cf_key-cert.pub\n",
            profile.display()
        )),
        "{}",
        g.stdout
    );

    // (ssh -G ran the Match exec already: ssh-gen logged in into the profile)
    let mut ssh = common::sshd::ssh_with_config(&config);
    ssh.arg(APP_HOST).arg("whoami");
    unset(&mut ssh);
    let run = run_with_deadline(ssh, Duration::from_secs(120));
    run.success();
    assert_eq!(run.stdout, format!("{me}\n"));
    assert!(sshd.log_text().contains("ECDSA-CERT"));
    let in_profile: Vec<PathBuf> = std::fs::read_dir(&profile)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        in_profile
            .iter()
            .any(|p| p.ends_with(format!("{APP_HOST}-cf_key-cert.pub"))),
        "{in_profile:?}"
    );
    assert!(
        !env.home.join(".cloudflared").exists() && !env.dir.exists(),
        "nothing went to the default dir or CFACCESS_DIR"
    );
    // and the profile's status, asked the same way
    let status = env.run(&["--config-dir", profile.to_str().unwrap(), "status", APP]);
    status.success();
    assert!(
        status.stdout.contains(&format!("principal {me}")),
        "{status:#?}"
    );
}
