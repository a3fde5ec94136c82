//! One function's machine code (x86-64) with what each general register holds, as far as a
//! state machine's dispatch needs: a pointer at a known offset from the function's first
//! argument (`rdi` at entry: `self` of a `poll`), a byte or word loaded from there (a state
//! discriminant), constants (`lea reg, [rip+X]`) and the jump-table arithmetic built from them.
//! Passes in address order; at a branch target the states of its branches and of the
//! fall-through are merged (what they disagree on is unknown); a back edge's state joins in the
//! next pass (at most [`ROUNDS`]). Code no path reaches gives nothing, and a panic does not
//! return. What the code refers to (tables, GOT slots, panic locations, names) is read through
//! [`Env`].

use std::collections::HashMap;

use iced_x86::{
    ConditionCode, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory,
    MemorySize, Mnemonic, OpAccess, OpKind, Register,
};

pub use super::env::{Env, ImageEnv, SliceEnv};
use crate::elf::ElfImage;

/// Instructions decoded per function at most.
pub const MAX_INSTRUCTIONS: usize = 60_000;
/// Passes over a function (each adds what its loops' back edges bring).
const ROUNDS: usize = 3;
/// Jump-table entries read at most.
const MAX_TABLE: u64 = 1024;

/// Where a discriminant lies: bytes at `off` from the function's entry `rdi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateLoc {
    pub off: i64,
    pub width: u8,
}

/// What a register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    Unknown,
    /// Entry `rdi` plus this offset.
    Ptr(i64),
    /// A constant (an immediate, or an address computed from `rip`).
    Const(u64),
    /// The discriminant at `StateLoc`, plus the addend (a table index may be biased).
    State(StateLoc, i64),
    /// `movsxd r, [table + 4 * state]`: an entry of the jump table at the first field.
    Entry(u64, StateLoc, i64),
    /// table + entry: the target of a relative jump table.
    Target(u64, StateLoc, i64),
}

pub type Regs = [Val; 16];

const UNKNOWN: Regs = [Val::Unknown; 16];
/// The index of a jump table that is not a discriminant.
const UNKNOWN_INDEX: StateLoc = StateLoc { off: -1, width: 0 };
const RDI: usize = 7;
const RSI: usize = 6;
const RDX: usize = 2;
/// Registers a call may change (System V): rax, rcx, rdx, rsi, rdi, r8-r11.
const CALLER_SAVED: [usize; 9] = [0, 1, 2, 6, 7, 8, 9, 10, 11];

/// A dispatch through a relative jump table indexed by a discriminant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDispatch {
    /// The `jmp reg`.
    pub ip: u64,
    pub at: StateLoc,
    /// (discriminant value, target), in value order.
    pub targets: Vec<(u64, u64)>,
}

/// A conditional branch taken (or fallen through) when the discriminant equals `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareEdge {
    pub ip: u64,
    pub at: StateLoc,
    pub value: u64,
    pub target: u64,
    /// Where the other values go.
    pub other: u64,
}

/// A call (or a tail jump out of the function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub ip: u64,
    /// The callee's ELF address (direct, or read from a GOT slot), when known.
    pub callee: Option<u64>,
    /// The first argument.
    pub rdi: Val,
}

/// The analysed function.
#[derive(Debug, Default)]
pub struct Flow {
    pub start: u64,
    pub end: u64,
    pub insns: Vec<Instruction>,
    at: HashMap<u64, usize>,
    /// Register state before each instruction (None: not reached by the pass).
    pub states: Vec<Option<Regs>>,
    pub tables: Vec<TableDispatch>,
    pub compares: Vec<CompareEdge>,
    pub calls: Vec<Call>,
}

/// The flags after a `cmp`/`test` of a discriminant (its value plus addend, against `imm`).
#[derive(Clone, Copy)]
struct Flags {
    at: StateLoc,
    add: i64,
    imm: u64,
}

fn gpr(r: Register) -> Option<usize> {
    let f = r.full_register();
    f.is_gpr64().then(|| f.number())
}

fn merge(into: &mut Option<Regs>, from: &Regs) {
    match into {
        None => *into = Some(*from),
        Some(r) => {
            for (a, b) in r.iter_mut().zip(from) {
                if a != b {
                    *a = Val::Unknown;
                }
            }
        }
    }
}

