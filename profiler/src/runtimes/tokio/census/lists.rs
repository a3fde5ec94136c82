//! Finding a runtime's owned-task lists from one of its task headers.
//!
//! Every task of a runtime is linked into its `OwnedTasks` through the `owned` pointers in the
//! task's trailer. The header's scheduler field (`Arc<Handle>`, at the vtable's
//! `scheduler_offset`) leads to the runtime's handle, in which the lists are found by shape and
//! validated against what they hold, so no compiler-chosen field order is assumed:
//! - sharded (tokio 1.35+): `ShardedList { lists: Box<[Mutex<LinkedList>]>, added, count,
//!   shard_mask }`: a (pointer, power-of-two length) pair with `length - 1` and the runtime's owner
//!   id a few words on, every shard's head and tail empty or a header of this owner;
//! - one list (older): `Mutex<{ LinkedList { head, tail }, closed }>` inline, followed by the
//!   owner id: two headers of this owner side by side.
//! - a `LocalSet`'s tasks (`spawn_local`): their scheduler is the set's `Arc<Shared>`, which holds
//!   one `LocalOwnedTasks { inner: { list, closed }, id }`: one list inline as above, the id
//!   laid out just before it. Each set has its own owner id, so each is found as one more runtime.
//!
//! Which trailer word is `prev` and which is `next`, and which list word is the head, are read
//! from the lists themselves (a head has no `prev`, a head's next points back at it).
use super::{mem::Mem, scan::Seed, vtables::Vtables};

/// Where `prev` and `next` are in a task's trailer (bytes from the trailer's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLayout {
    pub prev: u64,
    pub next: u64,
}

/// One runtime's task lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLists {
    pub owner_id: u64,
    /// The runtime's `ArcInner<Handle>` address (what tells runtimes apart).
    pub handle: u64,
    /// (address of the head pointer, address of the tail pointer) of each list.
    pub lists: Vec<(u64, u64)>,
    /// Sharded lists: a task with id `i` is in list `i & mask`.
    pub shard_mask: Option<u64>,
    /// Addresses of the words that may be the list's live-task count (resolved by the census).
    pub count_candidates: Vec<u64>,
    pub link: LinkLayout,
    /// Address of the word holding the owner id: once it holds anything else the runtime (or
    /// `LocalSet`) is gone and its memory reused.
    pub owner_at: u64,
}

/// Bytes of the handle searched for the lists.
const HANDLE_BYTES: usize = 8192;
const MAX_SHARDS: u64 = 1 << 16;

/// Whether `h` is a task header of owner `owner` (its trailer offset when it is).
pub fn header_trailer(mem: &mut dyn Mem, vt: &Vtables, h: u64, owner: u64) -> Option<u64> {
    if h == 0 || !h.is_multiple_of(8) {
        return None;
    }
    let mut b = [0u8; 32];
    if !mem.read(h, &mut b) {
        return None;
    }
    let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
    let info = vt.get(w(16))?;
    (w(24) == owner).then_some(info.trailer_offset)
}

/// The two link words of task `h` (at its trailer), if `h` is a header of `owner`.
fn links(mem: &mut dyn Mem, vt: &Vtables, h: u64, owner: u64) -> Option<[u64; 2]> {
    let tr = header_trailer(mem, vt, h, owner)?;
    Some([mem.u64_at(h + tr)?, mem.u64_at(h + tr + 8)?])
}

/// Up to `max` bytes of words at `addr`, as far as they can be read (fresh, 1 KiB at a time; an
/// address past the end of the address space ends the read: it comes from the target's memory).
pub(super) fn read_words(mem: &mut dyn Mem, addr: u64, max: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut b = vec![0u8; 1024];
    while out.len() * 8 < max {
        let Some(at) = addr.checked_add(out.len() as u64 * 8) else { break };
        if !mem.read_fresh(at, &mut b) {
            break;
        }
        out.extend(b.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())));
    }
    out
}

