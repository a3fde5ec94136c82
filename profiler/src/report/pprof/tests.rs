use std::io::Read as _;

use prost::Message as _;

use super::*;
use crate::model::{SiteReport, SpawnStack, StackFrame, VerdictKind};

fn frame(f: &str) -> StackFrame {
    StackFrame { function: f.into(), file: Some("src/a.rs".into()), line: Some(7) }
}

fn site(function: &str, live: i64, stacks: Vec<SpawnStack>) -> SiteReport {
    SiteReport {
        spawned: live as u64 + 10,
        finished: 10,
        oldest_age_s: None,
        oldest_age_is_lower_bound: false,
        births_measured: true,
        lifetimes_estimated: false,
        series: vec![live],
        confidence: 0.9,
        growth_per_s: 1.0,
        reason: String::new(),
        idle_fraction: None,
        spawn_stacks: stacks,
        ..crate::model::tests::site(function, VerdictKind::Leak, live)
    }
}

use crate::model::tests::report;

fn decode(gz: &[u8]) -> proto::Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    proto::Profile::decode(raw.as_slice()).unwrap()
}

#[test]
fn apportioning_keeps_the_total() {
    assert_eq!(apportion(10, &[1, 1, 1]).iter().sum::<i64>(), 10);
    assert_eq!(apportion(5, &[3, 0]), vec![5, 0]);
    assert_eq!(apportion(0, &[1, 2]), vec![0, 0]);
    assert_eq!(apportion(7, &[]), Vec::<i64>::new());
    assert_eq!(apportion(3, &[1, 1]).iter().sum::<i64>(), 3);
}

#[test]
fn round_trip_with_stacks_dedups_and_sums() {
    let stacks = vec![
        SpawnStack { samples: 3, live_samples: 3, live_estimate: 0, frames: vec![frame("tokio::bind_inner"), frame("app::leaky")] },
        SpawnStack { samples: 1, live_samples: 1, live_estimate: 0, frames: vec![frame("tokio::bind_inner"), frame("app::other")] },
    ];
    let r = report(vec![site("app::job::{{closure}}", 9, stacks), site("app::idle::{{closure}}", 2, vec![])]);
    let p = decode(&to_pprof(&r));
    assert_eq!(p.string_table[0], "");
    let names: Vec<&str> = p.sample_type.iter().map(|t| p.string_table[t.r#type as usize].as_str()).collect();
    assert_eq!(names, vec!["live_tasks", "spawned_tasks", "blocked_threads"]);
    assert_eq!(p.sample.len(), 3);
    let live: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(live, 11);
    // the first site's two stacks split its 9 live tasks by live samples (3:1)
    assert_eq!(p.sample[0].value[0] + p.sample[1].value[0], 9);
    assert!(p.sample[0].value[0] > p.sample[1].value[0]);
    // functions and locations are shared between samples: job, bind_inner, leaky, other, idle
    assert_eq!(p.function.len(), 5);
    assert_eq!(p.location.len(), 5);
    // leaf first: the future, then the spawn stack
    let leaf = &p.location[(p.sample[0].location_id[0] - 1) as usize];
    let f = &p.function[(leaf.line[0].function_id - 1) as usize];
    assert_eq!(p.string_table[f.name as usize], "app::job::{{closure}}");
    let label = &p.sample[0].label[1];
    assert_eq!(p.string_table[label.key as usize], "verdict");
    assert_eq!(p.string_table[label.str as usize], "leak");
}
