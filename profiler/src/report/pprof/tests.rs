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
    assert_eq!(names, vec!["live_tasks", "spawned_tasks", "blocked_threads", "bytes"]);
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

/// A tokio site with await chains and spawn stacks (where-stuck from the code, `--probes`): its
/// samples follow the spawn stacks; without spawn stacks, the await chains, labelled as tasks; a
/// Go site always by the stacks its goroutines wait in.
#[test]
fn tokio_await_chains_give_way_to_spawn_stacks_go_stacks_do_not() {
    use crate::model::WaitStack;
    let spawn = vec![SpawnStack { samples: 2, live_samples: 2, live_estimate: 0, frames: vec![frame("tokio::bind_inner"), frame("app::caller")] }];
    let wait = vec![WaitStack { tasks: 4, frames: vec![frame("app::job at .await #1 awaiting Rx::recv")] }];
    let with = |decoder: &str, spawn: Vec<SpawnStack>| {
        let mut s = site("app::job::{{closure}}", 4, spawn);
        s.stacks = wait.clone();
        s.stuck_decoded_by = Some(decoder.into());
        let p = decode(&to_pprof(&report(vec![s])));
        let names: Vec<String> = p.function.iter().map(|f| p.string_table[f.name as usize].clone()).collect();
        let kind = p.string_table[p.sample[0].label[0].str as usize].clone();
        (names, kind)
    };
    let (names, kind) = with("code", spawn.clone());
    assert!(names.iter().any(|n| n == "app::caller"), "{names:?}");
    assert_eq!(kind, "task");
    let (names, kind) = with("code", vec![]);
    assert!(names.iter().any(|n| n.contains(".await #1")), "{names:?}");
    assert_eq!(kind, "task");
    let (names, kind) = with("stack", spawn);
    assert!(names.iter().any(|n| n.contains(".await #1")) && !names.iter().any(|n| n == "app::caller"), "{names:?}");
    assert_eq!(kind, "goroutine");
}

/// `bytes`: each sample's live tasks times the site's median measured bytes per task.
#[test]
fn bytes_are_live_tasks_times_the_median_per_task() {
    let mut s = site("app::job::{{closure}}", 10, vec![]);
    s.bytes_per_task = Some(crate::model::BytesPerTask { counts: "task cell".into(), measured: 10, min: 256, median: 272, max: 300 });
    let unmeasured = site("app::idle::{{closure}}", 3, vec![]);
    let p = decode(&to_pprof(&report(vec![s, unmeasured])));
    let bytes: Vec<i64> = p.sample.iter().map(|s| s.value[3]).collect();
    assert_eq!(bytes, vec![2720, 0]);
}
