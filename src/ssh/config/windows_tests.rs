//! The Windows snippet, read back the way Win32-OpenSSH and Windows read it:
//! small re-implementations of each step, from their sources and documented
//! rules, then the program path and argv that would run, checked exactly.
//!
//! - `strdelim`: OpenSSH 9's word splitter (misc.c `strdelim_internal` at
//!   V_9_5_P1; Win32-OpenSSH 9.x and the inbox 8.1 use it for `Match`).
//! - `argv_split`: OpenSSH 10's (misc.c at V_10_0_P1).
//! - `percent_expand`: `%%` and the `%` tokens (misc.c).
//! - `proxy_spawn`: Win32-OpenSSH's `build_commandline_string`
//!   (contrib/win32/win32compat/misc.c) and `CreateProcessW`'s reading of an
//!   unnamed application's command line.
//! - `cmd_c`: `_wsystem` = `cmd.exe /c <command>`: `cmd /?`'s quote rules
//!   for `/c`, then the command-line parser's percent phase and special
//!   character phase (`^`, `&|<>()`, token delimiters), as far as used.
//! - `command_line_to_argv`: `CommandLineToArgvW`'s rules, which Rust's std
//!   follows for `std::env::args` (argv[0] quoted with no escapes; then
//!   backslashes before `"`, and `""` inside quotes).

use super::*;

// ---- OpenSSH's config parsers ----

const WHITESPACE: &[u8] = b" \t\r\n";

/// One `strdelim` call (split_equals = 1) on `s[*pos..]`; `*pos` = None is
/// C's NULL. `Err` is the NULL it returns for an unmatched quote.
fn strdelim(s: &mut Vec<u8>, pos: &mut Option<usize>) -> Result<Option<String>, String> {
    let Some(old) = *pos else { return Ok(None) };
    let find = |s: &[u8], from: usize, set: &[u8]| {
        s[from..]
            .iter()
            .position(|b| set.contains(b))
            .map(|i| from + i)
    };
    let span = |s: &[u8], from: usize| {
        s[from..]
            .iter()
            .take_while(|b| WHITESPACE.contains(b))
            .count()
    };
    let word = |s: &[u8], end: usize| String::from_utf8(s[old..end].to_vec()).unwrap();
    let Some(at) = find(s, old, b" \t\r\n\"=") else {
        *pos = None;
        return Ok(Some(word(s, s.len())));
    };
    if s[at] == b'"' {
        s.remove(at); // memmove(*s, *s + 1, ...)
        let Some(close) = find(s, at, b"\"") else {
            return Err("no matching quote".into());
        };
        let w = word(s, close);
        *pos = Some(close + span(s, close + 1) + 1);
        return Ok(Some(w));
    }
    let wspace = s[at] == b'=';
    let w = word(s, at);
    let mut next = at + span(s, at + 1) + 1;
    if next < s.len() && s[next] == b'=' && !wspace {
        next += span(s, next + 1) + 1;
    }
    *pos = (next <= s.len()).then_some(next.min(s.len()));
    Ok(Some(w))
}

/// A config line as OpenSSH 9 reads it: the keyword, then its arguments
/// (for `Match`, `match_cfg_line`'s loop: words until an empty one).
fn strdelim_line(line: &str) -> Result<(String, Vec<String>), String> {
    let mut s = line
        .trim_end_matches([' ', '\t', '\r', '\n', '\x0c'])
        .as_bytes()
        .to_vec();
    let mut pos = Some(0);
    let mut keyword = strdelim(&mut s, &mut pos)?.unwrap_or_default();
    if keyword.is_empty() {
        keyword = strdelim(&mut s, &mut pos)?.unwrap_or_default();
    }
    let mut args = Vec::new();
    while let Some(w) = strdelim(&mut s, &mut pos)? {
        if w.is_empty() {
            break;
        }
        args.push(w);
    }
    Ok((keyword, args))
}

