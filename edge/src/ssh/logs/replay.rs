//! Playing a capture back: the origin's output with its timing, as
//! `ssh-log-cli decrypt --replay` does through scriptreplay, or as an
//! asciicast v2 recording (the payload format of Cloudflare's newer logs;
//! `asciinema play` reads it).

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::capture::Capture;
use super::{Source, codes};

/// How to pace a playback.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// 2.0 plays twice as fast.
    pub speed: f64,
    /// Longest pause between two outputs (an idle hour need not take one).
    pub max_wait: Duration,
    /// No pauses at all.
    pub no_wait: bool,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            speed: 1.0,
            max_wait: Duration::from_secs(5),
            no_wait: false,
        }
    }
}

/// The packets a terminal shows: the origin's data and stderr.
fn output(capture: &Capture) -> impl Iterator<Item = (Duration, &[u8])> {
    capture
        .packets
        .iter()
        .filter(|p| {
            p.source == Source::Origin && (p.code == codes::DATA || p.code == codes::EXTENDED_DATA)
        })
        .map(|p| (p.elapsed, p.data.as_slice()))
}

/// Writes the origin's output to `out` with the recorded pauses.
pub fn play(capture: &Capture, out: &mut impl Write, pace: Pace) -> std::io::Result<()> {
    let mut last = Duration::ZERO;
    for (elapsed, data) in output(capture) {
        if !pace.no_wait && pace.speed > 0.0 {
            let gap = elapsed.saturating_sub(last).div_f64(pace.speed);
            out.flush()?;
            std::thread::sleep(gap.min(pace.max_wait));
        }
        last = elapsed;
        out.write_all(data)?;
    }
    out.flush()
}

/// Writes the capture as asciicast v2: a header line, then one
/// `[seconds, "o", text]` line per output.
pub fn asciicast(capture: &Capture, out: &mut impl Write) -> std::io::Result<()> {
    let pty = capture.header.pty.as_ref();
    let mut header = json!({
        "version": 2,
        "width": pty.map(|p| p.width).unwrap_or(80),
        "height": pty.map(|p| p.height).unwrap_or(24),
        "timestamp": capture.header.started_at,
    });
    if let Some(term) = pty.and_then(|p| p.term.as_deref()) {
        header["env"] = json!({ "TERM": term });
    }
    writeln!(out, "{header}")?;
    let mut text = Utf8Stream::default();
    for (elapsed, data) in output(capture) {
        let chunk = text.push(data);
        if !chunk.is_empty() {
            let event = json!([seconds(elapsed), "o", chunk]);
            writeln!(out, "{event}")?;
        }
    }
    let rest = text.finish();
    if !rest.is_empty() {
        let at = capture
            .packets
            .last()
            .map(|p| p.elapsed)
            .unwrap_or_default();
        writeln!(out, "{}", json!([seconds(at), "o", rest]))?;
    }
    Ok(())
}

/// Seconds to the microsecond, as asciicast writes them.
fn seconds(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

/// Turns chunks of bytes into text: a character split across two chunks is
/// kept until its end comes; bytes that are not UTF-8 become U+FFFD.
#[derive(Default)]
struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let mut text = String::new();
        let mut rest = bytes.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{fffd}');
                            rest = &bad[n..];
                        }
                        None => {
                            self.carry = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        text
    }

    fn finish(&mut self) -> String {
        if self.carry.is_empty() {
            String::new()
        } else {
            self.carry.clear();
            "\u{fffd}".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn a_character_split_across_chunks_is_whole_in_the_text() {
        let mut s = Utf8Stream::default();
        let bytes = "é€".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "€");
        assert_eq!(s.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(s.finish(), "");
    }
}
