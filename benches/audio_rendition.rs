//! The AAC rendition's cost per 20 ms Opus frame (decode + AAC-LC encode), which a stream pays
//! once on its publisher's core while any player needs AAC, and the Opus decoder's fidelity
//! against libopus (ffmpeg's `-c:a libopus` decoder), printed as an SNR in dB.
//!
//! `cargo bench --bench audio_rendition` (needs ffmpeg on PATH to make the Opus source).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use ringcast::media::aac::{AacRendition, OpusDecoder};

/// The packets of an Ogg file, by page lacing.
fn ogg_packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = data[at + 26] as usize;
        let mut body = at + 27 + segments;
        for &lace in &data[at + 27..at + 27 + segments] {
            current.extend_from_slice(&data[body..body + lace as usize]);
            body += lace as usize;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    packets
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// 10 s of stereo music-like test audio as Ogg Opus at 128 kbit/s.
fn source(dir: &Path) -> (Vec<Vec<u8>>, std::path::PathBuf) {
    let ogg = dir.join("bench.ogg");
    let input = "aevalsrc=sin(440*2*PI*t)*0.4+sin(1250*2*PI*t)*0.2+0.05*random(0)|sin(660*2*PI*t)*0.4:s=48000";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        input,
        "-t",
        "10",
        "-c:a",
        "libopus",
        "-b:a",
        "128k",
        "-f",
        "ogg",
        ogg.to_str().unwrap_or_default(),
    ]);
    let data = std::fs::read(&ogg).unwrap_or_default();
    (ogg_packets(&data), ogg)
}

/// SNR of the rendition's decoder (libopus 1.3.1 as Rust) against ffmpeg's libopus, in dB.
fn snr_vs_libopus(packets: &[Vec<u8>], ogg: &Path) -> f64 {
    let reference = ffmpeg(&[
        "-c:a",
        "libopus",
        "-i",
        ogg.to_str().unwrap_or_default(),
        "-f",
        "s16le",
        "-ac",
        "2",
        "-",
    ]);
    let reference: Vec<i16> = reference
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let pre_skip = u16::from_le_bytes([packets[0][10], packets[0][11]]) as usize;
    let mut decoder = OpusDecoder::new(2).unwrap_or_else(|e| panic!("libopus error {e}"));
    let mut ours = Vec::new();
    let mut pcm = vec![0i16; 5760 * 2];
    for p in &packets[2..] {
        let n = decoder.decode(p, &mut pcm).unwrap_or(0);
        ours.extend_from_slice(&pcm[..n * 2]);
    }
    let ours = &ours[(pre_skip * 2).min(ours.len())..];
    let n = ours.len().min(reference.len());
    let (mut signal, mut noise) = (0f64, 0f64);
    for (a, b) in ours[..n].iter().zip(&reference[..n]) {
        signal += f64::from(*b).powi(2);
        noise += (f64::from(*a) - f64::from(*b)).powi(2);
    }
    10.0 * (signal / noise.max(1e-9)).log10()
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ringcast-bench-aac-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (packets, ogg) = source(&dir);
    println!(
        "unsafe-libopus vs ffmpeg's libopus: SNR {:.1} dB over {} packets",
        snr_vs_libopus(&packets, &ogg),
        packets.len() - 2
    );
    let frames = &packets[2..];
    let mut rendition = AacRendition::new(2, 128).unwrap_or_else(|e| panic!("{e}"));
    let mut i = 0usize;
    let mut ts = 0u32;
    c.bench_function("aac_rendition_per_20ms_opus_frame", |b| {
        b.iter(|| {
            let packet = &frames[i % frames.len()];
            i += 1;
            ts = ts.wrapping_add(20);
            let _ = rendition.push_opus(ts, black_box(packet), |t, body| {
                black_box((t, body));
            });
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