/// OpenSSH 10's `argv_split(s, ..., terminate_on_comment = 1)`.
fn argv_split(s: &str) -> Result<Vec<String>, String> {
    let s = s.as_bytes();
    let mut argv = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b' ' || s[i] == b'\t' {
            i += 1;
            continue;
        }
        if s[i] == b'#' {
            break;
        }
        let mut quote = 0u8;
        let mut arg = Vec::new();
        while i < s.len() {
            let c = s[i];
            if c == b'\\' {
                let n = s.get(i + 1).copied().unwrap_or(0);
                if n == b'\'' || n == b'"' || n == b'\\' || (quote == 0 && n == b' ') {
                    i += 1;
                    arg.push(s[i]);
                } else {
                    arg.push(c);
                }
            } else if quote == 0 && (c == b' ' || c == b'\t') {
                break;
            } else if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if quote != 0 {
            return Err("ran out of string looking for close quote".into());
        }
        argv.push(String::from_utf8(arg).unwrap());
    }
    Ok(argv)
}

/// `percent_expand` with the one token the snippet uses.
fn percent_expand(s: &str, host: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(host),
            other => return Err(format!("unknown key %{other:?}")),
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    exec: String,
    proxy: String,
    identity: String,
    certificate: String,
}

/// The block's values after the config parser and `%` expansion, by OpenSSH
/// 9 (`strdelim`) or 10 (`argv_split`). `ProxyCommand` is the rest of its
/// line in both (readconf.c: `s + strspn(s, WHITESPACE "=")`).
fn parse(block: &str, host: &str, openssh10: bool) -> Result<Parsed, String> {
    let mut p = Parsed {
        exec: String::new(),
        proxy: String::new(),
        identity: String::new(),
        certificate: String::new(),
    };
    for line in block.lines() {
        let (keyword, args) = if openssh10 {
            let mut av = argv_split(line)?;
            let k = av.remove(0);
            (k, av)
        } else {
            strdelim_line(line)?
        };
        let one = |i: usize| -> Result<String, String> {
            let a = args.get(i).filter(|a| !a.is_empty() && !a.starts_with('#'));
            percent_expand(a.ok_or("Bad Match condition / missing argument")?, host)
        };
        match keyword.as_str() {
            "Match" => {
                // `match_cfg_line`: an empty word ends the conditions, and
                // `exec` with none after it is "Missing Match criteria"
                assert!(args.len() <= 4, "{args:?}");
                assert_eq!((args[0].as_str(), args[2].as_str()), ("host", "exec"));
                p.exec = one(3)?;
            }
            "ProxyCommand" => {
                let rest = line.trim_start().strip_prefix("ProxyCommand").unwrap();
                let rest = rest
                    .trim_start_matches([' ', '\t', '\r', '\n', '='])
                    .trim_end();
                p.proxy = percent_expand(rest, host)?;
            }
            "IdentityFile" => p.identity = one(0)?,
            "CertificateFile" => p.certificate = one(0)?,
            other => return Err(format!("unexpected {other}")),
        }
    }
    Ok(p)
}

// ---- Windows ----