impl Flow {
    /// Index of the instruction at `ip`.
    pub fn index_of(&self, ip: u64) -> Option<usize> {
        self.at.get(&ip).copied()
    }

    pub fn contains(&self, ip: u64) -> bool {
        (self.start..self.end).contains(&ip)
    }

    /// Decodes `[start, end)` of `image` and runs the pass.
    pub fn analyse(image: &ElfImage, start: u64, end: u64) -> Option<Flow> {
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        let code = image.read_at_vaddr(start, len)?;
        Some(Flow::from_code(code, start, &ImageEnv(image)))
    }

    /// The pass over `code` (at `start`), reading what the code refers to through `env`.
    pub fn from_code(code: &[u8], start: u64, env: &dyn Env) -> Flow {
        let end = start + code.len() as u64;
        let mut f = Flow {
            start,
            end,
            ..Flow::default()
        };
        let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while decoder.can_decode() && f.insns.len() < MAX_INSTRUCTIONS {
            decoder.decode_out(&mut ins);
            if ins.is_invalid() {
                break;
            }
            f.at.insert(ins.ip(), f.insns.len());
            f.insns.push(ins);
        }
        // every rip-relative address the function takes: jump tables end where another begins
        let mut rip_refs: Vec<u64> = f
            .insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Lea && i.is_ip_rel_memory_operand())
            .map(|i| i.ip_rel_memory_address())
            .collect();
        rip_refs.sort_unstable();
        rip_refs.dedup();

