//! Writing and reading capture files (`docs/protocol.md 12`).
//!
//! Writing: `record` encodes the packet (length, source, code, elapsed µs,
//! data) and queues it; the writer thread takes whole packets up to
//! [`BLOCK_SIZE`](super::BLOCK_SIZE), seals them with the one HPKE sender
//! context of the session and appends `len ‖ ciphertext` to the `.part`
//! file. `finish` writes header + blocks to the final file.
//!
//! `data_size` in the header, which ssh-log-cli does not read, is the byte
//! length of what follows the header (the blocks): our reader uses it to
//! tell a complete capture from a cut one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use super::key::{Aead, Kdf, Kem, LogKey, LogSecret};
use super::{
    ExitData, LogError, Program, Pty, SessionMeta, Source, capture_name, codes, index, is_valid_id,
    part_name,
};

/// Bytes before the data in a packet: length, source, code, elapsed.
const PACKET_HEAD: usize = 4 + 1 + 4 + 8;
/// The largest header and block this reader accepts (a file is not trusted).
const MAX_HEADER: usize = 1 << 20;
const MAX_BLOCK: usize = 64 << 20;

/// How the writer batches; tests shrink them and hold the writer back.
#[derive(Clone)]
pub(crate) struct Options {
    pub block_size: usize,
    pub flush_after: Duration,
    pub queue_limit: usize,
    /// Locked by the writer around each write: a test holding it plays a
    /// disk that cannot keep up.
    pub gate: Option<Arc<Mutex<()>>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            block_size: super::BLOCK_SIZE,
            flush_after: super::FLUSH_AFTER,
            queue_limit: super::QUEUE_LIMIT,
            gate: None,
        }
    }
}