/// `CommandLineToArgvW`: argv[0] up to the next `"` if it starts with one,
/// else to the first space or tab, no escapes; then the arguments.
fn command_line_to_argv(line: &str) -> Vec<String> {
    let c: Vec<char> = line.chars().collect();
    let mut argv = Vec::new();
    let mut i = 0;
    let mut first = String::new();
    if c.first() == Some(&'"') {
        i = 1;
        while i < c.len() && c[i] != '"' {
            first.push(c[i]);
            i += 1;
        }
        i += 1;
    } else {
        while i < c.len() && c[i] != ' ' && c[i] != '\t' {
            first.push(c[i]);
            i += 1;
        }
    }
    argv.push(first);
    loop {
        while i < c.len() && (c[i] == ' ' || c[i] == '\t') {
            i += 1;
        }
        if i >= c.len() {
            return argv;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while i < c.len() && (quoted || (c[i] != ' ' && c[i] != '\t')) {
            if c[i] == '\\' {
                let n = c[i..].iter().take_while(|&&b| b == '\\').count();
                if c.get(i + n) == Some(&'"') {
                    arg.extend(std::iter::repeat_n('\\', n / 2));
                    i += n;
                    if n % 2 == 1 {
                        arg.push('"');
                        i += 1;
                    }
                } else {
                    arg.extend(std::iter::repeat_n('\\', n));
                    i += n;
                }
            } else if c[i] == '"' {
                if quoted && c.get(i + 1) == Some(&'"') {
                    arg.push('"');
                    i += 2;
                } else {
                    quoted = !quoted;
                    i += 1;
                }
            } else {
                arg.push(c[i]);
                i += 1;
            }
        }
        argv.push(arg);
    }
}

/// Win32-OpenSSH's `ProxyCommand` start: `build_commandline_string(cmd,
/// {NULL}, FALSE)` then `CreateProcessW(NULL, line)`, which takes argv[0]
/// (by the rule above) for the program. Returns the program and its argv.
fn proxy_spawn(cmd: &str) -> (String, Vec<String>) {
    let line = if cmd.starts_with('"') {
        cmd.to_owned() // "path already contains \""
    } else if let Some(sp) = cmd
        .find(".exe")
        .and_then(|e| cmd[e..].find(' ').map(|s| e + s))
    {
        format!("\"{}\"{}", &cmd[..sp], &cmd[sp..])
    } else {
        format!("\"{cmd}\"")
    };
    let argv = command_line_to_argv(&line);
    (argv[0].clone(), argv)
}

/// `cmd.exe /c <command>` as `_wsystem` starts it: the program cmd.exe runs
/// and the command line that program gets. `Err` where cmd.exe would do
/// something else (split the command, or a case this model leaves out).
fn cmd_c(command: &str, env: &[(&str, &str)]) -> Result<(String, Vec<String>), String> {
    // `cmd /?`: with /c and no `"` at all, the command is kept as it is
    if command.contains('"') {
        return Err("quotes are not modelled (the snippet has none)".into());
    }
    // percent phase, command-line mode: `%name%` of a set variable is
    // replaced (names ignore case); anything else stays as written
    let c: Vec<char> = command.chars().collect();
    let mut expanded = String::new();
    let mut i = 0;
    while i < c.len() {
        let len = (c[i] == '%')
            .then(|| c[i + 1..].iter().position(|&x| x == '%'))
            .flatten();
        if let Some(len) = len {
            let name: String = c[i + 1..i + 1 + len].iter().collect();
            if let Some((_, v)) = env.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)) {
                expanded.push_str(v);
                i += len + 2;
                continue;
            }
        }
        expanded.push(c[i]);
        i += 1;
    }
    // special character phase: `^` escapes the next character and goes;
    // unescaped `&|<>()` would split or group the command
    let mut line = String::new();
    let mut escaped_at = Vec::new();
    let mut chars = expanded.chars();
    while let Some(ch) = chars.next() {
        if ch == '^' {
            let Some(n) = chars.next() else {
                return Err("a trailing ^ continues the line".into());
            };
            escaped_at.push(line.chars().count());
            line.push(n);
        } else if "&|<>()".contains(ch) {
            return Err(format!("an unescaped {ch} splits the command"));
        } else {
            line.push(ch);
        }
    }
    let delimiter = |ch: char| " \t,;=\u{0B}\u{0C}\u{FF}".contains(ch);
    let chars: Vec<char> = line.chars().collect();
    let end = chars
        .iter()
        .position(|&ch| delimiter(ch))
        .unwrap_or(chars.len());
    if escaped_at
        .iter()
        .any(|&i| i < chars.len() && delimiter(chars[i]))
    {
        return Err("an escaped delimiter is not modelled (the snippet has none)".into());
    }
    let program: String = chars[..end].iter().collect();
    Ok((program, command_line_to_argv(&line)))
}

// ---- the checks ----

const HOST: &str = "ssh.example.com";

fn win(path: &str, short: Option<&str>) -> Program {
    Program {
        path: path.into(),
        short_path: short.map(Into::into),
    }
}

fn block(exe: &Program, key_dir: &KeyDir) -> String {
    snippet(Style::Windows, exe, HOST, true, key_dir).unwrap()
}

