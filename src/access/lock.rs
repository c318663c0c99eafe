//! The login lock (docs/protocol.md section 3): `<token file>.lock` and
//! `<token file>.url`, shared with the official client.
//!
//! When many processes need the same token at once (ssh sessions started
//! together), exactly one takes the lock and logs in; the others wait, show
//! the login URL the owner wrote, and pick up the token as soon as it lands.
//! A lock whose owner is gone (no such pid, a recycled pid, a broken file, or
//! older than ten minutes) is removed and the lock retried at once, so a
//! crashed login never blocks the next one.
//!
//! Two things differ from the official client, both compatible with it: the
//! lock file is created with its content already in it (written to a temp file
//! and hard-linked into place, so no reader ever sees it empty; where the
//! filesystem has no hard links, created exclusively and written after, an
//! empty lock being given a moment to be filled), and it is
//! removed, with the `.url` file, when the login is done.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::limits;
use crate::platform::atomic_file;
use crate::platform::dir_watch::DirWatch;
use crate::platform::process::start_time_ms as process_start_ms;
use crate::platform::read::{FileId, ReadError, read_capped_nofollow};

/// A lock older than this is stale whatever its owner is doing.
const MAX_AGE: Duration = Duration::from_secs(600);
/// Start times within this many milliseconds name the same process.
const START_TOLERANCE_MS: i64 = 1000;
/// Waiters look again after this long at first, then less and less often;
/// a change in the directory (the token stored, the lock released) wakes
/// them at once where that can be watched.
const FIRST_POLL: Duration = Duration::from_millis(20);
const LAST_POLL: Duration = Duration::from_millis(1000);
/// How long an empty lock file is taken for one being written.
const UNFILLED: Duration = Duration::from_secs(2);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create the lock file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "another process (pid {pid}) has been logging in for over 10 minutes and still holds {path}"
    )]
    Timeout { path: PathBuf, pid: i64 },
    /// Something that is no lock file sits at the lock's path and cannot be
    /// cleared away (a directory with files in it, or a file we may not remove).
    #[error("{path} is in the way of the login lock: it is {what}")]
    InTheWay { path: PathBuf, what: String },
}

/// What a lock file says about its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    pid: i64,
    start_time: i64,
}

/// The outcome of waiting: the lock, or the token another process fetched
/// while we waited.
pub enum Acquired {
    Lock(LoginLock),
    Token(String),
}

/// A held lock; dropping it removes the lock and URL files.
#[derive(Debug)]
pub struct LoginLock {
    lock: PathBuf,
    url: PathBuf,
    owner: Owner,
}

impl LoginLock {
    /// Writes the login URL beside the lock, so waiters can show it.
    pub fn publish_url(&self, url: &str) {
        if let Err(e) = atomic_file::write(&self.url, url.as_bytes(), atomic_file::SECRET) {
            debug!(error = %e, "cannot write the login URL file");
        }
    }
}

impl Drop for LoginLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.url);
        // Only our own lock: a waiter may have judged it stale and replaced it.
        if let Found::Lock { owner, .. } = inspect(&self.lock)
            && owner == Some(self.owner)
        {
            let _ = std::fs::remove_file(&self.lock);
        }
    }
}

