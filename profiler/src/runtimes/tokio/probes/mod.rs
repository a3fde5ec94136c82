//! From a runtime's attach plan to the probes the kernel side runs.
pub mod attach_points;
pub mod plan;
pub mod probed;
pub mod spawn_stacks;

use profiler_common::progs;

use crate::bpf::ProbeSpec;
use self::plan::{BirthMode, TokioPlan};

/// The probes for a tokio plan: one per attach point, birth program chosen by the birth mode.
pub fn probe_specs(plan: &TokioPlan) -> Vec<ProbeSpec> {
    let birth_prog = match plan.birth_mode {
        BirthMode::BindInner => progs::BIRTH_BIND_INNER,
        BirthMode::FirstPoll => progs::BIRTH_FIRST_POLL,
    };
    let births = plan.birth.iter().map(|p| ProbeSpec {
        program: birth_prog,
        symbol: p.symbol.clone(),
        file_offset: p.file_offset,
    });
    let finish_prog = match plan.birth_mode {
        BirthMode::BindInner => progs::FINISH_SLOT,
        BirthMode::FirstPoll => progs::FINISH_RELEASE,
    };
    let finishes = plan.finish.iter().map(|p| ProbeSpec {
        program: finish_prog,
        symbol: p.symbol.clone(),
        file_offset: p.file_offset,
    });
    births.chain(finishes).collect()
}

/// How births are observed, as named in reports.
pub fn birth_point_name(plan: &TokioPlan) -> &'static str {
    match plan.birth_mode {
        BirthMode::BindInner => "bind_inner",
        BirthMode::FirstPoll => "first_poll",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::attach_points::AttachPoint;

    fn pt(name: &str, off: u64) -> AttachPoint {
        AttachPoint { symbol: name.into(), vaddr: off, file_offset: off }
    }

    #[test]
    fn one_probe_per_point_with_the_right_program() {
        let plan = TokioPlan {
            version: Some("1.38.2".into()),
            birth_mode: BirthMode::BindInner,
            birth: vec![pt("bind_inner", 0x10), pt("bind_inner", 0x20)],
            finish: vec![pt("release", 0x30)],
        };
        let s = probe_specs(&plan);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].program, progs::BIRTH_BIND_INNER);
        assert_eq!(s[2].program, progs::FINISH_SLOT);
        assert_eq!(s[2].file_offset, 0x30);
        assert_eq!(birth_point_name(&plan), "bind_inner");
    }
}