        let n = f.insns.len();
        let mut factory = InstructionInfoFactory::new();
        // states at the targets of backward branches, from the previous round
        let mut back: Vec<Option<Regs>> = vec![None; n];
        for _round in 0..ROUNDS {
            f.states = vec![None; n];
            f.tables.clear();
            f.compares.clear();
            f.calls.clear();
            let mut pending: Vec<Option<Regs>> = back.clone();
            let mut next_back: Vec<Option<Regs>> = vec![None; n];
            let mut cur: Option<Regs> = None;
            let mut flags: Option<Flags> = None;
            let mut bounds: HashMap<StateLoc, u64> = HashMap::new();
            for i in 0..n {
                let mut here = pending[i].take();
                if let Some(c) = &cur {
                    merge(&mut here, c);
                }
                if i == 0 {
                    let mut entry = UNKNOWN;
                    entry[RDI] = Val::Ptr(0);
                    here = Some(entry);
                }
                if here.is_none() {
                    flags = None;
                }
                let reached = here.is_some();
                let mut regs = here.unwrap_or(UNKNOWN);
                let (here_rsi, here_rdx) = (regs[RSI], regs[RDX]);
                f.states[i] = here;
                let ins = f.insns[i];
                let next_ip = ins.next_ip();
                // code no path reached yet gives its branch targets nothing (not "unknown")
                let mut branch_to =
                    |target: u64, regs: &Regs, f: &Flow, pending: &mut Vec<Option<Regs>>| {
                        if let (Some(j), true) = (f.index_of(target), reached) {
                            if j > i {
                                merge(&mut pending[j], regs);
                            } else {
                                merge(&mut next_back[j], regs);
                            }
                        }
                    };
                match ins.flow_control() {
                    FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                        cur = None;
                        continue;
                    }
                    FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                        let t = ins.near_branch_target();
                        if f.contains(t) {
                            branch_to(t, &regs, &f, &mut pending);
                        } else {
                            f.calls.push(Call {
                                ip: ins.ip(),
                                callee: Some(t),
                                rdi: regs[RDI],
                            });
                        }
                        cur = None;
                        continue;
                    }
                    FlowControl::ConditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                        let t = ins.near_branch_target();
                        if let Some(fl) = flags {
                            let value = fl.imm.wrapping_sub(fl.add as u64);
                            match ins.condition_code() {
                                ConditionCode::e => f.compares.push(CompareEdge {
                                    ip: ins.ip(),
                                    at: fl.at,
                                    value,
                                    target: t,
                                    other: next_ip,
                                }),
                                ConditionCode::ne => f.compares.push(CompareEdge {
                                    ip: ins.ip(),
                                    at: fl.at,
                                    value,
                                    target: next_ip,
                                    other: t,
                                }),
                                // `cmp idx, N; ja default`: the table below has N + 1 entries
                                ConditionCode::a if fl.add == 0 => {
                                    bounds.insert(fl.at, fl.imm);
                                }
                                _ => {}
                            }
                        }
                        branch_to(t, &regs, &f, &mut pending);
                        cur = reached.then_some(regs);
                        continue;
                    }
                    FlowControl::IndirectBranch => {
                        if ins.op0_kind() == OpKind::Register {
                            if let Some(Val::Target(table, at, add)) =
                                gpr(ins.op0_register()).map(|r| regs[r])
                            {
                                let limit = bounds
                                    .get(&at)
                                    .map_or(MAX_TABLE, |b| (b + 1).min(MAX_TABLE));
                                let mut targets = Vec::new();
                                for k in 0..limit {
                                    let slot = table + 4 * k;
                                    if k > 0 && rip_refs.binary_search(&slot).is_ok() {
                                        break; // the next table
                                    }
                                    let Some(e) = env.read_i32(slot) else { break };
                                    let t = table.wrapping_add(e as i64 as u64);
                                    if f.index_of(t).is_none() {
                                        break;
                                    }
                                    if let Some(v) = (k as i64).checked_sub(add).filter(|v| *v >= 0)
                                    {
                                        targets.push((v as u64, t));
                                    }
                                    branch_to(t, &regs, &f, &mut pending);
                                }
                                if at != UNKNOWN_INDEX {
                                    f.tables.push(TableDispatch {
                                        ip: ins.ip(),
                                        at,
                                        targets,
                                    });
                                }
                            }
                        } else if ins.is_ip_rel_memory_operand() {
                            f.calls.push(Call {
                                ip: ins.ip(),
                                callee: env.pointer(ins.ip_rel_memory_address()),
                                rdi: regs[RDI],
                            });
                        }
                        cur = None;
                        continue;
                    }
                    FlowControl::Call | FlowControl::IndirectCall => {
                        let callee = if ins.op0_kind() == OpKind::NearBranch64 {
                            Some(ins.near_branch_target())
                        } else if ins.is_ip_rel_memory_operand() {
                            env.pointer(ins.ip_rel_memory_address())
                        } else {
                            None
                        };
                        f.calls.push(Call {
                            ip: ins.ip(),
                            callee,
                            rdi: regs[RDI],
                        });
                        for r in CALLER_SAVED {
                            regs[r] = Val::Unknown;
                        }
                        flags = None;
                        // a panic does not return: what follows is another block
                        let args = [f.calls.last().map_or(Val::Unknown, |c| c.rdi), here_rsi, here_rdx];
                        cur = (reached && !env.noreturn(callee, &args)).then_some(regs);
                        continue;
                    }
                    _ => {}
                }
                // flags set by comparing a discriminant
                let new_flags = compare_of(&ins, &regs);
                let value = transfer(&ins, &regs);
                for u in factory.info(&ins).used_registers() {
                    if matches!(
                        u.access(),
                        OpAccess::Write
                            | OpAccess::ReadWrite
                            | OpAccess::CondWrite
                            | OpAccess::ReadCondWrite
                    ) {
                        if let Some(r) = gpr(u.register()) {
                            regs[r] = Val::Unknown;
                        }
                    }
                }
                if let Some((r, v)) = value {
                    regs[r] = v;
                }
                if new_flags.is_some() || ins.rflags_modified() != 0 {
                    flags = new_flags;
                }
                cur = reached.then_some(regs);
            }
            let mut changed = false;
            for (b, nb) in back.iter_mut().zip(&next_back) {
                if let Some(r) = nb {
                    let before = *b;
                    merge(b, r);
                    changed |= *b != before;
                }
            }
            if !changed {
                break;
            }
        }
        f
    }

    /// The call (or tail jump) at `ip` (`calls` are in address order).
    pub fn call_at(&self, ip: u64) -> Option<&Call> {
        self.calls.binary_search_by_key(&ip, |c| c.ip).ok().map(|i| &self.calls[i])
    }

    /// The instructions run from `ip` along one path: conditional branches fall through, direct
    /// jumps within the function are followed; it ends after a return, a trap, an indirect jump
    /// or a jump out of the function (unbounded on a loop: the caller takes what it needs).
    pub fn straight_line(&self, ip: u64) -> impl Iterator<Item = &Instruction> + '_ {
        let mut next = self.index_of(ip);
        std::iter::from_fn(move || {
            let ins = &self.insns[next?];
            next = match ins.flow_control() {
                FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                    self.index_of(ins.near_branch_target())
                }
                FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception | FlowControl::IndirectBranch => None,
                _ => self.index_of(ins.next_ip()),
            };
            Some(ins)
        })
    }

    /// The register state before the instruction at `ip`.
    pub fn regs_at(&self, ip: u64) -> Option<&Regs> {
        self.states.get(self.index_of(ip)?)?.as_ref()
    }
}