/// Takes the lock for `token_path`, waiting while a live process holds it.
/// While waiting, `cached` is asked for the token now and then: when the
/// owner has stored it, that is the answer. `on_url` is called once for each
/// new login URL the owner publishes.
///
/// Whatever sits at the lock path that is not the lock of a live process (a
/// broken or stale file, a symlink, an empty directory) is removed; what
/// cannot be removed is an error naming it. Every round waits before the
/// next, and the whole wait is bounded by [`limits::LOCK_WAIT`].
pub async fn acquire(
    token_path: &Path,
    mut cached: impl FnMut() -> Option<String>,
    mut on_url: impl FnMut(i64, &str),
) -> Result<Acquired, LockError> {
    let lock = with_suffix(token_path, ".lock");
    let url = with_suffix(token_path, ".url");
    let me = Owner {
        pid: i64::from(std::process::id()),
        start_time: process_start_ms(std::process::id() as i64).unwrap_or(0),
    };
    let deadline = Instant::now() + limits::LOCK_WAIT;
    let mut pause = FIRST_POLL;
    let mut shown_url = String::new();
    let mut watch: Option<DirWatch> = None;
    loop {
        match try_create(&lock, me) {
            Ok(()) => {
                return Ok(Acquired::Lock(LoginLock {
                    lock,
                    url,
                    owner: me,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(LockError::Create { path: lock, source }),
        }
        let mut holder = None;
        match inspect(&lock) {
            // gone between our create and our look: try again after the pause
            Found::Nothing => {}
            Found::Lock { owner, id, mtime } => match owner.filter(|o| is_live(o, me, mtime)) {
                Some(owner) => holder = Some(owner),
                None => {
                    debug!(path = %lock.display(), "removing a stale lock");
                    remove_if_same(&lock, id)?;
                }
            },
            Found::Other(what) => clear(&lock, what)?,
        }
        if let Some(owner) = holder {
            if let Some(token) = cached() {
                return Ok(Acquired::Token(token));
            }
            if let Some(text) = read_url(&url)
                && text != shown_url
            {
                on_url(owner.pid, &text);
                shown_url = text;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(match holder {
                Some(owner) => LockError::Timeout {
                    path: lock,
                    pid: owner.pid,
                },
                None => LockError::InTheWay {
                    path: lock,
                    what: "replaced as fast as it is cleared".into(),
                },
            });
        }
        let wait = if holder.is_some() { pause } else { FIRST_POLL };
        let wait = wait.min(deadline - now);
        match holder {
            // watch only once there is something to wait for: the common case
            // (a free lock) needs no watch
            Some(_) => {
                let dir = lock.parent().unwrap_or(Path::new("."));
                watch
                    .get_or_insert_with(|| DirWatch::new(dir))
                    .changed(wait)
                    .await;
                pause = (pause * 3 / 2).min(LAST_POLL);
            }
            None => tokio::time::sleep(wait).await,
        }
    }
}

/// Removes stale lock and URL files from `dir` (what a login killed without
/// a chance to clean up leaves behind), leaving those of live logins.
/// Returns how many files were removed.
pub fn clear_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let me = Owner {
        pid: i64::from(std::process::id()),
        start_time: process_start_ms(std::process::id() as i64).unwrap_or(0),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name
            .strip_suffix(".lock")
            .or_else(|| name.strip_suffix(".url"))
        else {
            continue;
        };
        let lock = dir.join(format!("{stem}.lock"));
        let live = matches!(inspect(&lock), Found::Lock { owner: Some(o), mtime, .. } if is_live(&o, me, mtime));
        if live {
            continue;
        }
        let is_lock = name.ends_with(".lock");
        let gone = match inspect(&path) {
            Found::Lock { id, .. } if is_lock => remove_if_same(&path, id).is_ok(),
            Found::Other(what) if is_lock => clear(&path, what).is_ok(),
            Found::Nothing => false,
            // a .url file: plain data beside a lock that is gone
            _ => std::fs::remove_file(&path).is_ok(),
        };
        if gone {
            debug!(path = %path.display(), "removed a stale login file");
            removed += 1;
        }
    }
    removed
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The URL the owner published, if there is a sane one.
fn read_url(url: &Path) -> Option<String> {
    let data = read_capped_nofollow(url, limits::LOCK_FILE).ok()?.0;
    let text = String::from_utf8(data).ok()?;
    let text = text.trim();
    (!text.is_empty() && !text.contains(char::is_control)).then(|| text.to_owned())
}

/// Creates `lock` holding `owner`, failing with `AlreadyExists` if it exists.
fn try_create(lock: &Path, owner: Owner) -> io::Result<()> {
    let mut content = serde_json::to_vec(&owner).map_err(io::Error::other)?;
    content.push(b'\n');
    atomic_file::create_new_with(lock, &content, atomic_file::SECRET)
}

/// What is at a lock path, looked at without following a symlink.
enum Found {
    Nothing,
    /// A regular file: the owner it names (`None` when the content is not a
    /// lock's), which file it was, and when it was last written.
    Lock {
        owner: Option<Owner>,
        id: FileId,
        mtime: Option<SystemTime>,
    },
    /// Anything else: a symlink, a directory, a FIFO…
    Other(Other),
}

#[derive(Debug, Clone, Copy)]
enum Other {
    Symlink,
    Dir,
    Special,
}

fn inspect(lock: &Path) -> Found {
    let meta = match std::fs::symlink_metadata(lock) {
        Ok(meta) => meta,
        Err(_) => return Found::Nothing,
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Found::Other(Other::Symlink);
    }
    if kind.is_dir() {
        return Found::Other(Other::Dir);
    }
    if !kind.is_file() {
        return Found::Other(Other::Special);
    }
    match read_capped_nofollow(lock, limits::LOCK_FILE) {
        // just created exclusively and not written yet (a filesystem without
        // hard links): judged next round, stale once it stays empty
        Ok((data, _)) if data.is_empty() && is_younger(&meta, UNFILLED) => Found::Nothing,
        Ok((data, id)) => Found::Lock {
            owner: std::str::from_utf8(&data)
                .ok()
                .and_then(|t| serde_json::from_str(t.trim()).ok()),
            id,
            mtime: meta.modified().ok(),
        },
        // too big for a lock: junk, judged by the file we looked at
        Err(ReadError::TooLarge { .. }) => junk(lock),
        Err(e) if e.is_not_found() => Found::Nothing,
        // swapped for something else since the look: look again next round
        Err(ReadError::NotRegular) => Found::Nothing,
        Err(ReadError::Io(_)) => junk(lock),
    }
}

/// A lock file that is junk, by its identity; one that cannot even be
/// identified is looked at again next round.
fn junk(lock: &Path) -> Found {
    match FileId::of_path(lock) {
        Ok(id) => Found::Lock {
            owner: None,
            id,
            mtime: None,
        },
        Err(_) => Found::Nothing,
    }
}

/// Whether the file was last written less than `age` ago.
fn is_younger(meta: &std::fs::Metadata, age: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|a| a < age)
}

/// Clears what is at `lock` that is no lock file: a symlink is removed (never
/// what it points to), an empty directory too; anything else is an error.
fn clear(lock: &Path, what: Other) -> Result<(), LockError> {
    let in_the_way = |what: String| LockError::InTheWay {
        path: lock.to_owned(),
        what,
    };
    debug!(path = %lock.display(), ?what, "clearing what is not a lock file");
    let result = match what {
        Other::Symlink => std::fs::remove_file(lock),
        Other::Dir => std::fs::remove_dir(lock),
        Other::Special => std::fs::remove_file(lock),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(in_the_way(match what {
            Other::Dir => format!("a directory that cannot be removed ({e})"),
            Other::Symlink => format!("a symlink that cannot be removed ({e})"),
            Other::Special => format!("a special file that cannot be removed ({e})"),
        })),
    }
}

/// Whether the lock still belongs to a running login of another process.
fn is_live(owner: &Owner, me: Owner, mtime: Option<SystemTime>) -> bool {
    if *owner == me {
        return false; // ours, left over: we never wait for ourselves
    }
    let Some(start) = process_start_ms(owner.pid) else {
        return false;
    };
    if (start - owner.start_time).abs() > START_TOLERANCE_MS {
        return false; // the pid now names another process
    }
    let age = mtime
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    age <= MAX_AGE
}

/// Removes `lock` if it is still the file we read (a symlink's identity is
/// its own, never its target's). Gone already is fine; a file that stays is
/// an error naming it.
fn remove_if_same(lock: &Path, id: FileId) -> Result<(), LockError> {
    match FileId::of_path(lock) {
        Ok(now) if now == id => match std::fs::remove_file(lock) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LockError::InTheWay {
                path: lock.to_owned(),
                what: format!("a stale lock that cannot be removed ({e})"),
            }),
        },
        // replaced by another process meanwhile: judged again next round
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_of(lock: &Path) -> Option<Owner> {
        match inspect(lock) {
            Found::Lock { owner, .. } => owner,
            _ => None,
        }
    }

    #[tokio::test]
    async fn takes_a_free_lock_and_releases_it_with_the_url_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        let Acquired::Lock(lock) = acquire(&token, || None, |_, _| {}).await.unwrap() else {
            panic!("expected the lock");
        };
        let lock_path = dir.path().join("t-token.lock");
        let text = std::fs::read_to_string(&lock_path).unwrap();
        assert!(
            text.starts_with(&format!("{{\"pid\":{},", std::process::id())),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        lock.publish_url("https://h/cdn-cgi/access/cli?x");
        assert!(dir.path().join("t-token.url").exists());
        drop(lock);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn clears_stale_locks_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        let lock_path = dir.path().join("t-token.lock");
        let me = i64::from(std::process::id());
        let start = process_start_ms(me).unwrap();
        let stale = [
            String::new(),
            "not json".into(),
            format!("{{\"pid\":{},\"start_time\":1}}\n", i32::MAX), // no such process
            format!("{{\"pid\":1,\"start_time\":{}}}\n", start + 86_400_000), // recycled pid
            format!("{{\"pid\":{me},\"start_time\":{start}}}\n"),   // our own
        ];
        for content in stale {
            std::fs::write(&lock_path, &content).unwrap();
            let got =
                tokio::time::timeout(Duration::from_secs(5), acquire(&token, || None, |_, _| {}))
                    .await
                    .expect("a stale lock must not make us wait")
                    .unwrap();
            assert!(matches!(got, Acquired::Lock(_)), "content {content:?}");
            assert_eq!(owner_of(&lock_path).map(|o| o.pid), Some(me));
        }
    }

    /// A live process other than ours, kept alive while the guard lives:
    /// init on Unix, a child waiting on its stdin elsewhere.
    fn other_live_process() -> (i64, Option<std::process::Child>) {
        if cfg!(unix) {
            return (1, None);
        }
        let child = std::process::Command::new("cmd")
            .args(["/c", "pause"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (i64::from(child.id()), Some(child))
    }

    #[tokio::test]
    async fn an_old_lock_of_a_live_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        let lock_path = dir.path().join("t-token.lock");
        let (pid, _live) = other_live_process();
        let init = process_start_ms(pid).unwrap();
        std::fs::write(
            &lock_path,
            format!("{{\"pid\":{pid},\"start_time\":{init}}}\n"),
        )
        .unwrap();
        let old = SystemTime::now() - Duration::from_secs(601);
        std::fs::File::options()
            .write(true)
            .open(&lock_path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), acquire(&token, || None, |_, _| {}))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(got, Acquired::Lock(_)));
    }

    #[tokio::test]
    async fn a_waiter_shows_the_url_and_takes_the_token_the_owner_stored() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        // a live owner with its true start time
        let (pid, _live) = other_live_process();
        let init = process_start_ms(pid).unwrap();
        std::fs::write(
            dir.path().join("t-token.lock"),
            format!("{{\"pid\":{pid},\"start_time\":{init}}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("t-token.url"), "https://login\n").unwrap();
        let mut urls = Vec::new();
        let mut asked = 0;
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            acquire(
                &token,
                || {
                    asked += 1;
                    (asked == 3).then(|| "tok".to_owned())
                },
                |pid, url| urls.push((pid, url.to_owned())),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(matches!(got, Acquired::Token(t) if t == "tok"));
        assert_eq!(urls, [(pid, "https://login".to_owned())]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn what_is_not_a_lock_is_cleared_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        let lock_path = dir.path().join("t-token.lock");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "junk").unwrap();
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let plant: [&dyn Fn(); 4] = [
            &|| std::fs::create_dir(&lock_path).unwrap(),
            &|| std::os::unix::fs::symlink(dir.path().join("none"), &lock_path).unwrap(),
            &|| std::os::unix::fs::symlink(&junk, &lock_path).unwrap(),
            &|| std::fs::rename(&huge, &lock_path).unwrap(),
        ];
        for (i, plant) in plant.iter().enumerate() {
            plant();
            let got =
                tokio::time::timeout(Duration::from_secs(5), acquire(&token, || None, |_, _| {}))
                    .await
                    .unwrap_or_else(|_| panic!("case {i}: a hang"))
                    .unwrap();
            let Acquired::Lock(lock) = got else {
                panic!("case {i}: expected the lock")
            };
            assert!(owner_of(&lock_path).is_some(), "case {i}");
            drop(lock);
            assert!(std::fs::symlink_metadata(&lock_path).is_err(), "case {i}");
        }
        assert_eq!(std::fs::read_to_string(&junk).unwrap(), "junk");
    }

    #[tokio::test]
    async fn a_directory_with_files_in_it_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t-token");
        let lock_path = dir.path().join("t-token.lock");
        std::fs::create_dir(&lock_path).unwrap();
        std::fs::write(lock_path.join("x"), "").unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), acquire(&token, || None, |_, _| {}))
            .await
            .unwrap()
            .err()
            .unwrap();
        assert!(matches!(err, LockError::InTheWay { ref path, .. } if *path == lock_path));
    }

    #[cfg(unix)]
    #[test]
    fn clear_stale_keeps_live_locks() {
        let dir = tempfile::tempdir().unwrap();
        let init = process_start_ms(1).unwrap();
        std::fs::write(
            dir.path().join("live.lock"),
            format!("{{\"pid\":1,\"start_time\":{init}}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("live.url"), "u").unwrap();
        std::fs::write(dir.path().join("dead.lock"), "junk").unwrap();
        std::fs::write(dir.path().join("dead.url"), "u").unwrap();
        std::fs::write(dir.path().join("orphan.url"), "u").unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.path().join("link.lock")).unwrap();
        assert_eq!(clear_stale(dir.path()), 4);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["live.lock", "live.url"]);
    }
}