/// Finds the lists of the runtime `seed` belongs to.
pub fn discover(mem: &mut dyn Mem, vt: &Vtables, seed: &Seed) -> Result<TaskLists, String> {
    let info = vt.get(seed.vtable).ok_or("not a task vtable")?;
    let owner = seed.owner_id;
    let handle = mem
        .u64_fresh(seed.header + info.scheduler_offset)
        .filter(|&h| h != 0 && h % 8 == 0)
        .ok_or("the task's scheduler pointer is unreadable")?;
    let w = read_words(mem, handle, HANDLE_BYTES);
    // the word within `ks` of word `i` that holds the owner id
    let owner_near = |i: usize, ks: std::ops::RangeInclusive<isize>| {
        ks.into_iter().map(|k| i as isize + k).find(|&j| j >= 2 && w.get(j as usize) == Some(&owner)).map(|j| handle + 8 * j as u64)
    };
    // sharded: (ptr, len) with len - 1 and the owner id a few words on
    for i in 2..w.len().saturating_sub(2) {
        let (p, n) = (w[i], w[i + 1]);
        if p == 0 || p % 8 != 0 || !n.is_power_of_two() || n > MAX_SHARDS {
            continue;
        }
        let Some(mask_at) = (2..=4).find(|&j| w.get(i + j) == Some(&(n - 1))) else {
            continue;
        };
        let Some(owner_at) = owner_near(i, 1..=8) else {
            continue;
        };
        if let Some((lists, link)) = sharded_lists(mem, vt, owner, p, n) {
            let count_candidates = (2..=4).filter(|&j| j != mask_at).map(|j| handle + 8 * (i + j) as u64).collect();
            return Ok(TaskLists { owner_id: owner, handle, lists, shard_mask: Some(n - 1), count_candidates, link, owner_at });
        }
    }
    // one list inline: head and tail side by side, the owner id a few words on (`OwnedTasks`
    // before 1.35) or just before (a `LocalSet`'s `LocalOwnedTasks`, whose fields the compiler
    // orders id first)
    for i in 2..w.len().saturating_sub(1) {
        let pair = (handle + 8 * i as u64, w[i], w[i + 1]);
        if pair.1 == 0 || pair.2 == 0 {
            continue;
        }
        let Some(owner_at) = owner_near(i, 2..=8).or_else(|| owner_near(i, -3..=-1)) else {
            continue;
        };
        if let Some((lists, link)) = orient(mem, vt, owner, &[pair]) {
            return Ok(TaskLists { owner_id: owner, handle, lists, shard_mask: None, count_candidates: Vec::new(), link, owner_at });
        }
    }
    Err(format!(
        "no task list of owner {owner} found in its scheduler's state at {handle:#x} (a runtime handle or a LocalSet's shared state)"
    ))
}

/// Validates `n` shards at `p` (each a 24-byte `Mutex<LinkedList>`, the list at +0 or +8): every
/// shard empty or holding headers of this owner, but for a few that changed while being read
/// (a task finishing frees its cell).
fn sharded_lists(mem: &mut dyn Mem, vt: &Vtables, owner: u64, p: u64, n: u64) -> Option<(Vec<(u64, u64)>, LinkLayout)> {
    let words = read_words(mem, p, (n * 24) as usize);
    if (words.len() as u64) < n * 3 {
        return None;
    }
    for off in [0usize, 1] {
        let (mut pairs, mut valid, mut invalid) = (Vec::with_capacity(n as usize), Vec::new(), 0u64);
        for s in 0..n as usize {
            let (x, y) = (words[s * 3 + off], words[s * 3 + off + 1]);
            let at = p + (s * 24 + off * 8) as u64;
            pairs.push((at, x, y));
            if x == 0 && y == 0 {
                continue;
            }
            let ok = x != 0
                && y != 0
                && header_trailer(mem, vt, x, owner).is_some()
                && header_trailer(mem, vt, y, owner).is_some();
            if ok {
                valid.push((at, x, y));
            } else {
                invalid += 1;
            }
        }
        if valid.is_empty() || invalid > n / 4 {
            continue;
        }
        if let Some((_, link)) = orient(mem, vt, owner, &valid) {
            // every shard, oriented as the valid ones are
            let head_first = orient(mem, vt, owner, &valid[..1]).is_some_and(|(l, _)| l[0].0 == valid[0].0);
            let lists = pairs.iter().map(|&(a, _, _)| if head_first { (a, a + 8) } else { (a + 8, a) }).collect();
            return Some((lists, link));
        }
    }
    None
}

