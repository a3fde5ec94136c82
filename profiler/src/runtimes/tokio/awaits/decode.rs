//! Decoding a task's memory with a precomputed plan: which variant of an enum is active (by its
//! discriminant bytes), and the chain of suspend points of nested async state machines. Pure: no
//! DWARF here, only offsets, values and a memory reader.

use super::AwaitFrame;

/// Most nested state machines followed.
pub const MAX_DEPTH: usize = 8;

/// Where an enum's discriminant lies, relative to the enum's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscrLoc {
    pub offset: u64,
    /// 1, 2, 4 or 8 bytes (little-endian).
    pub size: u8,
}

/// The discriminant value of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscrValue {
    Is(u64),
    /// The variant taken when no other value matches (the dataful variant of a niche layout).
    Default,
    /// A form this decoder does not read (a range list, a 128-bit value): never matches.
    Unknown,
}

/// The index in `values` of the active variant of the enum at runtime address `base`.
pub fn active(
    values: &[DiscrValue],
    loc: DiscrLoc,
    base: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<usize> {
    let size = usize::from(loc.size);
    if !(1..=8).contains(&size) {
        return None;
    }
    let mut buf = [0u8; 8];
    if !read(base.checked_add(loc.offset)?, &mut buf[..size]) {
        return None;
    }
    let raw = u64::from_le_bytes(buf);
    let mask = if size == 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    };
    values
        .iter()
        .position(|v| matches!(v, DiscrValue::Is(x) if x & mask == raw))
        .or_else(|| values.iter().position(|v| *v == DiscrValue::Default))
}

/// One async state machine type (`{async_fn_env#0}` / `{async_block_env#0}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPlan {
    /// The async fn (or block) path.
    pub function: String,
    pub discr: DiscrLoc,
    pub states: Vec<StatePlan>,
}

/// One state (variant) of a state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePlan {
    pub value: DiscrValue,
    /// Some for `SuspendN` states.
    pub suspend: Option<SuspendPlan>,
}

/// An `.await` point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendPlan {
    pub file: String,
    pub line: u32,
    /// The awaited future's type, readable.
    pub awaiting: String,
    /// A state machine inside the awaited future, reached from this state machine's start.
    pub inner: Option<Inner>,
}

/// A step from one address to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Add an offset.
    Add(u64),
    /// Read the (8-byte, little-endian) pointer stored there.
    Deref,
}

/// A nested state machine: how to get to it, and its index in the plan's envs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    pub path: Vec<Hop>,
    pub env: usize,
}

/// Follows `path` from `at`; None when a pointer cannot be read or is null.
pub fn follow(
    path: &[Hop],
    mut at: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<u64> {
    for hop in path {
        at = match *hop {
            Hop::Add(off) => at.checked_add(off)?,
            Hop::Deref => {
                let mut buf = [0u8; 8];
                if !read(at, &mut buf) {
                    return None;
                }
                Some(u64::from_le_bytes(buf)).filter(|&p| p != 0)?
            }
        };
    }
    Some(at)
}

/// Where a task's future is running: the `Stage<T>` discriminant (relative to the header) and
/// which of its variants is `Running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    pub discr: DiscrLoc,
    pub values: Vec<DiscrValue>,
    pub running: usize,
}

