//! Where a tokio task's future is suspended, read from the machine code when the binary has no
//! DWARF types (cargo's default release profile, `line-tables-only`, stripped binaries).
//!
//! From a task vtable's `raw::poll<T, S>`, the calls whose first argument is a pointer into the
//! task cell are followed ([`flow`] tracks `rdi` through each function) down to the first
//! function that dispatches an async state machine on a byte of the cell ([`machine`]): the
//! future's own poll, and the offset of its discriminant from the task header. Each await state's
//! resume block polls the awaitee: an inlined state machine (a second dispatch on another byte of
//! the same future) or a call, whose first argument gives the awaitee's offset; that callee's own
//! machine is followed in turn. A sampled task is decoded by reading one discriminant per level.
//! A discriminant with no decoded await, an offset past the cell, a dispatch not recognised:
//! the task is counted as undecoded, never guessed.

pub mod env;
pub mod flow;
pub mod machine;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use self::flow::{Flow, Val};
use self::machine::{Machines, Next};
use crate::elf::anon_names::is_anonymous;
use crate::elf::extents::Extents;
use crate::elf::lines::{is_library_path, normalize_path, LineTable};
use crate::elf::ElfImage;
use crate::runtimes::tokio::naming::code::SourceLocation;

/// Calls followed below `raw::poll` to the future's poll, and functions analysed for one root.
const ROOT_DEPTH: usize = 6;
const ROOT_FUNCTIONS: usize = 64;
/// Levels of nested awaits decoded per task.
const MAX_LEVELS: usize = 24;
/// Largest function analysed (bytes).
const MAX_FUNCTION: u64 = 512 << 10;
/// Functions analysed per binary at most (the analysis is cached; this bounds a hostile binary).
const MAX_ANALYSED: usize = 20_000;

/// The future of one kind of task: the function polling it, its machine, and the offset from the
/// task header of that function's entry `rdi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    pub func: u64,
    pub machine: usize,
    pub base: i64,
}

/// One level of a decoded task: a machine stopped at `state` (an await).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Level {
    pub func: u64,
    pub machine: usize,
    pub state: u64,
}

/// What one sampled task decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not suspended at an await (never polled, or complete).
    NotSuspended,
    /// Outermost first.
    Levels(Vec<Level>),
    /// The discriminant read is not one the code has, or an offset is out of the cell.
    Undecoded,
}

/// One await, described for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitPoint {
    /// The async fn (or block): its path, or `async fn at file:line` without symbols.
    pub function: String,
    /// Where it is defined (from its panic location).
    pub defined_at: SourceLocation,
    /// The await's line (from line tables), or None.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// 1 for the first `.await` of the function.
    pub ordinal: u64,
    /// What it polls: the next level's function, else the callee.
    pub callee: Option<String>,
    /// In a dependency or the standard library.
    pub library: bool,
}

/// Machine-code layouts of task futures of one binary, built lazily.
pub struct CodeIndex {
    image: ElfImage,
    /// Function bounds, read from `.eh_frame` on first need (not at attach: a binary with DWARF
    /// types may never need them).
    extents: OnceLock<Extents>,
    functions: HashMap<u64, Analysed>,
    roots: HashMap<u64, Option<Root>>,
    points: HashMap<(u64, usize, u64), AwaitPoint>,
}

/// What one function's code says, from one pass over it: its state machines, and its calls
/// whose first argument points into its own `self` (callee, offset).
#[derive(Default)]
struct Analysed {
    machines: Option<Arc<Machines>>,
    pointer_calls: Vec<(u64, i64)>,
}

impl CodeIndex {
    pub fn new(image: &ElfImage) -> CodeIndex {
        CodeIndex {
            image: image.clone(),
            extents: OnceLock::new(),
            functions: HashMap::new(),
            roots: HashMap::new(),
            points: HashMap::new(),
        }
    }

    /// The function containing `addr`, analysed once (cached by its start; None: not in a
    /// function, or past the analysis bounds).
    fn analysed(&mut self, addr: u64) -> Option<(u64, &Analysed)> {
        let (start, end) = self.extents.get_or_init(|| Extents::from_image(&self.image)).function_at(&self.image, addr)?;
        if !self.functions.contains_key(&start) {
            if self.functions.len() >= MAX_ANALYSED || end - start > MAX_FUNCTION {
                return None;
            }
            let a = Flow::analyse(&self.image, start, end).map_or_else(Analysed::default, |flow| Analysed {
                machines: Some(machine::machines(&flow::ImageEnv(&self.image), &flow)).filter(|m| !m.list.is_empty()).map(Arc::new),
                pointer_calls: flow
                    .calls
                    .iter()
                    .filter_map(|c| match (c.callee, c.rdi) {
                        (Some(callee), Val::Ptr(off)) => Some((callee, off)),
                        _ => None,
                    })
                    .collect(),
            });
            self.functions.insert(start, a);
        }
        Some((start, &self.functions[&start]))
    }