/// Reads `block` with both parsers, runs both commands through the Windows
/// models, and checks they start `runs` (exec) and `path` (ProxyCommand)
/// with exactly the argv cfaccess expects.
fn check(block: &str, path: &str, runs: &str, env: &[(&str, &str)]) -> Parsed {
    let nine = parse(block, HOST, false).unwrap_or_else(|e| panic!("OpenSSH 9: {e}\n{block}"));
    let ten = parse(block, HOST, true).unwrap_or_else(|e| panic!("OpenSSH 10: {e}\n{block}"));
    assert_eq!(nine, ten, "the two parsers differ on\n{block}");

    let (program, argv) = proxy_spawn(&nine.proxy);
    assert_eq!(program, path, "{block}");
    let (argv, proxy_dir) = split_config_dir(argv);
    assert_eq!(argv, [path, "access", "ssh", "--hostname", HOST], "{block}");

    let (program, argv) =
        cmd_c(&nine.exec, env).unwrap_or_else(|e| panic!("cmd.exe: {e}\n{block}"));
    assert_eq!(program, runs, "{block}");
    let (argv, exec_dir) = split_config_dir(argv);
    if exec_dir.is_some() {
        assert_eq!(
            exec_dir, proxy_dir,
            "both commands get the same dir: {block}"
        );
    }
    assert_eq!(
        argv,
        [runs, "access", "ssh-gen", "--hostname", HOST],
        "{block}"
    );
    nine
}

/// `argv` without a trailing `--config-dir <dir>`, and that dir.
fn split_config_dir(mut argv: Vec<String>) -> (Vec<String>, Option<String>) {
    let n = argv.len();
    if n >= 2 && argv[n - 2] == "--config-dir" {
        let dir = argv.pop();
        argv.pop();
        return (argv, dir);
    }
    (argv, None)
}

/// The config dir each command of `block` is given.
fn dirs_given(block: &str) -> (Option<String>, Option<String>) {
    let p = parse(block, HOST, false).unwrap();
    let (_, proxy) = proxy_spawn(&p.proxy);
    let (_, exec) = cmd_c(&p.exec, &[]).unwrap();
    (split_config_dir(proxy).1, split_config_dir(exec).1)
}

#[test]
fn a_moved_config_dir_is_given_to_both_commands_where_cmd_exe_can_carry_it() {
    let exe = win(r"C:\Tools\cfaccess.exe", None);
    let plain = block(&exe, &KeyDir::Path(r"C:\k\plain".into()));
    assert_eq!(
        dirs_given(&plain),
        (Some("C:/k/plain".into()), Some("C:/k/plain".into())),
        "{plain}"
    );
    let odd = block(&exe, &KeyDir::Path(r"C:\k\a&b(1)%x".into()));
    assert_eq!(
        dirs_given(&odd),
        (Some("C:/k/a&b(1)%x".into()), Some("C:/k/a&b(1)%x".into())),
        "{odd}"
    );
    // a space: ProxyCommand quotes it; Match exec cannot, and leaves it to CFACCESS_DIR
    let spaced = block(&exe, &KeyDir::Path(r"C:\Users\Zoë Doe\keys".into()));
    assert_eq!(
        dirs_given(&spaced),
        (Some("C:/Users/Zoë Doe/keys".into()), None),
        "{spaced}"
    );
    assert_eq!(
        dirs_given(&block(&exe, &KeyDir::Default)),
        (None, None),
        "the default dir needs no flag"
    );
}

#[test]
fn the_default_install_location_works_in_both_commands() {
    let exe = win(
        r"C:\Program Files\cfaccess\cfaccess.exe",
        Some(r"C:\PROGRA~1\cfaccess\cfaccess.exe"),
    );
    let b = block(&exe, &KeyDir::Default);
    assert_eq!(
        b,
        "Match host ssh.example.com exec \"C:\\PROGRA~1\\cfaccess\\cfaccess.exe access ssh-gen --hostname %h\"\n  \
         ProxyCommand \"C:\\Program Files\\cfaccess\\cfaccess.exe\" access ssh --hostname %h\n  \
         IdentityFile ~/.cloudflared/%h-cf_key\n  \
         CertificateFile ~/.cloudflared/%h-cf_key-cert.pub\n"
    );
    let p = check(&b, &exe.path, r"C:\PROGRA~1\cfaccess\cfaccess.exe", &[]);
    assert_eq!(p.identity, "~/.cloudflared/ssh.example.com-cf_key");
    assert_eq!(
        p.certificate,
        "~/.cloudflared/ssh.example.com-cf_key-cert.pub"
    );
    assert_eq!(
        snippet(Style::Windows, &exe, HOST, false, &KeyDir::Default).unwrap(),
        "Host ssh.example.com\n  \
         ProxyCommand \"C:\\Program Files\\cfaccess\\cfaccess.exe\" access ssh --hostname %h\n"
    );
}

