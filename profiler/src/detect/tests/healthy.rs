//! Healthy patterns that must never be called a leak.

use super::*;

#[test]
fn fixed_pool_and_long_lived_tasks_are_ok() {
    // A pool of 8 workers spawned 2 s after attach, never finishing; idle most of the time.
    let (t, live) = series(300, |t| if t < 2.0 { 0 } else { 8 });
    let facts = |now: f64| Facts {
        oldest: Some((now - 2.0).max(0.0)),
        idle: Some(1.0),
        ..Facts::default()
    };
    for k in 0..=300 {
        let v = judge_at(&t, &live, k, &facts);
        assert_eq!(v.kind, Fine, "{k}: {v:?}");
    }
    assert!(judge_at(&t, &live, 300, &facts)
        .reason
        .starts_with("stable around 8"));
    // Five tasks alive since attach.
    let (t, live) = series(300, |_| 5);
    for k in 0..=300 {
        assert_eq!(judge_at(&t, &live, k, &facts).kind, Fine);
    }
}

#[test]
fn warm_up_ramp_then_plateau_is_ok() {
    for seed in 0..12 {
        let mut rng = Lcg::new(300 + seed);
        // 5 new connections/s for 20 s, then a plateau of 100 with a little churn.
        let (t, live) = series(300, |t| (5.0 * t.min(20.0)) as i64 + rng.int(-3, 3));
        let facts = |now: f64| Facts {
            oldest: Some(now),
            ..Facts::default()
        };
        for k in checkpoints(31, 90, 300, 3) {
            // From t = 30 on, the plateau is at least a third of the window.
            let v = judge_at(&t, &live, k, &facts);
            assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
            if k >= 45 {
                assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
            }
        }
        let v = judge_at(&t, &live, 60, &facts);
        assert!(
            v.reason.starts_with("levelled off around") && v.reason.contains("after rising from"),
            "{v:?}"
        );
    }
    // A smooth saturating warm-up: 100 * (1 - exp(-t/10)).
    let (t, live) = series(300, |t| (100.0 * (1.0 - (-t / 10.0).exp())).round() as i64);
    for k in 45..=300 {
        assert_ne!(judge_at(&t, &live, k, &no_facts).kind, Leak, "{k}");
    }
    for k in 90..=300 {
        assert_eq!(judge_at(&t, &live, k, &no_facts).kind, Fine, "{k}");
    }
}

#[test]
fn bursts_returning_to_baseline_are_ok() {
    for seed in 0..10 {
        let mut rng = Lcg::new(400 + seed);
        // Every 30 s a 6 s burst of +80 (ramping up and down over 2 s), baseline 20 +- 2.
        let burst = |t: f64| match (t as i64 + 20) % 30 {
            0 => 40,
            1..=4 => 80,
            5 => 40,
            _ => 0,
        };
        let (t, live) = series(300, |t| 20 + burst(t) + rng.int(-2, 2));
        let facts = |now: f64| Facts {
            oldest: Some(now.min(6.0)),
            p99: Some(6.0),
            finished: 500,
            ..Facts::default()
        };
        for k in checkpoints(2, 100, 300, 2) {
            let v = judge_at(&t, &live, k, &facts);
            assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
            if burst(t[k - 1]) == 0 && k > 20 {
                assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
            }
        }
        let v = judge_at(&t, &live, 100, &facts);
        assert!(
            v.reason.starts_with("returns to baseline around 2"),
            "{v:?}"
        );
    }
}

#[test]
fn high_stable_noisy_count_is_ok() {
    for seed in 0..6 {
        let mut rng = Lcg::new(500 + seed);
        let (t, live) = series(400, |_| 200 + (10.0 * rng.gauss()).round() as i64);
        let mut ar = 0.0;
        let (_, live_ar) = series(400, |_| {
            ar = 0.7 * ar + 6.0 * rng.gauss();
            200 + ar.round() as i64
        });
        for (name, live) in [("iid", &live), ("ar1", &live_ar)] {
            for k in checkpoints(2, 120, 400, 4) {
                let v = judge_at(&t, live, k, &no_facts);
                assert_eq!(v.kind, Fine, "{name} seed {seed} k {k}: {v:?}");
            }
        }
        let v = judge_at(&t, &live, 400, &no_facts);
        assert!(
            v.reason.starts_with("stable around 19") || v.reason.starts_with("stable around 20"),
            "{v:?}"
        );
        assert!(
            v.reason.contains(" (sd ") && v.reason.ends_with(" for 399 s"),
            "{v:?}"
        );
    }
}

#[test]
fn step_up_once_then_flat_is_ok_eventually() {
    for seed in 0..10 {
        let mut rng = Lcg::new(600 + seed);
        let (t, live) = series(240, |t| if t < 30.0 { 10 } else { 60 } + rng.int(-1, 1));
        // The 50 new tasks may well be stuck for good (old, while others finish fast): still a
        // fixed set, not growth.
        let stuck = leaky_facts(30.0);
        for facts in [&no_facts as &dyn Fn(f64) -> Facts, &stuck] {
            for k in checkpoints(2, 80, 240, 2) {
                let v = judge_at(&t, &live, k, facts);
                assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
                if k >= 50 {
                    assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
                }
            }
        }
    }
}

#[test]
fn decreasing_is_ok() {
    let (t, live) = series(60, |t| 100 - t as i64);
    let v = judge_at(&t, &live, 60, &no_facts);
    assert_eq!(v.kind, Fine);
    assert_eq!(v.reason, "decreasing (-1.0/s over 59 s)");
    assert!((v.growth_per_s + 1.0).abs() < 1e-9);
    let mut rng = Lcg::new(7);
    let (t, live) = series(120, |t| 300 - (t / 2.0) as i64 + rng.int(-5, 5));
    assert!((2..=120).all(|k| judge_at(&t, &live, k, &no_facts).kind == Fine));
}

#[test]
fn young_live_tasks_veto_a_leak() {
    // Long-lived sessions (normally ~10 min) ramping up: growth, but nothing is unusually old.
    let (t, live) = series(120, |t| t as i64);
    let facts = |now: f64| Facts {
        oldest: Some(now),
        p99: Some(600.0),
        max_fin: Some(900.0),
        finished: 50,
        ..Facts::default()
    };
    let v = judge_at(&t, &live, 120, &facts);
    assert_eq!(v.kind, Suspect, "{v:?}");
    assert!(
        v.reason
            .contains("not yet a leak: its oldest live task is only"),
        "{}",
        v.reason
    );
    // Requests in flight climbing with load: every live task is younger than the normal 2 s
    // lifetime, so the growth is arrival rate, not accumulation.
    let load = |_: f64| Facts {
        oldest: Some(1.5),
        p99: Some(2.0),
        max_fin: Some(3.0),
        finished: 5000,
        ..Facts::default()
    };
    for k in checkpoints(2, 60, 120, 5) {
        let v = judge_at(&t, &live, k, &load);
        assert_ne!(v.kind, Leak, "{k}: {v:?}");
        if k >= 10 {
            assert_eq!(v.kind, Fine, "{k}: {v:?}");
        }
    }
    let v = judge_at(&t, &live, 60, &load);
    assert!(
        v.reason
            .starts_with("more load, not accumulation: no live task is older than 2.0 s"),
        "{v:?}"
    );
}
