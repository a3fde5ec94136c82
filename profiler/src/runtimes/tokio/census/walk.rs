//! Walking a runtime's task lists while the runtime runs: every step bounded, every node
//! validated (its vtable is a task vtable, its owner is this runtime, its id belongs to this
//! shard); a list whose walk meets an invalid node or its bound is reported incomplete.
use super::{
    lists::TaskLists,
    mem::Mem,
    vtables::{VtInfo, Vtables},
};

/// One live task as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSeen {
    /// The owner id of its runtime.
    pub owner: u64,
    pub header: u64,
    pub vtable: u64,
    pub id: u64,
    pub state: u64,
}

/// How one walk went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub walked: u64,
    /// Lists whose walk stopped before their end (a node changed under the walk, or the bound).
    pub incomplete: Vec<usize>,
}

/// Bytes read from the target per walk at most (a walk that reaches it is incomplete).
pub const MAX_BYTES: u64 = 1 << 30;

/// Walks every list of `lists`, at most `max_nodes` tasks in all; appends what it reads. The lists
/// are walked in step, one task of each in turn: tasks are spread over the shards in spawn order,
/// so the cells read one after another lie near each other (one block read serves several).
pub fn walk(mem: &mut dyn Mem, vt: &Vtables, lists: &TaskLists, max_nodes: u64, out: &mut Vec<TaskSeen>) -> WalkStats {
    let mut stats = WalkStats::default();
    // (list index, next node to read)
    let mut cursors: Vec<(usize, u64)> = Vec::with_capacity(lists.lists.len());
    for (s, &(head_at, _)) in lists.lists.iter().enumerate() {
        match mem.u64_fresh(head_at) {
            Some(0) => {}
            Some(node) => cursors.push((s, node)),
            None => stats.incomplete.push(s),
        }
    }
    // the vtable met last: a runtime's tasks are mostly of a few sites, met in runs
    let mut vt_seen: Option<(u64, VtInfo)> = None;
    while !cursors.is_empty() {
        cursors.retain_mut(|(s, node)| {
            if stats.walked >= max_nodes || mem.bytes_read() >= MAX_BYTES {
                stats.incomplete.push(*s);
                return false;
            }
            match read_task(mem, vt, &mut vt_seen, lists, *node, *s as u64) {
                Some((t, next)) => {
                    out.push(t);
                    stats.walked += 1;
                    *node = next;
                    next != 0
                }
                None => {
                    stats.incomplete.push(*s);
                    false
                }
            }
        });
    }
    stats.incomplete.sort_unstable();
    stats
}