/// The base register of a memory operand as a pointer from entry rdi (no index register).
fn mem_ptr(ins: &Instruction, regs: &Regs) -> Option<i64> {
    if ins.memory_index() != Register::None {
        return None;
    }
    match gpr(ins.memory_base()).map(|r| regs[r]) {
        Some(Val::Ptr(c)) => c.checked_add(ins.memory_displacement64() as i64),
        _ => None,
    }
}

fn load_width(size: MemorySize) -> Option<u8> {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => Some(1),
        MemorySize::UInt16 | MemorySize::Int16 => Some(2),
        MemorySize::UInt32 | MemorySize::Int32 => Some(4),
        _ => None,
    }
}

/// `cmp state, imm` / `test state, state` (also on the discriminant in memory).
fn compare_of(ins: &Instruction, regs: &Regs) -> Option<Flags> {
    match ins.mnemonic() {
        Mnemonic::Cmp if ins.op_count() == 2 && is_imm(ins.op1_kind()) => {
            let imm = ins.immediate(1);
            match ins.op0_kind() {
                OpKind::Register => match gpr(ins.op0_register()).map(|r| regs[r]) {
                    Some(Val::State(at, add)) => Some(Flags {
                        at,
                        add,
                        imm: imm & mask(reg_width(ins.op0_register())),
                    }),
                    _ => None,
                },
                OpKind::Memory => {
                    let width = load_width(ins.memory_size())?;
                    Some(Flags {
                        at: StateLoc {
                            off: mem_ptr(ins, regs)?,
                            width,
                        },
                        add: 0,
                        imm: imm & mask(width),
                    })
                }
                _ => None,
            }
        }
        Mnemonic::Test
            if ins.op0_kind() == OpKind::Register
                && ins.op1_kind() == OpKind::Register
                && ins.op0_register() == ins.op1_register() =>
        {
            match gpr(ins.op0_register()).map(|r| regs[r]) {
                Some(Val::State(at, add)) => Some(Flags { at, add, imm: 0 }),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn reg_width(r: Register) -> u8 {
    r.size() as u8
}

fn mask(width: u8) -> u64 {
    match width {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The value an instruction gives its destination register, when it is one we follow.
fn transfer(ins: &Instruction, regs: &Regs) -> Option<(usize, Val)> {
    if ins.op_count() == 0 || ins.op0_kind() != OpKind::Register {
        return None;
    }
    let dst_reg = ins.op0_register();
    let dst = gpr(dst_reg)?;
    let wide = dst_reg.is_gpr64();
    let src_reg = || {
        (ins.op1_kind() == OpKind::Register)
            .then(|| gpr(ins.op1_register()))
            .flatten()
            .map(|r| regs[r])
    };
    let v = match ins.mnemonic() {
        Mnemonic::Mov if ins.op1_kind() == OpKind::Register => match src_reg()? {
            v @ (Val::Ptr(_) | Val::Const(_) | Val::Entry(..) | Val::Target(..)) if wide => v,
            v @ Val::State(..) => v,
            _ => return None,
        },
        Mnemonic::Mov if is_imm(ins.op1_kind()) => Val::Const(ins.immediate(1)),
        Mnemonic::Mov if ins.op1_kind() == OpKind::Memory && !wide => {
            let width = load_width(ins.memory_size())?;
            (width == 4).then_some(())?;
            Val::State(
                StateLoc {
                    off: mem_ptr(ins, regs)?,
                    width,
                },
                0,
            )
        }
        Mnemonic::Movzx if ins.op1_kind() == OpKind::Memory => {
            let width = load_width(ins.memory_size())?;
            Val::State(
                StateLoc {
                    off: mem_ptr(ins, regs)?,
                    width,
                },
                0,
            )
        }
        Mnemonic::Movzx if ins.op1_kind() == OpKind::Register => match src_reg()? {
            v @ Val::State(at, _) if ins.op1_register().size() as u8 >= at.width => v,
            _ => return None,
        },
        Mnemonic::Lea if wide || ins.memory_index() == Register::None => {
            if ins.is_ip_rel_memory_operand() {
                Val::Const(ins.ip_rel_memory_address())
            } else if ins.memory_index() == Register::None {
                match gpr(ins.memory_base()).map(|r| regs[r])? {
                    Val::Ptr(c) if wide => {
                        Val::Ptr(c.checked_add(ins.memory_displacement64() as i64)?)
                    }
                    Val::State(at, add) => {
                        Val::State(at, add.checked_add(ins.memory_displacement64() as i64)?)
                    }
                    _ => return None,
                }
            } else {
                return None;
            }
        }
        Mnemonic::Movsxd
            if ins.op1_kind() == OpKind::Memory
                && ins.memory_index_scale() == 4
                && ins.memory_displacement64() == 0 =>
        {
            let base = gpr(ins.memory_base()).map(|r| regs[r])?;
            let index = gpr(ins.memory_index()).map(|r| regs[r])?;
            match (base, index) {
                (Val::Const(table), Val::State(at, add)) => Val::Entry(table, at, add),
                // a table indexed by something else (a call's result): its targets still get
                // this function's registers
                (Val::Const(table), _) => Val::Entry(table, UNKNOWN_INDEX, 0),
                _ => return None,
            }
        }
        Mnemonic::Add | Mnemonic::Sub if is_imm(ins.op1_kind()) => {
            let imm = ins.immediate(1) as i64;
            let imm = if ins.mnemonic() == Mnemonic::Sub {
                imm.checked_neg()?
            } else {
                imm
            };
            match regs[dst] {
                Val::Ptr(c) if wide => Val::Ptr(c.checked_add(imm)?),
                Val::State(at, add) => {
                    Val::State(at, add.checked_add(sign_extend(imm, dst_reg.size() as u8))?)
                }
                _ => return None,
            }
        }
        Mnemonic::Add if ins.op1_kind() == OpKind::Register && wide => {
            match (regs[dst], src_reg()?) {
                (Val::Entry(t, at, add), Val::Const(c))
                | (Val::Const(c), Val::Entry(t, at, add))
                    if t == c =>
                {
                    Val::Target(t, at, add)
                }
                _ => return None,
            }
        }
        Mnemonic::Inc | Mnemonic::Dec => match regs[dst] {
            Val::State(at, add) => Val::State(
                at,
                add + if ins.mnemonic() == Mnemonic::Inc {
                    1
                } else {
                    -1
                },
            ),
            _ => return None,
        },
        Mnemonic::Xor if ins.op1_kind() == OpKind::Register && ins.op1_register() == dst_reg => {
            Val::Const(0)
        }
        _ => return None,
    };
    Some((dst, v))
}

/// An addend applied to a narrow register, as the signed value it stands for.
fn sign_extend(v: i64, width: u8) -> i64 {
    match width {
        1 => v as i8 as i64,
        2 => v as i16 as i64,
        4 => v as i32 as i64,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::tests::TestEnv;
    use super::*;

    pub fn flow(code: &[u8], start: u64, table: &[(u64, i32)]) -> Flow {
        let env = TestEnv { table: table.iter().copied().collect(), ..TestEnv::default() };
        Flow::from_code(code, start, &env)
    }

    #[test]
    fn registers_follow_self_through_moves_and_calls() {
        // mov rbx, rdi; lea r14, [rbx+0x20]; call rel32 (+0); mov rdi, r14; call rel32 (+0)
        let code = [
            0x48, 0x89, 0xfb, // mov rbx, rdi
            0x4c, 0x8d, 0x73, 0x20, // lea r14, [rbx+0x20]
            0xe8, 0x00, 0x00, 0x00, 0x00, // call next
            0x4c, 0x89, 0xf7, // mov rdi, r14
            0xe8, 0x00, 0x00, 0x00, 0x00, // call next
            0xc3,
        ];
        let f = flow(&code, 0x1000, &[]);
        assert_eq!(f.calls.len(), 2);
        assert_eq!(
            f.calls[0].rdi,
            Val::Ptr(0),
            "rdi is still self at the first call"
        );
        assert_eq!(
            f.calls[1].rdi,
            Val::Ptr(0x20),
            "r14 survives the call (callee-saved)"
        );
    }
}
