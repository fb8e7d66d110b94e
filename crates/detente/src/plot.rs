//! Charts of a benchmark's per-minute figures as PNG, with nothing but the
//! standard library: line charts drawn into an indexed-colour raster,
//! written as PNG (ISO/IEC 15948) with a zlib stream (RFC 1950) of fixed-
//! Huffman DEFLATE blocks (RFC 1951) whose only matches are runs — a chart
//! is mostly background, so runs are nearly all there is to compress.

use anyhow::{Context, Result, bail};

/// A row of numbers as the CSV and the console show it (space-separated;
/// the CSV replaces the spaces with commas).
pub(crate) fn csv_row(row: &[f64]) -> String {
    row.iter()
        .map(|x| {
            if !x.is_finite() {
                "nan".to_string()
            } else if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The rows of a CSV written by [`csv_row`] (its header line skipped).
pub(crate) fn read_csv(path: &std::path::Path) -> Result<Vec<Vec<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let row = line
            .split(',')
            .map(|c| {
                if c == "nan" {
                    Ok(f64::NAN)
                } else {
                    c.parse::<f64>()
                }
            })
            .collect::<Result<Vec<f64>, _>>()
            .with_context(|| format!("{} line {}: not numbers", path.display(), i + 1))?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{} holds no rows", path.display());
    }
    Ok(rows)
}

/// The least-squares slope of `y` against its index (units per step).
pub(crate) fn slope(y: &[f64]) -> f64 {
    let pts: Vec<(f64, f64)> = y
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (i as f64, *v))
        .collect();
    let n = pts.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

const WIDTH: usize = 960;
const PANEL: usize = 300;
const LEFT: usize = 56;
const RIGHT: usize = 16;
const TOP: usize = 14;
const BOTTOM: usize = 26;

/// Palette: background, axes, grid, then the series' colours.
const PALETTE: [[u8; 3]; 8] = [
    [255, 255, 255],
    [40, 40, 40],
    [225, 225, 225],
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
];
const AXIS: u8 = 1;
const GRID: u8 = 2;
const FIRST_SERIES: u8 = 3;

/// 3×5 digits (and '.'), one row of three bits per line, top first.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        _ => return None,
    })
}

struct Raster {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Raster {
    fn set(&mut self, x: i64, y: i64, c: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    /// A line (Bresenham), `thick` pixels wide vertically.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: u8, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for t in 0..thick {
                self.set(x, y + t, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// `text` (digits and '.') at 2× scale, its right edge at `x`.
    fn text_right(&mut self, x: i64, y: i64, text: &str, c: u8) {
        let w = text.chars().count() as i64 * 8;
        for (i, ch) in text.chars().enumerate() {
            let Some(g) = glyph(ch) else { continue };
            let x0 = x - w + i as i64 * 8;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for (ddx, ddy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x0 + col * 2 + ddx, y + row as i64 * 2 + ddy, c);
                        }
                    }
                }
            }
        }
    }
}