/// True when the task at `header` is in the `Running` stage (its future is live).
pub fn is_running(
    stage: &StagePlan,
    header: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> bool {
    active(&stage.values, stage.discr, header, read) == Some(stage.running)
}

/// The suspend points of the state machine `envs[root]` at runtime address `base` and of the
/// ones nested in it, outermost first; stops at a state that is not a suspend point.
pub fn decode(
    envs: &[EnvPlan],
    root: usize,
    base: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Vec<AwaitFrame> {
    let mut frames = Vec::new();
    let (mut env, mut at) = (root, base);
    while frames.len() < MAX_DEPTH {
        let Some(plan) = envs.get(env) else { break };
        let values: Vec<DiscrValue> = plan.states.iter().map(|s| s.value).collect();
        let Some(state) = active(&values, plan.discr, at, read) else {
            break;
        };
        let Some(s) = plan.states[state].suspend.as_ref() else {
            break;
        };
        frames.push(AwaitFrame {
            function: plan.function.clone(),
            file: s.file.clone(),
            line: s.line,
            awaiting: s.awaiting.clone(),
        });
        let Some(inner) = s.inner.as_ref() else { break };
        let Some(next_at) = follow(&inner.path, at, read) else {
            break;
        };
        (env, at) = (inner.env, next_at);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over `bytes` mapped at runtime address `base`.
    fn reader(base: u64, bytes: Vec<u8>) -> impl FnMut(u64, &mut [u8]) -> bool {
        move |addr, buf| {
            let Some(start) = addr.checked_sub(base).and_then(|s| usize::try_from(s).ok()) else {
                return false;
            };
            match bytes.get(start..start + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn picks_exact_then_default() {
        let values = [DiscrValue::Default, DiscrValue::Is(4), DiscrValue::Is(5)];
        let loc = DiscrLoc { offset: 2, size: 1 };
        let mut r = reader(0x1000, vec![0, 0, 5, 0]);
        assert_eq!(active(&values, loc, 0x1000, &mut r), Some(2));
        let mut r = reader(0x1000, vec![0, 0, 3, 0]);
        assert_eq!(active(&values, loc, 0x1000, &mut r), Some(0));
        // no default: an unknown value is no variant
        let mut r = reader(0x1000, vec![0, 0, 3, 0]);
        assert_eq!(active(&values[1..], loc, 0x1000, &mut r), None);
        // unreadable
        let mut r = reader(0x1000, vec![0, 0]);
        assert_eq!(active(&values, loc, 0x1000, &mut r), None);
    }

    #[test]
    fn wide_and_negative_discriminants() {
        let loc = DiscrLoc { offset: 0, size: 4 };
        let values = [
            DiscrValue::Is(0xffff_ffff_ffff_fffe),
            DiscrValue::Is(7),
            DiscrValue::Unknown,
        ];
        let mut r = reader(0, (-2i32).to_le_bytes().to_vec());
        assert_eq!(active(&values, loc, 0, &mut r), Some(0));
        let mut r = reader(0, 7u32.to_le_bytes().to_vec());
        assert_eq!(active(&values, loc, 0, &mut r), Some(1));
        let bad = DiscrLoc {
            offset: 0,
            size: 16,
        };
        assert_eq!(active(&values, bad, 0, &mut r), None);
    }

    /// (line, awaiting, inner) of each suspend point.
    type Suspends<'a> = &'a [(u32, &'a str, Option<(&'a [Hop], usize)>)];

    fn env(function: &str, discr_at: u64, suspends: Suspends<'_>) -> EnvPlan {
        let mut states: Vec<StatePlan> = (0..3)
            .map(|v| StatePlan {
                value: DiscrValue::Is(v),
                suspend: None,
            })
            .collect();
        for (i, (line, awaiting, inner)) in suspends.iter().enumerate() {
            states.push(StatePlan {
                value: DiscrValue::Is(3 + i as u64),
                suspend: Some(SuspendPlan {
                    file: "src/a.rs".into(),
                    line: *line,
                    awaiting: awaiting.to_string(),
                    inner: inner.map(|(path, env)| Inner {
                        path: path.to_vec(),
                        env,
                    }),
                }),
            });
        }
        EnvPlan {
            function: function.into(),
            discr: DiscrLoc {
                offset: discr_at,
                size: 1,
            },
            states,
        }
    }

    #[test]
    fn nested_suspend_points_outermost_first() {
        // outer at 0x100: state at +0x30; its Suspend1 awaits inner at +0x08, whose state is at +0x10
        let envs = vec![
            env(
                "app::outer",
                0x30,
                &[
                    (10, "x", None),
                    (12, "async fn app::inner", Some((&[Hop::Add(8)], 1))),
                ],
            ),
            env(
                "app::inner",
                0x10,
                &[(40, "tokio::sync::oneshot::Receiver<u32>", None)],
            ),
        ];
        let mut mem = vec![0u8; 0x40];
        mem[0x30] = 4; // outer: Suspend1
        mem[0x08 + 0x10] = 3; // inner: Suspend0
        let frames = decode(&envs, 0, 0x100, &mut reader(0x100, mem.clone()));
        let got: Vec<(&str, u32, &str)> = frames
            .iter()
            .map(|f| (f.function.as_str(), f.line, f.awaiting.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("app::outer", 12, "async fn app::inner"),
                ("app::inner", 40, "tokio::sync::oneshot::Receiver<u32>")
            ]
        );
        // inner not suspended (Returned): only the outer frame
        mem[0x18] = 1;
        assert_eq!(
            decode(&envs, 0, 0x100, &mut reader(0x100, mem.clone())).len(),
            1
        );
        // outer Unresumed: nothing
        mem[0x30] = 0;
        assert!(decode(&envs, 0, 0x100, &mut reader(0x100, mem)).is_empty());
    }

    #[test]
    fn boxed_state_machine_is_followed_through_its_pointer() {
        // outer at 0x100 (state at +0): Suspend0 awaits a Box at +0x08 pointing to 0x200, whose
        // state is at +0x04
        let path = [Hop::Add(8), Hop::Deref];
        let envs = vec![
            env(
                "app::outer",
                0,
                &[(5, "core::pin::Pin<alloc::boxed::Box<..>>", Some((&path, 1)))],
            ),
            env("app::boxed", 4, &[(9, "tokio::time::sleep::Sleep", None)]),
        ];
        let mut mem = vec![0u8; 0x110];
        mem[0] = 3;
        mem[8..16].copy_from_slice(&0x200u64.to_le_bytes());
        mem[0x104] = 3;
        let frames = decode(&envs, 0, 0x100, &mut reader(0x100, mem.clone()));
        assert_eq!(
            frames.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![5, 9]
        );
        // a null pointer stops there
        mem[8..16].fill(0);
        assert_eq!(decode(&envs, 0, 0x100, &mut reader(0x100, mem)).len(), 1);
        assert_eq!(
            follow(&[Hop::Add(u64::MAX), Hop::Add(1)], 1, &mut |_, _| true),
            None
        );
    }

    #[test]
    fn depth_is_bounded_on_cycles() {
        let envs = vec![env(
            "app::rec",
            0,
            &[(1, "async fn app::rec", Some((&[], 0)))],
        )];
        let frames = decode(&envs, 0, 0, &mut reader(0, vec![3]));
        assert_eq!(frames.len(), MAX_DEPTH);
    }

    #[test]
    fn stage_running_check() {
        let stage = StagePlan {
            discr: DiscrLoc {
                offset: 0x41,
                size: 1,
            },
            values: vec![DiscrValue::Default, DiscrValue::Is(4), DiscrValue::Is(5)],
            running: 0,
        };
        let mut mem = vec![0u8; 0x48];
        mem[0x41] = 3;
        assert!(is_running(&stage, 0x2000, &mut reader(0x2000, mem.clone())));
        mem[0x41] = 4;
        assert!(!is_running(
            &stage,
            0x2000,
            &mut reader(0x2000, mem.clone())
        ));
        assert!(!is_running(&stage, 0x2000, &mut |_, _| false));
    }
}
