//! Leaks that must be found, and how fast.

use super::*;

#[test]
fn steady_leak_2_per_s_is_leak_within_10_s() {
    let (t, live) = series(120, |t| 2 * t as i64);
    for k in 0..6 {
        let v = judge_at(&t, &live, k, &no_facts);
        assert_eq!(v.kind, Fine, "{k}: {v:?}");
        assert_eq!(v.reason, format!("too few samples ({k})"));
    }
    for facts in [&no_facts as &dyn Fn(f64) -> Facts, &leaky_facts(0.0)] {
        for k in 10..=120 {
            let v = judge_at(&t, &live, k, facts);
            assert_eq!(v.kind, Leak, "{k}: {v:?}");
            assert!((v.growth_per_s - 2.0).abs() < 1e-9, "{v:?}");
        }
    }
    let v = judge_at(&t, &live, 19, &leaky_facts(0.0));
    assert!(
        v.reason
            .starts_with("+2.0/s for 18 s to 36 live, grew in 18 of 18 intervals"),
        "{}",
        v.reason
    );
    assert!(v.reason.contains(
        "oldest live task 18 s old while tasks of this site normally finish within 0.01 s"
    ));
    assert!(v.confidence > 0.95, "{v:?}");
}

#[test]
fn leak_2_per_s_with_small_noise_is_leak_within_10_s() {
    for seed in 0..50 {
        let mut rng = Lcg::new(seed);
        let (t, live) = series(60, |t| 10 + 2 * t as i64 + rng.int(-1, 1));
        for k in 11..=60 {
            let v = judge_at(&t, &live, k, &no_facts);
            assert_eq!(v.kind, Leak, "seed {seed} k {k}: {v:?} {:?}", &live[..k]);
        }
    }
}

#[test]
fn leak_under_healthy_churn() {
    for seed in 0..12 {
        let mut rng = Lcg::new(100 + seed);
        // 1 leaked task per second under ~40 short-lived tasks in flight (sd ~6).
        let (t, live) = series(300, |t| t as i64 + 40 + (6.0 * rng.gauss()).round() as i64);
        let with_age = leaky_facts(0.0);
        let k = first_at(&t, &live, 2, Leak, &with_age).expect("flagged");
        assert!(k <= 61, "seed {seed}: leak only at {k}");
        // Judging is stateless, so under this much noise the verdict may still drop out now and
        // then (the last third of the window looking flat by chance); rarely, and never for long.
        let misses: Vec<usize> = (61..=300)
            .filter(|&k| judge_at(&t, &live, k, &with_age).kind != Leak)
            .collect();
        assert!(
            misses.len() <= 5 && misses.windows(3).all(|w| w[2] - w[0] > 2),
            "seed {seed}: {misses:?}"
        );
        let k = first_at(&t, &live, 2, Leak, &no_facts).expect("flagged");
        assert!(
            k <= 91,
            "seed {seed}: leak only at {k} without age evidence"
        );
    }
}

#[test]
fn slow_leak_one_per_5_s_goes_suspect_then_leak() {
    let (t, live) = series(200, |t| (t / 5.0).floor() as i64);
    let with_age = leaky_facts(5.0);
    for (facts, leak_by) in [(&with_age as &dyn Fn(f64) -> Facts, 61), (&no_facts, 121)] {
        for k in [21, 26, 31] {
            assert_eq!(judge_at(&t, &live, k, facts).kind, Suspect, "at {k}");
        }
        let first = first_at(&t, &live, 2, Leak, facts).unwrap();
        assert!((41..=leak_by).contains(&first), "leak at {first}");
        assert!((first..=200).all(|k| judge_at(&t, &live, k, facts).kind == Leak));
    }
    // With a little churn on top it still gets there within two minutes.
    for seed in 0..10 {
        let mut rng = Lcg::new(200 + seed);
        let (t, live) = series(200, |t| 3 + (t / 5.0).floor() as i64 + rng.int(-1, 1));
        let first = first_at(&t, &live, 2, Leak, &with_age).unwrap();
        assert!(first <= 121, "seed {seed}: leak at {first}");
    }
}