#[test]
fn the_nested_quotes_of_the_issue_are_what_openssh_9_refuses() {
    // the model reproduces the failure the Windows form avoids
    let nested = "Match host h exec \"\"C:\\Program Files\\x.exe\" access ssh-gen\"\n";
    assert!(parse(nested, "h", false).is_err());
}

#[test]
fn a_path_without_delimiters_is_used_as_it_is_with_cmd_specials_escaped() {
    for (path, env) in [
        (r"C:\Tools\cfaccess.exe", &[][..]),
        (r"C:\a&b(x)\cfaccess.exe", &[]),
        (r"C:\100%\x^y\cfaccess.exe", &[]),
        // a set variable's name between two `%` stays text
        (
            r"C:\%PATH%\%x%%\cfaccess.exe",
            &[("PATH", r"C:\Windows"), ("x", "boom")],
        ),
        (r"C:\Ünïcödé\日本\cfaccess.exe", &[]),
        (r"C:\it's@#~!$`{}\cfaccess.exe", &[]),
        (r"D:\a)|<>\cfaccess.exe", &[]),
    ] {
        // no short name, or one that is the same (8.3 names keep these)
        for short in [None, Some(path)] {
            let b = block(&win(path, short), &KeyDir::Default);
            check(&b, path, path, env);
        }
    }
}

#[test]
fn a_short_name_without_escapes_wins_over_a_long_one_with_them() {
    let (path, short) = (
        r"C:\Tools & Co\x^y\cfaccess.exe",
        r"C:\TOOLSC~1\XY~1\cfaccess.exe",
    );
    let b = block(&win(path, Some(short)), &KeyDir::Default);
    assert!(
        b.starts_with(&format!("Match host {HOST} exec \"{short} access")),
        "{b}"
    );
    check(&b, path, short, &[]);
    let (path, short) = (r"C:\Tools\a&b\cfaccess.exe", r"C:\Tools\A&B~1\cfaccess.exe");
    check(
        &block(&win(path, Some(short)), &KeyDir::Default),
        path,
        path,
        &[],
    );
}

#[test]
fn a_path_with_spaces_or_cmd_delimiters_runs_by_its_short_name() {
    for (path, short) in [
        (
            r"C:\Users\Zoë Ångström\scoop\apps\cfaccess\current\cfaccess.exe",
            r"C:\Users\ZOANGS~1\scoop\apps\cfaccess\current\cfaccess.exe",
        ),
        (
            r"C:\Program Files (x86)\cf & co\cfaccess.exe",
            r"C:\PROGRA~2\CF&CO~1\cfaccess.exe",
        ),
        (r"C:\a,b;c=d\cfaccess.exe", r"C:\ABC_D~1\cfaccess.exe"),
        (
            r"C:\50% off\%x%^\cfaccess.exe",
            r"C:\50%OFF~1\%x%^\cfaccess.exe",
        ),
    ] {
        let b = block(&win(path, Some(short)), &KeyDir::Default);
        // the names between two `%`, had the `^` not been there
        check(&b, path, short, &[("x", "boom"), ("OFF~1\\", "boom")]);
    }
}