/// A round step of about a fifth of `span` (1, 2 or 5 × 10ⁿ).
fn step(span: f64) -> f64 {
    let raw = (span / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A panel: its title and its named series (one value per minute).
pub(crate) type Panel<'a> = (&'a str, Vec<(&'a str, Vec<f64>)>);

/// Panels stacked top to bottom, each with its series against the minute
/// (x from 1 to the longest series): y from 0 to a round maximum, labelled;
/// x labelled in minutes. Series colours follow the palette in order
/// (blue, red, green, then purple and orange), continuing across panels.
pub(crate) fn chart(panels: &[Panel<'_>]) -> Vec<u8> {
    let h = panels.len() * (PANEL + TOP + BOTTOM);
    let mut r = Raster {
        w: WIDTH,
        h,
        px: vec![0; WIDTH * h],
    };
    let mut colour = FIRST_SERIES;
    for (p, (_, series)) in panels.iter().enumerate() {
        let top = p * (PANEL + TOP + BOTTOM) + TOP;
        let (x0, x1) = (LEFT as i64, (WIDTH - RIGHT) as i64);
        let (y0, y1) = ((top + PANEL) as i64, top as i64);
        let n = series
            .iter()
            .map(|(_, s)| s.len())
            .max()
            .unwrap_or(1)
            .max(2);
        let max = series
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let ystep = step(if max > 0.0 { max } else { 1.0 });
        let ymax = (max / ystep).ceil().max(1.0) * ystep;
        let px_x = |i: usize| x0 + ((x1 - x0) as f64 * i as f64 / (n - 1) as f64).round() as i64;
        let px_y = |v: f64| y0 - ((y0 - y1) as f64 * v / ymax).round() as i64;
        // Grid and y labels.
        let mut v = 0.0;
        while v <= ymax + ystep / 2.0 {
            let y = px_y(v);
            r.line((x0, y), (x1, y), GRID, 1);
            r.text_right(x0 - 6, y - 5, &label(v), AXIS);
            v += ystep;
        }
        // x labels: minutes.
        let xstep = step(n as f64).max(1.0) as usize;
        let mut m = xstep;
        while m <= n {
            let x = px_x(m - 1);
            r.line((x, y0), (x, y0 + 4), AXIS, 1);
            let text = label(m as f64);
            let right = (x + 4 * text.len() as i64).min(WIDTH as i64 - 2);
            r.text_right(right, y0 + 8, &text, AXIS);
            m += xstep;
        }
        r.line((x0, y0), (x1, y0), AXIS, 1);
        r.line((x0, y0), (x0, y1), AXIS, 1);
        for (_, s) in series {
            let mut last: Option<(i64, i64)> = None;
            for (i, v) in s.iter().enumerate() {
                if !v.is_finite() {
                    last = None;
                    continue;
                }
                let pt = (px_x(i), px_y(*v));
                match last {
                    Some(l) => r.line(l, pt, colour, 2),
                    None => r.line(pt, pt, colour, 2),
                }
                last = Some(pt);
            }
            colour = if colour as usize + 1 < PALETTE.len() {
                colour + 1
            } else {
                FIRST_SERIES
            };
        }
    }
    png(&r)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for b in bytes {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// An 8-bit indexed-colour PNG of the raster.
fn png(r: &Raster) -> Vec<u8> {
    let mut raw = Vec::with_capacity((r.w + 1) * r.h);
    for row in r.px.chunks(r.w) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(r.w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(r.h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"PLTE", &PALETTE.concat());
    chunk(&mut out, b"IDAT", &zlib(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// LSB-first bit writer (RFC 1951 §3.1.1).
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, sent most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let mut rev = 0;
        for i in 0..len {
            rev |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(rev, len);
    }

    /// A literal/length symbol in the fixed code (§3.2.6).
    fn symbol(&mut self, s: u32) {
        match s {
            0..=143 => self.code(0x30 + s, 8),
            144..=255 => self.code(0x190 + s - 144, 9),
            256..=279 => self.code(s - 256, 7),
            _ => self.code(0xc0 + s - 280, 8),
        }
    }

    /// A match of `len` (3..=258) at distance 1 (§3.2.5).
    fn run(&mut self, len: u32) {
        const BASE: [u32; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        let i = BASE.iter().rposition(|b| *b <= len).unwrap_or(0);
        self.symbol(257 + i as u32);
        self.put(len - BASE[i], EXTRA[i]);
        self.code(0, 5); // distance code 0: distance 1
    }
}

/// A zlib stream of one fixed-Huffman block whose matches are runs of the
/// byte before.
fn zlib(data: &[u8]) -> Vec<u8> {
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // the final block
    b.put(1, 2); // fixed Huffman codes
    let mut i = 0;
    while i < data.len() {
        let mut run = 0;
        if i > 0 {
            while i + run < data.len() && run < 258 && data[i + run] == data[i - 1] {
                run += 1;
            }
        }
        if run >= 3 {
            b.run(run as u32);
            i += run;
        } else {
            b.symbol(u32::from(data[i]));
            i += 1;
        }
    }
    b.symbol(256);
    b.put(0, 7); // flush to a byte boundary
    let mut out = b.out;
    let (mut s1, mut s2) = (1u32, 0u32);
    for x in data {
        s1 = (s1 + u32::from(*x)) % 65_521;
        s2 = (s2 + s1) % 65_521;
    }
    out.extend_from_slice(&((s2 << 16) | s1).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A DEFLATE reader of exactly what [`zlib`] writes (fixed codes,
    /// distance-1 matches), written from RFC 1951, to check the round trip.
    fn inflate(z: &[u8]) -> Vec<u8> {
        assert_eq!(&z[..2], &[0x78, 0x01]);
        assert_eq!((u32::from(z[0]) * 256 + u32::from(z[1])) % 31, 0, "FCHECK");
        let body = &z[2..z.len() - 4];
        let mut pos = 0usize;
        let mut bit = |n: u32| -> u32 {
            let mut v = 0;
            for i in 0..n {
                let b = (body[pos / 8] >> (pos % 8)) & 1;
                v |= u32::from(b) << i;
                pos += 1;
            }
            v
        };
        assert_eq!(bit(1), 1);
        assert_eq!(bit(2), 1);
        let mut out: Vec<u8> = Vec::new();
        loop {
            // Read a fixed-code symbol MSB first: 7 bits, then up to 9.
            let mut code = 0u32;
            let mut len = 0;
            let sym = loop {
                code = (code << 1) | bit(1);
                len += 1;
                match len {
                    7 if code <= 0x17 => break code + 256,
                    8 if (0x30..=0xbf).contains(&code) => break code - 0x30,
                    8 if (0xc0..=0xc7).contains(&code) => break code - 0xc0 + 280,
                    9 if (0x190..=0x1ff).contains(&code) => break code - 0x190 + 144,
                    9 => panic!("bad code"),
                    _ => {}
                }
            };
            match sym {
                0..=255 => out.push(sym as u8),
                256 => break,
                _ => {
                    const BASE: [u32; 29] = [
                        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
                        67, 83, 99, 115, 131, 163, 195, 227, 258,
                    ];
                    const EXTRA: [u32; 29] = [
                        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5,
                        5, 5, 5, 0,
                    ];
                    let i = (sym - 257) as usize;
                    let n = BASE[i] + bit(EXTRA[i]);
                    let mut d = 0;
                    for _ in 0..5 {
                        d = (d << 1) | bit(1);
                    }
                    assert_eq!(d, 0, "distance 1");
                    for _ in 0..n {
                        out.push(*out.last().unwrap());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_zlib_stream_inflates_to_its_input_with_the_right_checksum() {
        let mut data = vec![0u8; 5000];
        data.extend((0..=255u8).cycle().take(3000));
        data.extend([7u8; 300]);
        data.extend([1, 2, 1, 2, 2, 2, 9]);
        let z = zlib(&data);
        assert!(z.len() < data.len() / 2, "runs are compressed");
        assert_eq!(inflate(&z), data);
        // Adler-32 of "Wikipedia" is 0x11E60398 (RFC 1950's algorithm).
        let z = zlib(b"Wikipedia");
        assert_eq!(&z[z.len() - 4..], &0x11E6_0398u32.to_be_bytes());
    }

    #[test]
    fn crc32_is_the_pngs() {
        // The CRC of the IEND chunk type, as every PNG ends.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_chart_is_a_png_of_the_stated_size_with_its_series_drawn() {
        let rising: Vec<f64> = (0..60).map(|i| 100.0 + i as f64).collect();
        let flat = vec![5.0; 60];
        let png = chart(&[
            ("p99", vec![("a", flat.clone()), ("b", rising.clone())]),
            ("mib", vec![("c", rising)]),
        ]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize;
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap()) as usize;
        assert_eq!((w, h), (WIDTH, 2 * (PANEL + TOP + BOTTOM)));
        // The IDAT holds every row: filter byte plus indices; each series'
        // colour is present.
        let at = png.windows(4).position(|c| c == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
        let raw = inflate(&png[at + 4..at + 4 + len]);
        assert_eq!(raw.len(), h * (w + 1));
        for c in [FIRST_SERIES, FIRST_SERIES + 1, FIRST_SERIES + 2] {
            assert!(raw.contains(&c), "colour {c} is drawn");
        }
    }

    #[test]
    fn slopes_and_steps() {
        let y: Vec<f64> = (0..10).map(|i| 3.0 + 2.0 * i as f64).collect();
        assert!((slope(&y) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[1.0, 1.0, 1.0]), 0.0);
        assert_eq!(step(100.0), 20.0);
        assert_eq!(step(7.0), 2.0);
        assert_eq!(step(0.9), 0.2);
    }
}