#[test]
fn evidence_raises_confidence() {
    // The same slow series at 40 s: trend alone, + idle tasks, + old tasks, + both.
    let (t, live) = series(41, |t| (t / 5.0).floor() as i64);
    let with = |oldest: bool, idle: bool| {
        move |now: f64| Facts {
            oldest: oldest.then_some(now),
            p99: oldest.then_some(0.01),
            max_fin: oldest.then_some(0.05),
            idle: idle.then_some(1.0),
            finished: 100,
        }
    };
    let conf = |f: &dyn Fn(f64) -> Facts| judge_at(&t, &live, 41, f).confidence;
    let (bare, idle, old, both) = (
        conf(&with(false, false)),
        conf(&with(false, true)),
        conf(&with(true, false)),
        conf(&with(true, true)),
    );
    // (age 0.35 + monotonic 0.15 already reach the 0.5 cap on evidence: idle adds no more there)
    assert!(
        bare < idle && idle < old && old <= both,
        "{bare} {idle} {old} {both}"
    );
    assert_eq!(judge_at(&t, &live, 41, &with(false, false)).kind, Suspect);
    // A monotonic series earns more than the same rise with dips on the way.
    let (_, dippy) = series(41, |t| {
        (t / 5.0).floor() as i64 + [0, 1, 0, -1][t as usize % 4]
    });
    let smooth = judge_at(&t, &live, 41, &no_facts).confidence;
    assert!(judge_at(&t, &dippy, 41, &no_facts).confidence < smooth);
}

#[test]
fn leak_starting_late_is_found_quickly() {
    let mut rng = Lcg::new(8);
    let (t, live) = series(700, |t| {
        50 + rng.int(-2, 2) + if t >= 600.0 { (t - 600.0) as i64 } else { 0 }
    });
    assert!((2..=600).all(|k| judge_at(&t, &live, k, &no_facts).kind == Fine));
    let first = first_at(&t, &live, 600, Leak, &leaky_facts(600.0)).unwrap();
    assert!(first <= 640, "leak at {first}");
}

#[test]
fn irregular_sampling_and_long_series() {
    let mut rng = Lcg::new(9);
    let mut now = 0.0;
    let (t, live): (Vec<f64>, Vec<i64>) = (0..40)
        .map(|_| {
            now += 0.5 + rng.unit();
            (now, (2.0 * now).round() as i64)
        })
        .unzip();
    let k = (1..=40).find(|&k| t[k - 1] - t[0] >= 10.0).unwrap();
    assert_eq!(judge_at(&t, &live, k, &no_facts).kind, Leak);
    // 5000 samples: downsampled, still right, and fast enough.
    let (t, live) = series(5000, |t| 1000 + (t / 10.0) as i64 + rng.int(-5, 5));
    let started = std::time::Instant::now();
    assert_eq!(judge_at(&t, &live, 5000, &no_facts).kind, Leak);
    let (t, live) = series(5000, |_| 1000 + rng.int(-30, 30));
    assert_eq!(judge_at(&t, &live, 5000, &no_facts).kind, Fine);
    assert!(started.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn clean_leak_beating_against_the_sampler_is_leak() {
    // Issue #14: one goroutine leaked every 100 ms, sampled every ~1 s by a sampler whose phase
    // wanders against the program's ticker: increments of 7..13, residuals of a task or two with a
    // lag-1 autocorrelation near 0.9. The old correction multiplied var(S) by up to 19.
    let t: Vec<f64> = (1..=20).map(f64::from).collect();
    let live: Vec<i64> = t
        .iter()
        .map(|&s| 16 + (10.0 * (s + 0.3 * (s * std::f64::consts::TAU / 15.0).sin())).floor() as i64)
        .collect();
    let facts = leaky_facts(0.0);
    for k in 6..=20 {
        let v = judge_at(&t, &live, k, &facts);
        assert_eq!(v.kind, Leak, "{k}: {v:?} {:?}", &live[..k]);
    }
    // The same series with the correction applied whatever the rise: no longer significant.
    let old = DetectConfig { autocorr_q_full: 1e9, ..DetectConfig::default() };
    let f = facts(20.0);
    let s = SiteSeries {
        t_s: &t,
        live: &live,
        finished_total: f.finished,
        oldest_live_age_s: f.oldest,
        finished_age_p99_s: f.p99,
        max_finished_age_s: f.max_fin,
        idle_fraction: f.idle,
    };
    assert_ne!(judge(&s, &old).kind, Leak, "the beat must matter to the old correction: {:?}", judge(&s, &old));
}
