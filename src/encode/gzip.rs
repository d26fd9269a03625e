//! The gzip compressor: one zlib-rs deflate state kept from body to body
//! and reset for each, made through zlib-rs's own API because flate2 fixes
//! two of its sizes that matter to an agent of a few MiB.
//!
//! - **The window** is sized to the bodies (`window_bits_for`): the
//!   smallest whose buffer (twice the window) holds the whole body, so
//!   zlib-rs never slides it (a slide rewrites its 64 Ki-entry hash table:
//!   with node_exporter's names a 47 KB body in an 8 KiB window slid five
//!   times a batch, half of the agent's instructions), and no larger (the
//!   window and its chain table are zeroed when made). A larger body makes a
//!   larger compressor, once; a smaller one keeps it.
//! - **The literal buffer** (zlib's `memLevel`): at level 1 zlib-rs's
//!   `deflate_quick` writes one block of fixed Huffman codes and empties
//!   its pending buffer into the output whenever it fills, so the size of
//!   that buffer changes nothing in the bytes made (a test holds it) but
//!   only the memory held: memLevel 8, flate2's, is 112 KiB (a 64 KiB pending
//!   buffer and a 48 KiB symbol buffer that level 1 never uses); 2 is 1.75
//!   KiB. Levels 2 to 9 choose their Huffman codes per block, whose length
//!   is that buffer's: they keep zlib's default.

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status};

/// log2 of the largest gzip window: 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;

/// log2 of the smallest gzip window (9 … 15) whose buffer, twice the window,
/// holds `len` bytes and the matcher's look-ahead (262 bytes) without a slide.
pub fn window_bits_for(len: usize) -> u8 {
    (9..MAX_WINDOW_BITS)
        .find(|b| (2usize << b) >= len + 262)
        .unwrap_or(MAX_WINDOW_BITS)
}

/// zlib's memLevel for a gzip level (module doc): the smallest at level 1,
/// whose output does not depend on it; zlib's default above.
pub fn mem_level_for(level: u32) -> i32 {
    if level <= 1 { 2 } else { 8 }
}

/// A reusable gzip compressor at one level and window.
pub struct Gzip {
    z: Deflate,
    bits: u8,
}

impl Gzip {
    /// A compressor at `level` (1 fastest … 9 smallest) with a window of
    /// 2^`bits` bytes (9 … 15). Allocates its state, a few hundred KiB.
    pub fn new(level: u32, bits: u8) -> Self {
        Self::with_mem_level(level, bits, mem_level_for(level))
    }

    fn with_mem_level(level: u32, bits: u8, mem_level: i32) -> Self {
        let bits = bits.clamp(9, MAX_WINDOW_BITS);
        let config = DeflateConfig {
            level: i32::try_from(level.min(9)).unwrap_or(9),
            // 16 + bits: a gzip header and trailer around the deflate stream.
            window_bits: 16 + i32::from(bits),
            mem_level,
            ..DeflateConfig::default()
        };
        Gzip {
            z: Deflate::new_with_config(config),
            bits,
        }
    }

    /// log2 of this compressor's window.
    pub fn window_bits(&self) -> u8 {
        self.bits
    }

    /// Compresses `input` into `out` (cleared first) as one gzip member.
    /// The output buffer grows as the compressed bytes need it, starting at
    /// an eighth of the input (a cycle's JSON compresses about tenfold at
    /// level 1), so a kept buffer is touched only as far as it is used.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        self.z.reset();
        out.clear();
        out.resize(input.len() / 8 + 1024, 0);
        loop {
            // Since the reset, what was read of `input` and written to `out`.
            let at = |n: u64, len: usize| usize::try_from(n).unwrap_or(usize::MAX).min(len);
            let consumed = at(self.z.total_in(), input.len());
            let written = at(self.z.total_out(), out.len());
            let status = self
                .z
                .compress(
                    &input[consumed..],
                    &mut out[written..],
                    DeflateFlush::Finish,
                )
                .map_err(|e| std::io::Error::other(format!("gzip: {e:?}")))?;
            let written = at(self.z.total_out(), out.len());
            match status {
                Status::StreamEnd => {
                    out.truncate(written);
                    return Ok(());
                }
                Status::Ok | Status::BufError => {
                    let grown = out.len().saturating_mul(2);
                    out.resize(grown, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// A JSON-like body: repetitive keys, varying numbers.
    fn body(n: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..n {
            let line = format!(
                "{{\"measurement\":\"node_network_receive_bytes_total\",\"tags\":{{\"device\":\"eth{}\"}},\"fields\":{{\"value\":{}}}}},",
                i % 7,
                i * 7919 % 100_003
            );
            b.extend_from_slice(line.as_bytes());
        }
        b
    }

    #[test]
    fn the_window_holds_the_whole_body() {
        assert_eq!(window_bits_for(0), 9);
        assert_eq!(window_bits_for(7_234), 12);
        assert_eq!(window_bits_for(8_192 - 262), 12);
        assert_eq!(window_bits_for(8_192 - 261), 13);
        assert_eq!(window_bits_for(47_452), 15);
        assert_eq!(window_bits_for(10 << 20), MAX_WINDOW_BITS);
    }

    #[test]
    fn level_1_makes_the_same_bytes_whatever_the_literal_buffer() {
        for n in [1, 50, 600, 4_000] {
            let input = body(n);
            let bits = window_bits_for(input.len());
            let (mut small, mut default) = (Vec::new(), Vec::new());
            Gzip::new(1, bits).compress(&input, &mut small).unwrap();
            Gzip::with_mem_level(1, bits, 8)
                .compress(&input, &mut default)
                .unwrap();
            assert_eq!(small, default, "{} bytes", input.len());
            assert_eq!(gunzip(&small), input);
        }
    }

    #[test]
    fn every_level_round_trips_and_a_kept_compressor_is_reset() {
        let input = body(2_000);
        let mut out = Vec::new();
        for level in 1..=9 {
            let mut z = Gzip::new(level, window_bits_for(input.len()));
            for _ in 0..2 {
                z.compress(&input, &mut out).unwrap();
                assert_eq!(gunzip(&out), input, "level {level}");
            }
        }
    }

    #[test]
    fn an_output_that_outgrows_its_first_buffer_is_whole() {
        // Random bytes do not compress: the output outgrows input/8 + 1 KiB.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let input: Vec<u8> = (0..100_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut out = Vec::new();
        Gzip::new(1, 15).compress(&input, &mut out).unwrap();
        assert!(out.len() > input.len());
        assert_eq!(gunzip(&out), input);
        Gzip::new(1, 15).compress(&[], &mut out).unwrap();
        assert_eq!(gunzip(&out), b"");
    }
}