#[test]
fn a_verbatim_path_is_written_in_its_plain_form() {
    let exe = win(
        r"\\?\C:\Program Files\cfaccess\cfaccess.exe",
        Some(r"\\?\C:\PROGRA~1\cfaccess\cfaccess.exe"),
    );
    let b = block(&exe, &KeyDir::Path(r"\\?\C:\Users\me\keys".into()));
    let p = check(
        &b,
        r"C:\Program Files\cfaccess\cfaccess.exe",
        r"C:\PROGRA~1\cfaccess\cfaccess.exe",
        &[],
    );
    assert_eq!(p.identity, "C:/Users/me/keys/ssh.example.com-cf_key");
}

#[test]
fn a_path_with_no_form_for_match_exec_is_refused_and_proxycommand_still_works() {
    for exe in [
        // 8.3 names off on that volume: GetShortPathNameW gives none
        win(r"D:\My Tools\cfaccess.exe", None),
        win(r"D:\a,b\cfaccess.exe", None),
        // a UNC path starts with `\\`, an escape for OpenSSH 10
        win(r"\\server\share\cfaccess.exe", None),
    ] {
        let err = snippet(Style::Windows, &exe, HOST, true, &KeyDir::Default).unwrap_err();
        assert_eq!(err.path, exe.path);
        assert!(err.hint().contains("--short-lived-cert"), "{}", err.hint());
        let b = snippet(Style::Windows, &exe, HOST, false, &KeyDir::Default).unwrap();
        let proxy = b
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .strip_prefix("ProxyCommand ")
            .unwrap();
        let (program, argv) = proxy_spawn(&percent_expand(proxy, HOST).unwrap());
        assert_eq!(program, exe.path);
        assert_eq!(
            argv,
            [exe.path.as_str(), "access", "ssh", "--hostname", HOST]
        );
    }
}

#[test]
fn key_paths_use_forward_slashes_and_read_alike() {
    let exe = win(r"C:\Tools\cfaccess.exe", None);
    for (dir, want) in [
        (
            r"C:\Users\Zoë Doe\keys 100%\",
            "C:/Users/Zoë Doe/keys 100%/ssh.example.com-cf_key",
        ),
        (r"C:\k\it's=#x", "C:/k/it's=#x/ssh.example.com-cf_key"),
        (r"C:\k\plain", "C:/k/plain/ssh.example.com-cf_key"),
    ] {
        let b = block(&exe, &KeyDir::Path(dir.into()));
        let p = check(&b, &exe.path, &exe.path, &[]);
        assert_eq!(p.identity, want, "{b}");
        assert_eq!(p.certificate, format!("{}-cert.pub", want), "{b}");
    }
}

#[test]
fn the_models_read_known_cases_right() {
    // CommandLineToArgvW's documented examples
    assert_eq!(
        command_line_to_argv(r#"p "a b c" d e"#),
        ["p", "a b c", "d", "e"]
    );
    assert_eq!(
        command_line_to_argv(r#"p "ab\"c" "\\" d"#),
        ["p", "ab\"c", "\\", "d"]
    );
    assert_eq!(
        command_line_to_argv(r#"p a\\\b d"e f"g h"#),
        ["p", r"a\\\b", "de fg", "h"]
    );
    assert_eq!(
        command_line_to_argv(r#""C:\a b\p.exe" x"#),
        [r"C:\a b\p.exe", "x"]
    );
    // argv[0] splits at a space: why cmd.exe's `^ ` is no way to name a path
    assert_eq!(
        command_line_to_argv(r"C:\a b\p.exe x"),
        [r"C:\a", r"b\p.exe", "x"]
    );
    // strdelim: `=` separates outside quotes, a quote may start mid-word
    assert_eq!(
        strdelim_line("Key a=b \"c d\"").unwrap().1,
        ["a", "b", "c d"]
    );
    assert_eq!(strdelim_line("Key x\"y z\"").unwrap().1, ["xy z"]);
    // argv_split: backslash escapes even inside double quotes
    assert_eq!(
        argv_split(r#"K "a\\b\"c" d\ e"#).unwrap(),
        ["K", r#"a\b"c"#, "d e"]
    );
    // cmd.exe: a set variable expands, carets go
    assert_eq!(cmd_c("%x%^&y a", &[("x", "p")]).unwrap().0, "p&y");
    assert!(cmd_c("a&b", &[]).is_err());
}