/// The task at `node` and the next node, if `node` is a valid task of list `shard`: its header
/// read once (state, vtable, owner: what [`super::lists::header_trailer`] checks), then its id and its link.
fn read_task(mem: &mut dyn Mem, vt: &Vtables, seen: &mut Option<(u64, VtInfo)>, lists: &TaskLists, node: u64, shard: u64) -> Option<(TaskSeen, u64)> {
    if node == 0 || !node.is_multiple_of(8) {
        return None;
    }
    let mut h = [0u8; 32];
    if !mem.read(node, &mut h) {
        return None;
    }
    let w = |i: usize| u64::from_ne_bytes(h[i..i + 8].try_into().unwrap());
    let (state, vtable) = (w(0), w(16));
    let info = match *seen {
        Some((v, info)) if v == vtable => info,
        _ => {
            let info = *vt.get(vtable)?;
            *seen = Some((vtable, info));
            info
        }
    };
    if w(24) != lists.owner_id {
        return None;
    }
    let id = mem.u64_at(node + info.id_offset)?;
    if lists.shard_mask.is_some_and(|m| id & m != shard) {
        return None;
    }
    let next = mem.u64_at(node + info.trailer_offset + lists.link.next)?;
    Some((TaskSeen { owner: lists.owner_id, header: node, vtable, id, state }, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::tokio::census::{
        lists::{discover, tests::runtime, tests::vt, tests::TRAILER},
        scan::Seed,
    };

    fn setup(shards: Option<u64>, n: u64) -> (crate::runtimes::tokio::census::mem::FakeMem, Vec<u64>, TaskLists) {
        let ids: Vec<u64> = (1..=n).collect();
        let (mut mem, hs) = runtime(shards, &ids, 5);
        let l = discover(&mut mem, &vt(), &Seed { header: hs[0], vtable: 0x5000, owner_id: 5 }).unwrap();
        (mem, hs, l)
    }

    #[test]
    fn walks_every_task_of_every_shard() {
        let (mut mem, _, l) = setup(Some(4), 30);
        let mut out = Vec::new();
        let st = walk(&mut mem, &vt(), &l, 1000, &mut out);
        assert_eq!(st, WalkStats { walked: 30, incomplete: vec![] });
        let mut ids: Vec<u64> = out.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, (1..=30).collect::<Vec<_>>());
        assert_eq!(out.iter().filter(|t| t.state & 0b100 != 0).count(), 10);
    }

    #[test]
    fn one_inline_list_walks_too() {
        let (mut mem, _, l) = setup(None, 7);
        let mut out = Vec::new();
        assert_eq!(walk(&mut mem, &vt(), &l, 1000, &mut out).walked, 7);
    }

    #[test]
    fn a_node_changed_under_the_walk_ends_that_list_only() {
        let (mut mem, hs, l) = setup(Some(2), 10);
        // task id 4 (shard 0) was freed and its cell reused: its vtable word is garbage
        mem.put_u64(hs[3] + 16, 0xdead);
        let mut out = Vec::new();
        let st = walk(&mut mem, &vt(), &l, 1000, &mut out);
        assert_eq!(st.incomplete, vec![0]);
        // shard 0 walked newest first: 10, 8, 6 then 4 is invalid; shard 1 whole
        assert_eq!(st.walked, 3 + 5);
    }

    #[test]
    fn a_cycle_is_bounded() {
        let (mut mem, hs, l) = setup(None, 5);
        // the oldest task's next points back at the head
        mem.put_u64(hs[0] + TRAILER + 8, hs[4]);
        let mut out = Vec::new();
        let st = walk(&mut mem, &vt(), &l, 50, &mut out);
        assert_eq!(st.walked, 50);
        assert_eq!(st.incomplete, vec![0]);
    }

    #[test]
    fn tasks_come_in_id_order_once_each_by_table_or_by_sort() {
        let t = |id| TaskSeen { owner: 1, header: id * 64, vtable: 0x5000, id, state: 0 };
        for ids in [vec![9u64, 7, 5, 8, 6, 5], vec![1 << 40, 3, 1 << 20, 3]] {
            let tasks: Vec<TaskSeen> = ids.iter().map(|&i| t(i)).collect();
            let (mut out, mut table) = (Vec::new(), Vec::new());
            in_id_order(&tasks, &mut out, &mut table);
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            assert_eq!(out.iter().map(|&i| tasks[i as usize].id).collect::<Vec<_>>(), want);
            // the sparse ids were sorted, not tabled
            assert!(table.len() < 100);
        }
        let (mut out, mut table) = (vec![1], Vec::new());
        in_id_order(&[], &mut out, &mut table);
        assert!(out.is_empty());
    }

    #[test]
    fn a_task_in_the_wrong_shard_is_invalid() {
        let (mut mem, hs, l) = setup(Some(2), 4);
        mem.put_u64(hs[3] + 40, 7); // id 4 -> 7: belongs to shard 1, found in shard 0
        let mut out = Vec::new();
        assert_eq!(walk(&mut mem, &vt(), &l, 100, &mut out).incomplete, vec![0]);
    }
}

/// The indices of `tasks` in id order, one per id, into `out`. Task ids are handed out in spawn
/// order, so the live ones usually lie in a span a few times their number: then a table over the
/// span puts them in order in one pass (`table` is its reused storage); else (ids far apart, or a
/// hostile target's) they are sorted.
pub fn in_id_order(tasks: &[TaskSeen], out: &mut Vec<u32>, table: &mut Vec<u32>) {
    out.clear();
    let (Some(lo), Some(hi)) = (tasks.iter().map(|t| t.id).min(), tasks.iter().map(|t| t.id).max()) else { return };
    let span = hi - lo;
    if span < 4 * tasks.len() as u64 + 4096 {
        table.clear();
        table.resize(span as usize + 1, u32::MAX);
        for (i, t) in tasks.iter().enumerate() {
            table[(t.id - lo) as usize] = i as u32;
        }
        out.extend(table.iter().copied().filter(|&i| i != u32::MAX));
    } else {
        out.extend(0..tasks.len() as u32);
        out.sort_unstable_by_key(|&i| tasks[i as usize].id);
        out.dedup_by_key(|i| tasks[*i as usize].id);
    }
}
