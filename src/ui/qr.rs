//! A QR code of the login URL, drawn in the terminal with half-block
//! characters (two modules a character, one above the other), so a phone
//! can finish a login started on a machine without a browser. At the lowest
//! error correction a login URL (~330 bytes) is a version 12 code: 65
//! modules, 69 columns and 35 lines with its quiet zone.
//!
//! Ink stands for the light modules: most terminals draw light text on a
//! dark background, so the printed code comes out dark on light, as
//! scanners expect (the way `qrencode -t UTF8` draws it). Phone cameras
//! read the inverted code of a light-themed terminal as well.

use qrcode::{Color, EcLevel, QrCode};

/// Whether to draw the QR code of a login URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QrChoice {
    /// When no browser is started here (a headless machine, `--no-browser`)
    /// and stderr is a terminal.
    #[default]
    Auto,
    /// Always (`--qr`).
    Always,
    /// Never (`--no-qr`).
    Never,
}

/// Modules of light margin around the code. The standard asks for four;
/// two are what phone scanners need, and keep the code inside 80 columns.
const QUIET_ZONE: usize = 2;

/// `text` as a QR code: lines of half blocks, each `columns` wide, no
/// trailing newline; `None` when `text` is too long for any QR code.
pub fn render(text: &str) -> Option<Drawn> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    // light (inked) unless a dark module of the code; below the last row is
    // outside the drawing, left blank
    let light = |x: usize, y: usize| -> bool {
        if y >= size {
            return false;
        }
        let inside = |v: usize| v >= QUIET_ZONE && v < QUIET_ZONE + width;
        !(inside(x)
            && inside(y)
            && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark)
    };
    let mut lines = Vec::with_capacity(size.div_ceil(2));
    for y in (0..size).step_by(2) {
        let line: String = (0..size)
            .map(|x| match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            })
            .collect();
        lines.push(line);
    }
    Some(Drawn {
        text: lines.join("\n"),
        columns: size,
    })
}

/// A drawn QR code.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub text: String,
    /// How many terminal columns it needs.
    pub columns: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modules of a drawn code, read back from its characters (true for
    /// dark), as a scanner would see the printed ink.
    fn modules(drawn: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in drawn.lines() {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (false, false),
                    '▀' => (false, true),
                    '▄' => (true, false),
                    ' ' => (true, true),
                    other => panic!("unexpected {other:?} in a drawn code"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    /// Decodes the modules with rqrr, as a phone would: scaled up, on a
    /// white page.
    fn decode(rows: &[Vec<bool>]) -> String {
        const SCALE: usize = 4;
        const MARGIN: usize = 8;
        let n = rows[0].len();
        let side = n * SCALE + 2 * MARGIN;
        let dark = |x: usize, y: usize| {
            let (x, y) = (
                x.checked_sub(MARGIN)? / SCALE,
                y.checked_sub(MARGIN)? / SCALE,
            );
            rows.get(y)?.get(x).copied()
        };
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            if dark(x, y) == Some(true) { 0 } else { 255 }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one code found");
        grids[0].decode().expect("the code decodes").1
    }

    #[test]
    fn the_drawn_code_decodes_back_to_the_url() {
        let url = format!(
            "https://ssh.demo.test/cdn-cgi/access/cli?aud={}&edge_token_transfer=true\
             &redirect_url=https%3A%2F%2Fssh.demo.test%3Faud%3D{0}%26token%3Dq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA%253D\
             &send_org_token=true&token=q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA%3D",
            "a".repeat(64)
        );
        let drawn = render(&url).unwrap();
        assert!(drawn.columns <= 80, "fits 80 columns: {}", drawn.columns);
        for line in drawn.text.lines() {
            assert_eq!(line.chars().count(), drawn.columns);
        }
        assert_eq!(drawn.text.lines().count(), drawn.columns.div_ceil(2));
        assert_eq!(decode(&modules(&drawn.text)), url);
    }

    #[test]
    fn the_quiet_zone_is_inked_all_round() {
        let drawn = render("https://h.example/").unwrap();
        let rows = modules(&drawn.text);
        let n = drawn.columns;
        for q in 0..QUIET_ZONE {
            assert!(rows[q].iter().all(|&dark| !dark), "top");
            assert!(rows[n - 1 - q].iter().all(|&dark| !dark), "bottom");
            for row in &rows[..n] {
                assert!(!row[q] && !row[n - 1 - q], "left and right");
            }
        }
    }

    #[test]
    fn text_too_long_for_a_code_is_not_drawn() {
        assert!(render(&"x".repeat(4000)).is_none());
    }
}
