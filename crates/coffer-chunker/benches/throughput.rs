//! Throughput of the chunker on pseudo-random data, or on the file named by `CHUNK_FILE`
//! (plain `std::time`, no criterion): `cargo bench -p coffer-chunker`. `bench/limit.sh`
//! uses the file form for a stream's chunking stage.
//!
//! Prints the best of several runs by wall clock and, on Linux, by on-CPU
//! time of the thread (from `/proc/thread-self/schedstat`), which is less
//! disturbed by other processes competing for the CPU.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use coffer_chunker::{ChunkReader, Chunker, Pol};

fn random_data(n: usize, mut s: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        // splitmix64
        s = s.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// On-CPU time of the current thread, if the kernel tells.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn measure(name: &str, bytes: usize, runs: usize, mut f: impl FnMut() -> usize) {
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut chunks = 0;
    for _ in 0..runs {
        let c = cpu_time();
        let t = Instant::now();
        chunks = black_box(f());
        best = best.min(t.elapsed());
        if let (Some(c0), Some(c1)) = (c, cpu_time()) {
            best_cpu = best_cpu.min(c1 - c0);
        }
    }
    let mbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    let cpu = if best_cpu == Duration::MAX {
        String::new()
    } else {
        format!(", {:6.0} MB/s on-CPU", mbs(best_cpu))
    };
    println!(
        "{name:<32} {:6.0} MB/s wall{cpu}  ({chunks} chunks, avg {} KiB, best of {runs})",
        mbs(best),
        bytes / chunks.max(1) / 1024
    );
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (size, runs) = if quick { (16 << 20, 3) } else { (64 << 20, 30) };
    let (data, runs) = match std::env::var_os("CHUNK_FILE") {
        Some(f) => match std::fs::read(&f) {
            Ok(d) => (d, 3),
            Err(e) => {
                eprintln!("CHUNK_FILE {}: {e}", f.to_string_lossy());
                std::process::exit(2);
            }
        },
        None => (random_data(size, 42), runs),
    };
    let size = data.len();
    let pol = Pol(0x3DA3358B4DC173);

    measure("next_boundary, whole buffer", size, runs, || {
        let mut c = Chunker::new(pol);
        let mut rest = &data[..];
        let mut n = 0;
        while let Some(k) = c.next_boundary(rest) {
            rest = &rest[k..];
            n += 1;
        }
        n + usize::from(!rest.is_empty())
    });

    measure("next_boundary, 64 KiB slices", size, runs, || {
        let mut c = Chunker::new(pol);
        let mut n = 0;
        for mut piece in data.chunks(64 << 10) {
            while let Some(k) = c.next_boundary(piece) {
                piece = &piece[k..];
                n += 1;
            }
        }
        n + usize::from(c.chunk_len() > 0)
    });

    measure("ChunkReader (Vec per chunk)", size, runs, || {
        ChunkReader::new(&data[..], pol)
            .map(|c| black_box(c.unwrap()).len())
            .filter(|&l| l > 0)
            .count()
    });
}
