//! Benchmark of leakprof's own cost over a long run: feeds synthetic samples of N sites into the
//! bounded history as if sampled every second for H hours, then takes the last samples the way a
//! run does (push + judge every site) and prints RSS and CPU per sample. Run by
//! `cargo xtask bench-history`, one process per run length, so RSS is each length's own.
//!
//! usage: bench_history SITES HOURS
use leakprof::{
    daemon::metrics::own_usage,
    detect::DetectConfig,
    history::DEFAULT_CAPACITY,
    judged::Judged,
    sample::{Sample, SiteObs, SiteTotals},
};

/// Live count of site `k` at second `i`: a mix of leaking, stable and noisy sites.
fn live(k: u64, i: u64) -> i64 {
    let noise = ((i.wrapping_mul(2_654_435_761) ^ k.wrapping_mul(40_503)) % 7) as i64 - 3;
    match k % 4 {
        0 => (i / (5 + k % 10)) as i64, // slow leak
        1 => 50 + noise,                 // stable, noisy
        2 => 8,                          // fixed pool
        _ => 20 + (noise * 3).abs(),     // churn
    }
}

fn sample(sites: u64, i: u64) -> Sample<u64> {
    Sample {
        now_ns: i * 1_000_000_000,
        sites: (0..sites)
            .map(|k| SiteObs {
                key: k,
                live: live(k, i),
                totals: SiteTotals { spawned: i, finished: i / 2, ..SiteTotals::default() },
                oldest_born_ns: Some(0),
                idle: Some((1, 2)),
            })
            .collect(),
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("SITES HOURS")).collect();
    let (sites, hours) = (args[0], args[1]);
    let n = hours * 3600;
    let measured = 20;
    let cfg = DetectConfig::default();
    let mut j: Judged<u64> = Judged::new(DEFAULT_CAPACITY);
    // the run so far: every sample goes into the history (judging each one too would only cost
    // time here: a judgement depends on the bounded history, not on what was judged before)
    for i in 0..n - measured {
        j.history.push(i as f64, &sample(sites, i));
    }
    let (cpu0, _) = own_usage();
    let t0 = std::time::Instant::now();
    for i in n - measured..n {
        j.push(i as f64, &sample(sites, i), &cfg);
    }
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3 / measured as f64;
    let (cpu1, rss) = own_usage();
    println!(
        "{sites} sites, {hours} h at 1 s ({n} samples): kept {} samples, series {:.1} MiB, RSS {:.1} MiB, CPU {:.1} ms/sample (wall {:.1} ms)",
        j.history.times_s.len(),
        j.history.series_bytes() as f64 / (1 << 20) as f64,
        rss as f64 / (1 << 20) as f64,
        (cpu1 - cpu0) * 1e3 / measured as f64,
        wall_ms
    );
}