    /// The machines of the function containing `addr` (cached; None: not a function or no
    /// machine), with the function's start.
    pub fn machines(&mut self, addr: u64) -> Option<(u64, Arc<Machines>)> {
        let (start, a) = self.analysed(addr)?;
        Some((start, a.machines.clone()?))
    }

    /// The future polled by the `raw::poll<T, S>` at `poll_vaddr` (cached).
    pub fn root(&mut self, poll_vaddr: u64) -> Option<Root> {
        if let Some(r) = self.roots.get(&poll_vaddr) {
            return *r;
        }
        let r = self.find_root(poll_vaddr);
        self.roots.insert(poll_vaddr, r);
        r
    }

    /// Where the async fn (or block) that tasks of `raw::poll` at `poll_vaddr` run is defined,
    /// from its code alone (no symbol needed).
    pub fn future_location(&mut self, poll_vaddr: u64) -> Option<SourceLocation> {
        let root = self.root(poll_vaddr)?;
        let (_, ms) = self.machines(root.func)?;
        Some(ms.list.get(root.machine)?.location.clone())
    }

    fn find_root(&mut self, poll_vaddr: u64) -> Option<Root> {
        let mut stack = vec![(poll_vaddr, 0i64, 0usize)];
        let mut seen = std::collections::HashSet::new();
        while let Some((func, base, depth)) = stack.pop() {
            if !seen.insert((func, base)) || seen.len() > ROOT_FUNCTIONS {
                continue;
            }
            let Some((start, a)) = self.analysed(func) else { continue };
            if start != func {
                continue; // (calls go to function starts)
            }
            if let Some(machine) = a.machines.as_ref().and_then(|m| m.entry) {
                return Some(Root { func, machine, base });
            }
            if depth < ROOT_DEPTH {
                // depth first, in call order
                let calls = a.pointer_calls.clone();
                for (callee, off) in calls.into_iter().rev() {
                    if let Some(b) = base.checked_add(off) {
                        stack.push((callee, b, depth + 1));
                    }
                }
            }
        }
        None
    }