struct Queue {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    /// When the oldest queued packet was queued.
    oldest: Option<Instant>,
    failed: Option<String>,
    closed: bool,
    pty: Option<Pty>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A writer that panicked mid-batch leaves a queue that is still
        // consistent (every change is one field at a time).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the writer thread left: the blocks' byte count.
type WriterResult = Result<u64, LogError>;

pub(crate) struct Recorder {
    meta: SessionMeta,
    dir: PathBuf,
    started: Instant,
    started_at: SystemTime,
    encapsulated_key: String,
    limit: usize,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<WriterResult>>>,
}

impl Recorder {
    pub(crate) fn start(
        dir: &Path,
        meta: SessionMeta,
        key: &LogKey,
        options: Options,
    ) -> Result<Recorder, LogError> {
        if !is_valid_id(&meta.id) {
            return Err(LogError::BadId(meta.id));
        }
        create_dir(dir)?;
        let part_path = dir.join(part_name(&meta.id));
        if dir.join(capture_name(&meta.id)).exists() {
            return Err(LogError::io(
                "a capture already exists for this session id",
                &dir.join(capture_name(&meta.id)),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        let part = create_private(&part_path)
            .map_err(|e| LogError::io("cannot create the capture", &part_path, e))?;
        let (encapped, sender) = hpke::setup_sender::<Aead, Kdf, Kem>(&OpModeS::Base, &key.0, &[])
            .map_err(|e| LogError::Seal(e.to_string()))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                packets: VecDeque::new(),
                bytes: 0,
                oldest: None,
                failed: None,
                closed: false,
                pty: meta.pty.clone(),
            }),
            wake: Condvar::new(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            let options = options.clone();
            let path = part_path.clone();
            std::thread::Builder::new()
                .name(format!("ssh-log {}", meta.id))
                .spawn(move || write_blocks(&shared, sender, part, &path, &options))
                .map_err(|e| LogError::io("cannot start the log writer for", &part_path, e))?
        };
        let recorder = Recorder {
            dir: dir.to_owned(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            encapsulated_key: hex::encode(encapped.to_bytes()),
            limit: options.queue_limit,
            shared,
            writer: Mutex::new(Some(writer)),
            meta,
        };
        // The command of an exec session is part of what the user did, and
        // stays sealed with the rest (the index names only the program type).
        if let Program::Exec(command) = &recorder.meta.program {
            recorder.record(Source::Client, codes::CHANNEL_REQUEST, command.as_bytes())?;
        }
        Ok(recorder)
    }

    pub(crate) fn meta(&self) -> &SessionMeta {
        &self.meta
    }

    pub(crate) fn record(&self, source: Source, code: u32, data: &[u8]) -> Result<(), LogError> {
        let len = u32::try_from(PACKET_HEAD - 4 + data.len())
            .map_err(|_| LogError::PacketTooLarge(data.len()))?;
        let mut queue = self.shared.lock();
        if let Some(e) = &queue.failed {
            return Err(LogError::Writer(e.clone()));
        }
        if queue.closed {
            return Err(LogError::Finished);
        }
        let size = PACKET_HEAD + data.len();
        if queue.bytes + size > self.limit {
            return Err(LogError::QueueFull { limit: self.limit });
        }
        // Elapsed is taken under the lock, so it never goes back from one
        // queued packet to the next (ssh-log-cli subtracts them unsigned).
        let elapsed = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut packet = Vec::with_capacity(size);
        packet.extend_from_slice(&len.to_be_bytes());
        packet.push(source.byte());
        packet.extend_from_slice(&code.to_be_bytes());
        packet.extend_from_slice(&elapsed.to_be_bytes());
        packet.extend_from_slice(data);
        queue.bytes += size;
        queue.oldest.get_or_insert_with(Instant::now);
        queue.packets.push_back(packet);
        drop(queue);
        self.shared.wake.notify_one();
        Ok(())
    }

    pub(crate) fn set_pty(&self, pty: Pty) {
        self.shared.lock().pty = Some(pty);
    }

    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    pub(crate) fn finish(&self, exit: Option<ExitData>) -> Result<PathBuf, LogError> {
        let pty = {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(LogError::Finished);
            }
            queue.closed = true;
            queue.pty.clone()
        };
        self.shared.wake.notify_one();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(LogError::Finished)?;
        let data_size = handle
            .join()
            .map_err(|_| LogError::Writer("the log writer panicked".into()))??;
        let ended_at = SystemTime::now();
        let header = Header {
            started_at: unix_secs(self.started_at),
            data_size,
            encapsulated_key: self.encapsulated_key.clone(),
            pty: pty.map(|p| PtyJson {
                term: Some(p.term),
                width: p.width,
                height: p.height,
                modes: p.modes,
            }),
            exit_data: exit.as_ref().map(|e| ExitJson {
                timestamp: unix_secs(ended_at),
                status: e.status,
                signal: e.signal.clone(),
                core_dumped: e.core_dumped,
                error_msg: e.error_msg.clone(),
            }),
        };
        let id = &self.meta.id;
        let part_path = self.dir.join(part_name(id));
        let final_path = self.dir.join(capture_name(id));
        write_final(&self.dir, &final_path, &part_path, &header)?;
        std::fs::remove_file(&part_path)
            .map_err(|e| LogError::io("cannot remove", &part_path, e))?;
        index::append(
            &self.dir,
            &index::Entry::new(
                &self.meta,
                self.started_at,
                ended_at,
                exit.as_ref(),
                &capture_name(id),
            ),
        )?;
        Ok(final_path)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Dropped without finish (the session's task died): stop the writer;
        // the `.part` stays behind as an unfinished capture.
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn create_dir(dir: &Path) -> Result<(), LogError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| LogError::io("cannot create the logs dir", dir, e))
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The writer thread: seal whole packets into blocks and append them.
fn write_blocks(
    shared: &Shared,
    mut sender: hpke::aead::AeadCtxS<Aead, Kdf, Kem>,
    mut part: File,
    path: &Path,
    options: &Options,
) -> WriterResult {
    let mut written: u64 = 0;
    loop {
        let block = {
            let mut queue = shared.lock();
            loop {
                let due = queue
                    .oldest
                    .map(|t| t.elapsed() >= options.flush_after)
                    .unwrap_or(false);
                if queue.bytes >= options.block_size || (queue.bytes > 0 && (due || queue.closed)) {
                    break;
                }
                if queue.closed {
                    drop(queue);
                    part.sync_all()
                        .map_err(|e| LogError::io("cannot write", path, e))?;
                    return Ok(written);
                }
                queue = match queue.oldest {
                    Some(t) => {
                        let wait = options.flush_after.saturating_sub(t.elapsed());
                        shared
                            .wake
                            .wait_timeout(queue, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner()),
                };
            }
            let mut block = Vec::with_capacity(options.block_size.min(queue.bytes));
            while let Some(next) = queue.packets.front() {
                if !block.is_empty() && block.len() + next.len() > options.block_size {
                    break;
                }
                let packet = queue.packets.pop_front().unwrap_or_default();
                queue.bytes -= packet.len();
                block.extend_from_slice(&packet);
            }
            queue.oldest = if queue.packets.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
            block
        };
        let _gate = options
            .gate
            .as_ref()
            .map(|g| g.lock().unwrap_or_else(|e| e.into_inner()));
        let result = sender
            .seal(&block, &[])
            .map_err(|e| LogError::Seal(e.to_string()))
            .and_then(|sealed| {
                let len = u32::try_from(sealed.len())
                    .map_err(|_| LogError::PacketTooLarge(sealed.len()))?;
                let mut out = Vec::with_capacity(4 + sealed.len());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&sealed);
                part.write_all(&out)
                    .map_err(|e| LogError::io("cannot write", path, e))?;
                Ok(out.len() as u64)
            });
        match result {
            Ok(n) => written += n,
            Err(e) => {
                let message = e.to_string();
                let mut queue = shared.lock();
                queue.failed = Some(message);
                queue.packets.clear();
                queue.bytes = 0;
                return Err(e);
            }
        }
    }
}

/// `<id>.capture`: the header, then the blocks of the `.part`, through a
/// temp file in the same dir renamed into place.
fn write_final(dir: &Path, path: &Path, part: &Path, header: &Header) -> Result<(), LogError> {
    let json = serde_json::to_vec(header).map_err(|e| LogError::Writer(e.to_string()))?;
    let b64 = STANDARD.encode(json);
    let len = u32::try_from(b64.len()).map_err(|_| LogError::PacketTooLarge(b64.len()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".capture");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let fail = |e| LogError::io("cannot write", path, e);
    let mut tmp = builder.tempfile_in(dir).map_err(fail)?;
    let mut blocks =
        File::open(part).map_err(|e| LogError::io("cannot read the capture", part, e))?;
    tmp.write_all(&len.to_be_bytes()).map_err(fail)?;
    tmp.write_all(b64.as_bytes()).map_err(fail)?;
    std::io::copy(&mut blocks, &mut tmp).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The capture's header, as ssh-log-cli's `Metadata` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub started_at: u64,
    pub data_size: u64,
    pub encapsulated_key: String,
    pub pty: Option<PtyJson>,
    pub exit_data: Option<ExitJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyJson {
    pub term: Option<String>,
    pub width: u32,
    pub height: u32,
    pub modes: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitJson {
    pub timestamp: u64,
    pub status: Option<u32>,
    pub signal: Option<String>,
    #[serde(default)]
    pub core_dumped: bool,
    pub error_msg: Option<String>,
}

/// One decrypted packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub source: Source,
    pub code: u32,
    /// Since the start of the session.
    pub elapsed: Duration,
    pub data: Vec<u8>,
}

/// A decrypted capture.
#[derive(Debug)]
pub struct Capture {
    pub header: Header,
    pub packets: Vec<Packet>,
}

impl Capture {
    /// Reads and decrypts a capture file.
    pub fn open(path: &Path, secret: &LogSecret) -> Result<Capture, LogError> {
        let mut file =
            File::open(path).map_err(|e| LogError::io("cannot read the capture", path, e))?;
        let bad = |reason: &str| LogError::BadCapture {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let header_len = read_len(&mut file)
            .map_err(|_| bad("too short for a header"))?
            .ok_or_else(|| bad("empty file"))?;
        if header_len > MAX_HEADER {
            return Err(bad("header length too large"));
        }
        let mut b64 = vec![0; header_len];
        file.read_exact(&mut b64)
            .map_err(|_| bad("cut in the header"))?;
        let json = STANDARD
            .decode(&b64)
            .map_err(|_| bad("the header is not base64"))?;
        let header: Header =
            serde_json::from_slice(&json).map_err(|_| bad("the header is not its JSON"))?;
        let encapped = hex::decode(&header.encapsulated_key)
            .ok()
            .and_then(|b| <Kem as hpke::Kem>::EncappedKey::from_bytes(&b).ok())
            .ok_or_else(|| bad("bad encapsulated_key"))?;
        let mut receiver =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &secret.0, &encapped, &[])
                .map_err(|_| LogError::Decrypt {
                    path: path.to_owned(),
                })?;
        let mut plain = Vec::new();
        let mut read: u64 = 0;
        while let Some(len) = read_len(&mut file).map_err(|_| bad("cut in a block length"))? {
            if len > MAX_BLOCK {
                return Err(bad("block length too large"));
            }
            let mut sealed = vec![0; len];
            file.read_exact(&mut sealed)
                .map_err(|_| bad("cut in a block"))?;
            read += 4 + len as u64;
            let opened = receiver.open(&sealed, &[]).map_err(|_| LogError::Decrypt {
                path: path.to_owned(),
            })?;
            plain.extend_from_slice(&opened);
        }
        if read != header.data_size {
            return Err(bad(&format!(
                "{read} bytes of blocks where the header says {}",
                header.data_size
            )));
        }
        let packets = parse_packets(&plain).ok_or_else(|| bad("a packet is malformed"))?;
        Ok(Capture { header, packets })
    }
}

/// A 4-byte big-endian length, or None at a clean end of file.
fn read_len(r: &mut impl Read) -> std::io::Result<Option<usize>> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut buf[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(Some(u32::from_be_bytes(buf) as usize))
}

fn parse_packets(mut plain: &[u8]) -> Option<Vec<Packet>> {
    let mut packets = Vec::new();
    while !plain.is_empty() {
        let len = u32::from_be_bytes(plain.get(..4)?.try_into().ok()?) as usize;
        if len < PACKET_HEAD - 4 {
            return None;
        }
        let body = plain.get(4..4 + len)?;
        packets.push(Packet {
            source: Source::from_byte(body[0])?,
            code: u32::from_be_bytes(body[1..5].try_into().ok()?),
            elapsed: Duration::from_micros(u64::from_be_bytes(body[5..13].try_into().ok()?)),
            data: body[13..].to_vec(),
        });
        plain = &plain[4 + len..];
    }
    Some(packets)
}