/// Tells head from tail and prev from next, given lists as (address of the first word, first
/// word, second word): a head has no prev, a tail no next, and a head's next points back at it.
fn orient(mem: &mut dyn Mem, vt: &Vtables, owner: u64, pairs: &[(u64, u64, u64)]) -> Option<(Vec<(u64, u64)>, LinkLayout)> {
    for first_is_head in [true, false] {
        for link in [LinkLayout { prev: 0, next: 8 }, LinkLayout { prev: 8, next: 0 }] {
            let idx = |o: u64| (o / 8) as usize;
            let mut ok = true;
            let mut proven = false;
            for &(_, x, y) in pairs.iter().filter(|p| p.1 != 0).take(16) {
                let (head, tail) = if first_is_head { (x, y) } else { (y, x) };
                let (Some(hl), Some(tl)) = (links(mem, vt, head, owner), links(mem, vt, tail, owner)) else {
                    ok = false;
                    break;
                };
                if hl[idx(link.prev)] != 0 || tl[idx(link.next)] != 0 {
                    ok = false;
                    break;
                }
                if head != tail {
                    let next = hl[idx(link.next)];
                    match links(mem, vt, next, owner) {
                        Some(nl) if nl[idx(link.prev)] == head => proven = true,
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if ok && (proven || pairs.iter().all(|p| p.1 == p.2)) {
                let lists =
                    pairs.iter().map(|&(a, _, _)| if first_is_head { (a, a + 8) } else { (a + 8, a) }).collect();
                return Some((lists, link));
            }
        }
    }
    None
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::runtimes::tokio::census::{mem::FakeMem, vtables::VtInfo};

    pub const VT: u64 = 0x5000;
    pub const TRAILER: u64 = 128;

    pub fn vt() -> Vtables {
        Vtables::from_pairs([(VT, VtInfo { trailer_offset: TRAILER, scheduler_offset: 32, id_offset: 40 })])
    }

    /// A fake runtime: a handle with `shards` sharded lists (None: one inline list) holding tasks
    /// with the given ids, linked newest first; returns the memory and the task headers.
    pub fn runtime(shards: Option<u64>, ids: &[u64], owner: u64) -> (FakeMem, Vec<u64>) {
        let mut mem = FakeMem::default();
        let handle = 0x10_0000;
        let shard_arr = 0x20_0000;
        let cells = 0x40_0000;
        mem.regions.push((handle, vec![0u8; 4096]));
        mem.regions.push((shard_arr, vec![0u8; 24 * 64]));
        mem.regions.push((cells, vec![0u8; 256 * ids.len().max(1)]));
        let n = shards.unwrap_or(1);
        // handle: strong, weak, some fields, then the list
        mem.put_u64(handle, 1);
        mem.put_u64(handle + 8, 1);
        let list_of = |s: u64| match shards {
            Some(_) => shard_arr + s * 24 + 8,
            None => handle + 0x80,
        };
        if shards.is_some() {
            for (k, v) in [(0x80, shard_arr), (0x88, n), (0x90, 99), (0x98, ids.len() as u64), (0xa0, n - 1), (0xa8, owner)] {
                mem.put_u64(handle + k, v);
            }
        } else {
            mem.put_u64(handle + 0x98, owner);
        }
        let headers: Vec<u64> = (0..ids.len() as u64).map(|i| cells + i * 256).collect();
        for (i, (&h, &id)) in headers.iter().zip(ids).enumerate() {
            mem.put_u64(h, (1 << 6) | ((i as u64 % 3 == 1) as u64 * 0b100));
            mem.put_u64(h + 16, VT);
            mem.put_u64(h + 24, owner);
            mem.put_u64(h + 32, handle);
            mem.put_u64(h + 40, id);
        }
        for s in 0..n {
            // push_front in id order: the head is the newest
            let members: Vec<u64> =
                headers.iter().zip(ids).filter(|(_, &id)| id & (n - 1) == s).map(|(&h, _)| h).rev().collect();
            for (k, &h) in members.iter().enumerate() {
                let prev = if k == 0 { 0 } else { members[k - 1] };
                let next = members.get(k + 1).copied().unwrap_or(0);
                mem.put_u64(h + TRAILER, prev);
                mem.put_u64(h + TRAILER + 8, next);
            }
            mem.put_u64(list_of(s), members.first().copied().unwrap_or(0));
            mem.put_u64(list_of(s) + 8, members.last().copied().unwrap_or(0));
        }
        (mem, headers)
    }

    fn seed(h: u64, owner: u64) -> Seed {
        Seed { header: h, vtable: VT, owner_id: owner }
    }

    #[test]
    fn finds_sharded_lists_from_a_task() {
        let ids: Vec<u64> = (1..=20).collect();
        let (mut mem, hs) = runtime(Some(4), &ids, 3);
        let l = discover(&mut mem, &vt(), &seed(hs[5], 3)).unwrap();
        assert_eq!(l.lists.len(), 4);
        assert_eq!(l.lists[0], (0x20_0000 + 8, 0x20_0000 + 16));
        assert_eq!(l.shard_mask, Some(3));
        assert_eq!(l.link, LinkLayout { prev: 0, next: 8 });
        assert_eq!(l.count_candidates, vec![0x10_0000 + 0x90, 0x10_0000 + 0x98]);
        // another owner's id: not these lists
        assert!(discover(&mut mem, &vt(), &seed(hs[5], 4)).is_err());
    }

    #[test]
    fn finds_one_inline_list_from_a_task() {
        let (mut mem, hs) = runtime(None, &[7, 8, 9], 1);
        let l = discover(&mut mem, &vt(), &seed(hs[0], 1)).unwrap();
        assert_eq!(l.lists, vec![(0x10_0080, 0x10_0088)]);
        assert_eq!(l.shard_mask, None);
    }

    #[test]
    fn a_local_set_list_has_its_owner_id_just_before_it() {
        let (mut mem, hs) = runtime(None, &[7, 8, 9], 6);
        mem.put_u64(0x10_0098, 0);
        mem.put_u64(0x10_0078, 6);
        let l = discover(&mut mem, &vt(), &seed(hs[0], 6)).unwrap();
        assert_eq!(l.lists, vec![(0x10_0080, 0x10_0088)]);
        assert_eq!(l.owner_at, 0x10_0078);
        // neither before nor after: not found
        mem.put_u64(0x10_0078, 0);
        assert!(discover(&mut mem, &vt(), &seed(hs[0], 6)).is_err());
    }

    #[test]
    fn prev_and_next_swapped_are_told_apart() {
        let (mut mem, hs) = runtime(Some(2), &[1, 2, 3, 4, 5, 6], 2);
        for &h in &hs {
            let (p, n) = (mem.u64_at(h + TRAILER).unwrap(), mem.u64_at(h + TRAILER + 8).unwrap());
            mem.put_u64(h + TRAILER, n);
            mem.put_u64(h + TRAILER + 8, p);
        }
        let l = discover(&mut mem, &vt(), &seed(hs[0], 2)).unwrap();
        assert_eq!(l.link, LinkLayout { prev: 8, next: 0 });
    }
}