    /// Decodes the task whose header is at `header` (`cell_size`: bytes readable from the
    /// header, from the vtable's trailer offset).
    pub fn decode(
        &mut self,
        root: Root,
        header: u64,
        cell_size: Option<u64>,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> Decoded {
        decode_levels(&mut |addr| self.machines(addr), root, header, cell_size, read)
    }

    /// The report's description of one level (cached).
    pub fn point(
        &mut self,
        level: Level,
        next: Option<Level>,
        lines: Option<&LineTable>,
    ) -> Option<AwaitPoint> {
        if let Some(p) = self.points.get(&(level.func, level.machine, level.state)) {
            return Some(p.clone());
        }
        let (_, ms) = self.machines(level.func)?;
        let m = ms.list.get(level.machine)?;
        let a = m.awaits.get(&level.state)?;
        let library = is_library_path(&m.location.file);
        let function = self.machine_name(level.func, &ms, level.machine, lines);
        let ips = match a.next {
            Next::Call { ip, .. } => vec![ip],
            _ => Vec::new(),
        };
        let (file, line) = lines
            .and_then(|t| {
                ips.iter()
                    .chain(&a.path)
                    .find_map(|&ip| await_line(t, ip, library))
            })
            .map_or((Some(m.location.file.clone()), None), |(f, l)| {
                (Some(normalize_path(&f)), Some(l))
            });
        let callee = match (next, a.next) {
            (Some(n), _) => self
                .machines(n.func)
                .map(|(_, nms)| self.machine_name(n.func, &nms, n.machine, lines)),
            (None, Next::Call { callee, .. }) => Some(self.callee_name(callee)),
            (None, Next::Inner(j)) => Some(self.machine_name(level.func, &ms, j, lines)),
            (None, Next::Inline) => None,
        };
        let p = AwaitPoint {
            function,
            defined_at: m.location.clone(),
            file,
            line,
            ordinal: level.state - 2,
            callee,
            library,
        };
        self.points
            .insert((level.func, level.machine, level.state), p.clone());
        Some(p)
    }

    /// An async fn's name: the symbol of the function it is the poll of; for one inlined into
    /// another, the inlined frame's name from the line tables; else where it is defined.
    fn machine_name(
        &self,
        func: u64,
        ms: &Machines,
        machine: usize,
        lines: Option<&LineTable>,
    ) -> String {
        let Some(m) = ms.list.get(machine) else {
            return format!("code at {func:#x}");
        };
        if ms.entry == Some(machine) {
            // the function's own name when it is the async body (not a runtime function the
            // body was inlined into)
            if let Some(s) = self.image.symbols_at_addr(func).iter().find(|s| is_async_body(&s.name)) {
                return trim_closure(&s.name);
            }
        } else if let Some(t) = lines {
            // the inlined frame at the dispatch; line-tables-only names it `{async_fn#0}`: its
            // path is read from the out-of-line functions of its file
            if let Some(f) = t
                .frames(m.dispatch)
                .into_iter()
                .find(|f| f.function.is_some())
            {
                let name = f.function.clone().unwrap_or_default();
                if !is_anonymous(&name) {
                    return trim_closure(&name);
                }
                let image = &self.image;
                let symbol_at = |a: u64| image.symbols_at_addr(a).first().map(|s| s.name.clone());
                if let Some(q) =
                    t.anon_names(&symbol_at)
                        .qualify(&name, f.file.as_deref().unwrap_or(""), f.line)
                {
                    return trim_closure(&q);
                }
            }
        }
        format!("async fn at {}", short_path(&m.location))
    }

    fn callee_name(&mut self, callee: u64) -> String {
        if let Some(s) = self.image.symbols_at_addr(callee).first() {
            return s.name.clone();
        }
        match self.machines(callee) {
            Some((start, ms)) if start == callee => match ms.entry.and_then(|e| ms.list.get(e)) {
                Some(m) => format!("async fn at {}", short_path(&m.location)),
                None => format!("code at {callee:#x}"),
            },
            _ => format!("code at {callee:#x}"),
        }
    }
}

/// One task's levels: the root machine's discriminant read from the task, then each awaitee's,
/// while the code says where it lies; `machines` gives the machines of the function at an address.
pub fn decode_levels(
machines: &mut dyn FnMut(u64) -> Option<(u64, Arc<Machines>)>,
    root: Root,
    header: u64,
    cell_size: Option<u64>,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Decoded {
    let mut levels = Vec::new();
    let (mut func, mut machine, mut base) = (root.func, root.machine, root.base);
    while levels.len() < MAX_LEVELS {
        let Some((_, ms)) = machines(func) else {
            break;
        };
        let Some(m) = ms.list.get(machine) else { break };
        let Some(off) = base.checked_add(m.at.off).filter(|o| *o >= 0) else {
            return Decoded::Undecoded;
        };
        let width = u64::from(m.at.width);
        if cell_size.is_some_and(|size| off as u64 + width > size) {
            return Decoded::Undecoded;
        }
        let mut buf = [0u8; 4];
        let Some(addr) = header.checked_add(off as u64) else {
            return Decoded::Undecoded;
        };
        if !read(addr, &mut buf[..m.at.width as usize]) {
            return Decoded::Undecoded;
        }
        let state = u64::from(u32::from_le_bytes(buf));
        let Some(a) = m.awaits.get(&state) else {
            return match (levels.is_empty(), state) {
                (true, 0) => Decoded::NotSuspended,
                (true, _) => Decoded::Undecoded,
                // an awaitee not (yet) at an await of its own: the levels above stand
                (false, _) => break,
            };
        };
        levels.push(Level {
            func,
            machine,
            state,
        });
        match a.next {
            Next::Inner(j) => machine = j,
            Next::Call {
                callee,
                arg: Some(arg),
                ..
            } => match machines(callee) {
                Some((start, callee_ms)) if start == callee => {
                    match (callee_ms.entry, base.checked_add(arg)) {
                        (Some(e), Some(b)) => (func, machine, base) = (callee, e, b),
                        _ => break,
                    }
                }
                _ => break,
            },
            _ => break,
        }
    }
    Decoded::Levels(levels)
}

/// The line of an await at `ip`: among the inlined frames there, the innermost in the user's code
/// (for a library's own async fn, the innermost).
fn await_line(t: &LineTable, ip: u64, library: bool) -> Option<(String, u32)> {
    t.frames(ip).into_iter().find_map(|f| {
        let (file, line) = (f.file?, f.line.filter(|l| *l > 0)?);
        (library || !is_library_path(&file)).then_some((file, line))
    })
}

/// True for the symbol of an async fn's or block's poll (`..::{{closure}}`, `..::{closure#0}`,
/// `..::{async_fn#0}`, `..::{async_block#0}`).
fn is_async_body(name: &str) -> bool {
    name.ends_with('}') && (name.contains("{{closure}}") || name.contains("{closure#") || name.contains("{async_"))
}

/// An async fn's poll is `path::f::{{closure}}` (legacy) or `path::f::{closure#0}` (v0): `path::f`.
fn trim_closure(name: &str) -> String {
    for suffix in ["::{{closure}}", "::{closure#0}", "::{async_fn#0}"] {
        if let Some(s) = name.strip_suffix(suffix) {
            return s.to_owned();
        }
    }
    name.to_owned()
}

/// A location with a dependency's path cut to `crate-version/...` (the registry prefix says
/// nothing to a reader).
pub fn short_path(l: &SourceLocation) -> String {
    let file = l.file.as_str();
    let short = match file.find("/.cargo/registry/src/") {
        Some(i) => {
            let rest = &file[i + "/.cargo/registry/src/".len()..];
            rest.split_once('/').map_or(rest, |(_, r)| r)
        }
        None => file,
    };
    format!("{short}:{}", l.line)
}

#[cfg(test)]
mod tests {
    use super::flow::StateLoc;
    use super::machine::{Await, Machine};
    use super::*;
    use std::collections::BTreeMap;

    fn machine(off: i64, awaits: &[(u64, Next)]) -> Machine {
        Machine {
            dispatch: 0,
            at: StateLoc { off, width: 1 },
            location: SourceLocation { file: "src/a.rs".into(), line: 1, column: None },
            awaits: awaits.iter().map(|&(s, next)| (s, Await { resume: 0, next, path: Vec::new() })).collect::<BTreeMap<_, _>>(),
        }
    }

    /// Two functions: the root at 0x100 (state at +0x30, its first await calls 0x200 with
    /// self+0x40), the awaitee at 0x200 (state at +0x8, one await polling a leaf).
    fn decode_task(task: &[u8], cell: Option<u64>) -> Decoded {
        let fns: HashMap<u64, Arc<Machines>> = HashMap::from([
            (0x100, Arc::new(Machines { list: vec![machine(0x30, &[(3, Next::Call { ip: 1, callee: 0x200, arg: Some(0x40) }), (4, Next::Inline)])], entry: Some(0) })),
            (0x200, Arc::new(Machines { list: vec![machine(0x8, &[(3, Next::Call { ip: 2, callee: 0x300, arg: None })])], entry: Some(0) })),
        ]);
        let header = 0x10_000u64;
        let mut read = |addr: u64, buf: &mut [u8]| {
            let Some(i) = addr.checked_sub(header).map(|i| i as usize) else { return false };
            match task.get(i..i + buf.len()) {
                Some(b) => {
                    buf.copy_from_slice(b);
                    true
                }
                None => false,
            }
        };
        let root = Root { func: 0x100, machine: 0, base: 0x10 };
        decode_levels(&mut |a| fns.get(&a).map(|m| (a, m.clone())), root, header, cell, &mut read)
    }

    #[test]
    fn levels_follow_awaitees_and_refuse_what_the_code_does_not_have() {
        let mut task = vec![0u8; 0x80];
        // never polled
        assert_eq!(decode_task(&task, None), Decoded::NotSuspended);
        // at the root's 1st await, its awaitee (at 0x10 + 0x40) at its 1st
        task[0x40] = 3;
        task[0x58] = 3;
        let Decoded::Levels(l) = decode_task(&task, None) else { panic!() };
        assert_eq!(l.iter().map(|l| (l.func, l.state)).collect::<Vec<_>>(), [(0x100, 3), (0x200, 3)]);
        // the awaitee not at an await of its own: the root's level stands
        task[0x58] = 0;
        let Decoded::Levels(l) = decode_task(&task, None) else { panic!() };
        assert_eq!(l.len(), 1);
        // a discriminant the code has no await for: undecoded, not guessed
        task[0x40] = 9;
        assert_eq!(decode_task(&task, None), Decoded::Undecoded);
        task[0x40] = 1; // returned
        assert_eq!(decode_task(&task, None), Decoded::Undecoded);
        // the discriminant past the cell's end (the trailer offset): undecoded
        task[0x40] = 4;
        assert!(matches!(decode_task(&task, None), Decoded::Levels(_)));
        assert_eq!(decode_task(&task, Some(0x40)), Decoded::Undecoded);
        // unreadable memory
        assert_eq!(decode_task(&task[..0x20], None), Decoded::Undecoded);
    }

    #[test]
    fn names_are_trimmed_and_paths_shortened() {
        assert_eq!(
            trim_closure("app::conn::handle::{{closure}}"),
            "app::conn::handle"
        );
        assert_eq!(
            trim_closure("app::conn::handle::{closure#0}"),
            "app::conn::handle"
        );
        assert_eq!(
            trim_closure("app::main::{{closure}}::{{closure}}"),
            "app::main::{{closure}}"
        );
        let l = SourceLocation {
            file: "/root/.cargo/registry/src/somewhere-0123/tokio-1.48.0/src/sync/mutex.rs".into(),
            line: 7,
            column: Some(1),
        };
        assert_eq!(short_path(&l), "tokio-1.48.0/src/sync/mutex.rs:7");
        let l = SourceLocation {
            file: "src/main.rs".into(),
            line: 3,
            column: None,
        };
        assert_eq!(short_path(&l), "src/main.rs:3");
    }
}
