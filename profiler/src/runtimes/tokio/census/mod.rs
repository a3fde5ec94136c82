//! tokio tasks by census: every live task of every runtime in the process, read from outside
//! each sample (no probe, no ptrace stop), those spawned before attach included.
//!
//! The task vtables are found in the executable's data ([`vtables`]); a bounded scan of the heap
//! finds a task header of each runtime ([`scan`]); from it, the runtime's owned-task lists
//! ([`lists`]); each sample walks them ([`walk`]) through a block cache ([`mem`]). Task ids are
//! handed out in spawn order by one counter (`task::Id::next`), which gives each site's oldest
//! task and how many tasks were spawned since ([`spawn_order`]).
pub mod blocking;
pub mod cell_bytes;
pub mod lists;
pub mod mem;
pub mod scan;
pub mod spawn_order;
pub mod vtables;
pub mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};


use self::{
    lists::TaskLists,
    mem::{BlockReader, Mem},
    scan::{heap_regions, HeapScan, Seed},
    spawn_order::SpawnOrder,
    vtables::Vtables,
    walk::{walk, TaskSeen},
};
use crate::{
    model::CensusStats,
    runtimes::tokio::state,
    sample::{Sample, SiteObs, SiteTotals},
};

/// A hash map keyed by task ids and vtable addresses: a census updates one entry per live task
/// per sample (a million at scale), where the default SipHash costs more than the walk's reads.
/// The keys are the target's own values: foldhash's per-map random seed keeps a hostile target
/// from choosing colliding ids.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Heap bytes scanned for runtimes at attach, and per sample afterwards (new runtimes).
const FIRST_SCAN_BYTES: u64 = 4 << 30;
const FIRST_SCAN_STEP: u64 = 64 << 20;
const RESCAN_BYTES: u64 = 32 << 20;
/// Once a runtime is known, new ones are rare (a runtime or `LocalSet` created after attach): the
/// background scan reads this much per sample (at 100,000 tasks, 32 MiB took a third of a sample).
const RESCAN_KNOWN_BYTES: u64 = 8 << 20;
/// A new pass over the heap starts at most this often once a runtime is known.
const RESCAN_EVERY_NS: u64 = 2_000_000_000;
/// Tasks walked per sample at most, and the block cache's bound.
const MAX_TASKS: u64 = 4_000_000;
const CACHE_BYTES: u64 = 32 << 20;
/// Task headers kept per site for reading where they wait.
pub const HEADERS_PER_SITE: usize = crate::options::WaitSampling::SAMPLED.per_site;
/// Times discovery is tried for one owner id per pass over the heap (a dropped runtime's cells).
const TRIES_PER_OWNER: u32 = 3;
/// A runtime whose owner word cannot be read at this many censuses in a row is taken as gone.
const GONE_AFTER: u32 = 3;
/// At attach, lists not recognised are read again this many times, this far apart.
const ATTACH_RETRIES: u32 = 40;
const ATTACH_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// A live task as remembered between censuses (24 bytes: a million are kept, twice over while a
/// census merges them with the next).
#[derive(Debug, Clone, Copy)]
struct Seen {
    id: u64,
    born_ns: u64,
    /// Its vtable and its runtime's owner id, as indices into [`Keys`].
    vtable: u32,
    owner: u32,
}

/// Vtables and owner ids as small indices (there are few of each: the binary's task vtables, the
/// runtimes found), so that a remembered task holds two u32 rather than two u64.
#[derive(Debug, Default)]
struct Keys {
    keys: Vec<u64>,
    index: FastMap<u64, u32>,
}

impl Keys {
    fn of(&mut self, key: u64) -> u32 {
        *self.index.entry(key).or_insert_with(|| {
            self.keys.push(key);
            (self.keys.len() - 1) as u32
        })
    }

    fn key(&self, i: u32) -> u64 {
        self.keys[i as usize]
    }
}

/// Census state of one tokio process.
pub struct TokioCensus {
    space: crate::target::Space,
    mem: BlockReader,
    vtables: Vtables,
    scan: HeapScan,
    scan_started_ns: u64,
    pub runtimes: Vec<TaskLists>,
    /// Per runtime: the address of its live-task count, once told apart from `added`.
    counts: HashMap<u64, u64>,
    tries: HashMap<u64, u32>,
    /// Why the runtimes not found were not (owner id -> reason).
    pub failures: BTreeMap<u64, String>,
    /// The last seed whose runtime's lists could not be recognised, per owner id (retried at
    /// attach: lists that change under the read, as in a program spawning flat out, can fail once).
    failed_seeds: HashMap<u64, Seed>,
    /// The live tasks of the last census, sorted by id: each census merges its own (sorted the
    /// same way) with them in one pass, which tells new tasks from finished ones without a hash
    /// lookup per task (a million lookups cost more than the walk's reads).
    seen: Vec<Seen>,
    /// Storage reused sample after sample (a million tasks' worth at scale, whose fresh pages the
    /// kernel would zero again each time): the last census's tasks as walked, the previous `seen`,
    /// this census's ids in order and the table that orders them.
    tasks: Vec<TaskSeen>,
    seen_spare: Vec<Seen>,
    by_id: Vec<u32>,
    id_table: Vec<u32>,
    keys: Keys,
    totals: HashMap<u64, SiteTotals>,
    /// vtable -> tasks seen by the census that were spawned after its first sample (a lower
    /// bound of the site's births since then: tasks that live less than an interval are missed).
    pub born_since_attach: HashMap<u64, u64>,
    /// vtable -> "idle"/"running"/"notified" -> live tasks, at the last census.
    pub states: HashMap<u64, BTreeMap<String, u64>>,
    /// vtable -> some live task headers (idle ones first), at the last census.
    pub headers: HashMap<u64, Vec<u64>>,
    /// vtable -> its oldest live task id, at the last census.
    pub oldest: HashMap<u64, u64>,
    /// vtable -> its newest live task id, at the last census.
    pub newest: HashMap<u64, u64>,
    /// vtable -> what its sampled live tasks hold ([`HEADERS_PER_SITE`] of them, any state), at
    /// the last census.
    pub bytes: HashMap<u64, crate::model::BytesPerTask>,
    /// Whether `bytes` is measured (`--no-bytes` turns it off).
    pub measure_bytes: bool,
    /// Idle task headers kept per site for where-stuck (and tasks measured per site).
    pub headers_per_site: usize,
    /// Per runtime handle: its blocking pool's queue, once found (a non-empty queue is needed
    /// to recognise it); when it was last looked for.
    blocking: HashMap<u64, blocking::BlockingQueue>,
    blocking_searched_ns: u64,
    /// Owner id -> censuses in a row at which its owner word could not be read.
    unread_owner: HashMap<u64, u32>,
    pub order: SpawnOrder,
    pub stats: CensusStats,
    /// When this census began (the attach scan's start), monotonic ns.
    created_ns: u64,
}

impl TokioCensus {
    /// Finds the vtables and scans the heap for runtimes. Err: why a census cannot work here.
    pub fn new(space: crate::target::Space, vtables: Vtables, next_id: Option<u64>, limits: crate::target::memory::ReadLimits) -> Result<Self, String> {
        let mem = BlockReader::new(space.clone(), CACHE_BYTES, limits);
        if vtables.is_empty() {
            return Err("no tokio task vtable found in the executable's data".into());
        }
        let mut c = TokioCensus {
            space,
            mem,
            vtables,
            scan: HeapScan::default(),
            scan_started_ns: 0,
            runtimes: Vec::new(),
            counts: HashMap::new(),
            tries: HashMap::new(),
            failures: BTreeMap::new(),
            failed_seeds: HashMap::new(),
            seen: Vec::new(),
            tasks: Vec::new(),
            seen_spare: Vec::new(),
            by_id: Vec::new(),
            id_table: Vec::new(),
            keys: Keys::default(),
            totals: HashMap::new(),
            born_since_attach: HashMap::new(),
            states: HashMap::new(),
            headers: HashMap::new(),
            oldest: HashMap::new(),
            newest: HashMap::new(),
            bytes: HashMap::new(),
            measure_bytes: true,
            headers_per_site: HEADERS_PER_SITE,
            blocking: HashMap::new(),
            blocking_searched_ns: 0,
            unread_owner: HashMap::new(),
            order: SpawnOrder::new(next_id),
            stats: CensusStats::default(),
            created_ns: crate::sample::monotonic_ns(),
        };
        // at attach: scan until a runtime is found (the rest of the heap is scanned in the
        // background, RESCAN_BYTES per sample), or the whole heap up to FIRST_SCAN_BYTES
        let mut scanned = 0;
        while scanned < FIRST_SCAN_BYTES {
            // the attach scan is bounded by FIRST_SCAN_BYTES, each step by a sample's budget
            c.mem.start_budget();
            c.find_runtimes(FIRST_SCAN_STEP, crate::sample::monotonic_ns());
            scanned += FIRST_SCAN_STEP;
            if c.scan.done() || !c.runtimes.is_empty() {
                break;
            }
        }
        // tasks found but not their lists: read them again a few times, spaced out, before giving up
        // (a core does not change: nothing to wait for)
        let retries = if c.space.pid().is_some() { ATTACH_RETRIES } else { 0 };
        for _ in 0..retries {
            if !c.runtimes.is_empty() || c.failed_seeds.is_empty() {
                break;
            }
            std::thread::sleep(ATTACH_RETRY_PAUSE);
            c.retry_failed();
        }
        c.stats.heap_scanned_at_attach_bytes = c.stats.heap_scanned_bytes;
        c.stats.attach_scan_ms = crate::sample::monotonic_ns().saturating_sub(c.created_ns) as f64 / 1e6;
        Ok(c)
    }

    /// Why the last sample's counts are partial, when it ran out of read budget.
    pub fn budget_warning(&self) -> Option<String> {
        self.mem.budget_warning()
    }

    /// Bytes of a task of this vtable from its header to its trailer (the cell's known extent).
    pub fn trailer_offset(&self, vtable: u64) -> Option<u64> {
        self.vtables.get(vtable).map(|v| v.trailer_offset)
    }

    pub fn vtable_count(&self) -> usize {
        self.vtables.len()
    }

    /// Scans on for runtimes not yet known, within `budget` bytes.
    fn find_runtimes(&mut self, budget: u64, now_ns: u64) {
        // until a runtime is found (a program just started) a new pass starts at every sample
        let due = self.runtimes.is_empty() || now_ns.saturating_sub(self.scan_started_ns) >= RESCAN_EVERY_NS;
        if self.scan.done() && due {
            let maps = self.space.maps().unwrap_or_default();
            self.scan = HeapScan::new(heap_regions(&maps), self.space.pagemap());
            self.scan_started_ns = now_ns;
            self.tries.clear();
        }
        let known: HashSet<u64> = self
            .runtimes
            .iter()
            .map(|r| r.owner_id)
            .chain(self.tries.iter().filter(|(_, &n)| n >= TRIES_PER_OWNER).map(|(&o, _)| o))
            .collect();
        let mut seeds: Vec<Seed> = Vec::new();
        self.mem.new_sample();
        let untouched = self.scan.untouched;
        self.scan.scan(&mut self.mem, &self.vtables, budget, &|o| known.contains(&o), &mut seeds);
        self.stats.heap_scanned_bytes += self.mem.bytes_read;
        self.stats.heap_untouched_bytes += self.scan.untouched - untouched;
        self.mem.new_sample();
        for s in seeds {
            if self.runtimes.iter().any(|r| r.owner_id == s.owner_id) {
                continue;
            }
            let tries = self.tries.entry(s.owner_id).or_default();
            if *tries >= TRIES_PER_OWNER {
                continue;
            }
            *tries += 1;
            self.discover(s);
        }
        self.mem.new_sample();
    }

    /// Recognises the task lists of the runtime `seed` belongs to, from fresh reads.
    fn discover(&mut self, seed: Seed) {
        self.mem.new_sample();
        match lists::discover(&mut self.mem, &self.vtables, &seed) {
            Ok(l) => {
                if self.stats.runtime_found_after_s.is_none() {
                    let since = crate::sample::monotonic_ns().saturating_sub(self.created_ns);
                    self.stats.runtime_found_after_s = Some(since as f64 / 1e9);
                }
                self.failures.remove(&l.owner_id);
                self.failed_seeds.remove(&l.owner_id);
                self.runtimes.push(l);
            }
            Err(e) => {
                self.failures.insert(seed.owner_id, e);
                self.failed_seeds.insert(seed.owner_id, seed);
            }
        }
    }

    /// Forgets the runtimes (and `LocalSet`s) dropped since the last census: the word that held
    /// the owner id holds something else (or could not be read at [`GONE_AFTER`] censuses in a
    /// row: a read can fail for want of budget). Their tasks, not seen by this census, are
    /// retired as finished (a set's tasks are cancelled when it is dropped).
    fn drop_gone(&mut self) {
        let (mem, unread) = (&mut self.mem, &mut self.unread_owner);
        let gone: Vec<u64> = self
            .runtimes
            .iter()
            .filter(|r| match mem.u64_fresh(r.owner_at) {
                Some(v) => {
                    unread.remove(&r.owner_id);
                    v != r.owner_id
                }
                None => {
                    let n = unread.entry(r.owner_id).or_default();
                    *n += 1;
                    *n >= GONE_AFTER
                }
            })
            .map(|r| r.owner_id)
            .collect();
        for owner in gone {
            self.unread_owner.remove(&owner);
            self.runtimes.retain(|r| r.owner_id != owner);
            self.counts.remove(&owner);
            self.stats.runtimes_dropped += 1;
        }
    }

    /// Tasks queued in the runtimes' blocking pools (appended to `tasks`, owner id 0): each
    /// pool's queue is looked for (at most every [`RESCAN_EVERY_NS`]) until found, then read
    /// every census. A queue that no longer reads as one leaves its tasks unsure and is looked
    /// for again. Returns the number queued (None: no queue found yet).
    fn read_blocking_queues(&mut self, tasks: &mut Vec<TaskSeen>, now_ns: u64, unsure: &mut HashSet<(u64, u64)>) -> Option<u64> {
        // runtime handles only: a LocalSet's list (its owner id laid out before it) has no pool
        let handles: Vec<u64> =
            self.runtimes.iter().filter(|r| r.shard_mask.is_some() || r.owner_at > r.lists[0].0).map(|r| r.handle).collect();
        self.blocking.retain(|h, _| handles.contains(h));
        if handles.iter().any(|h| !self.blocking.contains_key(h)) && now_ns.saturating_sub(self.blocking_searched_ns) >= RESCAN_EVERY_NS {
            self.blocking_searched_ns = now_ns;
            for &h in &handles {
                if !self.blocking.contains_key(&h) {
                    if let Some(q) = blocking::find(&mut self.mem, &self.vtables, h) {
                        self.blocking.insert(h, q);
                    }
                }
            }
        }
        if self.blocking.is_empty() {
            return None;
        }
        let mut total = 0;
        let queues: Vec<(u64, blocking::BlockingQueue)> = self.blocking.iter().map(|(&h, &q)| (h, q)).collect();
        for (h, q) in queues {
            match blocking::read(&mut self.mem, &self.vtables, &q, MAX_TASKS.saturating_sub(tasks.len() as u64), tasks) {
                Some(n) => total += n,
                None => {
                    self.blocking.remove(&h);
                    unsure.insert((0, 0));
                }
            }
        }
        Some(total)
    }

    /// What each site's first [`HEADERS_PER_SITE`] live tasks of this census hold (their cells,
    /// and boxed futures), summarised per site.
    fn measure_task_bytes(&mut self, tasks: &[TaskSeen]) {
        // per site: the figures, and what was counted (every kind met)
        let mut per_site: HashMap<u64, (Vec<u64>, Vec<&'static str>)> = HashMap::new();
        for t in tasks {
            let e = per_site.entry(t.vtable).or_default();
            if e.0.len() >= self.headers_per_site {
                continue;
            }
            let Some(info) = self.vtables.get(t.vtable).copied() else { continue };
            let (n, counts) = cell_bytes::task_bytes(&mut self.mem, t.header, info.trailer_offset, info.id_offset);
            e.0.push(n);
            if !e.1.contains(&counts) {
                e.1.push(counts);
            }
        }
        self.bytes = per_site
            .into_iter()
            .filter_map(|(k, (mut v, counts))| crate::model::BytesPerTask::of(&counts.join(", "), &mut v).map(|b| (k, b)))
            .collect();
    }

    /// Tries again the runtimes whose lists were not recognised.
    fn retry_failed(&mut self) {
        let seeds: Vec<Seed> = self.failed_seeds.values().copied().collect();
        for s in seeds {
            if !self.runtimes.iter().any(|r| r.owner_id == s.owner_id) {
                self.discover(s);
            }
        }
        self.mem.new_sample();
    }

    /// One census: live tasks per site, their states, the oldest, and how complete the walk was.
    pub fn census(&mut self, now_ns: u64) -> Sample<u64> {
        self.mem.start_budget();
        self.find_runtimes(if self.runtimes.is_empty() { RESCAN_BYTES } else { RESCAN_KNOWN_BYTES }, now_ns);
        let t0 = std::time::Instant::now();
        self.mem.new_sample();
        self.drop_gone();
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.clear();
        // (owner, shard) pairs whose walk did not finish: their unseen tasks are not retired
        let mut unsure: HashSet<(u64, u64)> = HashSet::new();
        let (mut expected, mut complete) = (Some(0u64), true);
        for r in &self.runtimes {
            let before = tasks.len();
            let st = walk(&mut self.mem, &self.vtables, r, MAX_TASKS.saturating_sub(before as u64), &mut tasks);
            complete &= st.incomplete.is_empty();
            unsure.extend(st.incomplete.iter().map(|&s| (r.owner_id, s as u64)));
            let count = resolve_count(&mut self.mem, r, &mut self.counts, st.walked, st.incomplete.is_empty());
            expected = expected.zip(count).map(|(a, b)| a + b);
        }
        let walked = tasks.len() as u64;
        let queued = self.read_blocking_queues(&mut tasks, now_ns, &mut unsure);
        self.stats = CensusStats {
            blocking_queued: queued,
            runtimes: self.runtimes.len(),
            tasks_walked: walked,
            tasks_expected: expected.filter(|_| !self.runtimes.is_empty()),
            complete,
            bytes_read: self.mem.bytes_read,
            walk_ms: t0.elapsed().as_secs_f64() * 1e3,
            heap_scanned_bytes: self.stats.heap_scanned_bytes,
            heap_scanned_at_attach_bytes: self.stats.heap_scanned_at_attach_bytes,
            heap_untouched_bytes: self.stats.heap_untouched_bytes,
            attach_scan_ms: self.stats.attach_scan_ms,
            runtime_found_after_s: self.stats.runtime_found_after_s,
            runtimes_dropped: self.stats.runtimes_dropped,
            ..CensusStats::default()
        };
        self.order.observe(&mut self.mem, tasks.iter().map(|t| t.id).max(), now_ns);
        if self.measure_bytes {
            self.measure_task_bytes(&tasks);
        }
        let sample = self.tally(&tasks, now_ns, &unsure);
        self.tasks = tasks;
        sample
    }

    fn tally(&mut self, tasks: &[TaskSeen], now_ns: u64, unsure: &HashSet<(u64, u64)>) -> Sample<u64> {
        /// One site's tasks at this census: one lookup per task gathers all of it.
        struct Site {
            live: i64,
            oldest_born: u64,
            idle: u64,
            /// (state name, tasks): at most the four states, searched in place.
            states: Vec<(&'static str, u64)>,
            oldest_id: u64,
            newest_id: u64,
            headers: Vec<u64>,
        }
        let mut per_site: FastMap<u64, Site> = FastMap::default();
        let new_site = |born: u64, id: u64| Site { live: 0, oldest_born: born, idle: 0, states: Vec::new(), oldest_id: id, newest_id: id, headers: Vec::new() };
        self.headers.clear();
        self.oldest.clear();
        self.newest.clear();
        let per_site_headers = self.headers_per_site;
        // this census's tasks by id, one per id
        let mut by_id = std::mem::take(&mut self.by_id);
        walk::in_id_order(tasks, &mut by_id, &mut self.id_table);
        let old = std::mem::take(&mut self.seen);
        let mut seen = std::mem::take(&mut self.seen_spare);
        seen.clear();
        seen.reserve(by_id.len() + 16);
        // tasks not seen this time finished, but for those in lists whose walk was cut short:
        // those are kept, and still counted live
        let masks: HashMap<u64, Option<u64>> = self.runtimes.iter().map(|r| (r.owner_id, r.shard_mask)).collect();
        let mut kept: Vec<Seen> = Vec::new();
        let mut gone = |s: Seen, seen: &mut Vec<Seen>, totals: &mut HashMap<u64, SiteTotals>, keys: &Keys| {
            let owner = keys.key(s.owner);
            let shard = masks.get(&owner).copied().flatten().map_or(0, |m| s.id & m);
            if unsure.contains(&(owner, shard)) {
                seen.push(s);
                kept.push(s);
            } else {
                totals.entry(keys.key(s.vtable)).or_default().finish(now_ns.saturating_sub(s.born_ns));
            }
        };
        let mut j = 0;
        for &i in &by_id {
            let t = &tasks[i as usize];
            let id = t.id;
            while j < old.len() && old[j].id < id {
                gone(old[j], &mut seen, &mut self.totals, &self.keys);
                j += 1;
            }
            let rec = if j < old.len() && old[j].id == id {
                j += 1;
                old[j - 1]
            } else {
                self.totals.entry(t.vtable).or_default().spawned += 1;
                if !self.order.before_attach(id) {
                    *self.born_since_attach.entry(t.vtable).or_default() += 1;
                }
                // spawned since attach: when, from its id; before: first seen now
                let (vtable, owner) = (self.keys.of(t.vtable), self.keys.of(t.owner));
                Seen { id, vtable, owner, born_ns: self.order.born_ns(id).unwrap_or(now_ns).min(now_ns) }
            };
            seen.push(rec);
            let (vtable, born) = (self.keys.key(rec.vtable), rec.born_ns);
            // a blocking task in its pool's queue (owner 0) waits for a thread
            let queued = t.owner == 0;
            let idle = queued || state::is_idle(t.state);
            let e = per_site.entry(vtable).or_insert_with(|| new_site(born, t.id));
            e.live += 1;
            e.oldest_born = e.oldest_born.min(born);
            e.idle += u64::from(idle);
            let name = if queued { "queued" } else { state::name(t.state) };
            match e.states.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => e.states.push((name, 1)),
            }
            e.oldest_id = e.oldest_id.min(t.id);
            e.newest_id = e.newest_id.max(t.id);
            if e.headers.len() < per_site_headers && idle && !queued {
                e.headers.push(t.header);
            }
        }
        for &s in &old[j..] {
            gone(s, &mut seen, &mut self.totals, &self.keys);
        }
        self.seen = seen;
        self.seen_spare = old;
        self.by_id = by_id;
        for (&vtable, s) in &mut per_site {
            self.oldest.insert(vtable, s.oldest_id);
            self.newest.insert(vtable, s.newest_id);
            self.headers.insert(vtable, std::mem::take(&mut s.headers));
        }
        // tasks of lists whose walk was cut short, not seen this time but not retired: still live
        for s in kept {
            per_site.entry(self.keys.key(s.vtable)).or_insert_with(|| new_site(s.born_ns, u64::MAX)).live += 1;
        }
        self.states = per_site
            .iter()
            .map(|(&k, s)| (k, s.states.iter().map(|&(n, c)| (n.to_string(), c)).collect()))
            .collect();
        let per_site: HashMap<u64, (i64, u64, u64, u64)> = per_site
            .into_iter()
            .map(|(k, s)| (k, (s.live, s.oldest_born, s.idle, s.states.iter().map(|&(_, c)| c).sum())))
            .collect();
        let sites = self
            .totals
            .iter()
            .map(|(&key, totals)| {
                let (live, oldest, idle, observed) = per_site.get(&key).copied().unwrap_or_default();
                SiteObs { key, live, totals: totals.clone(), oldest_born_ns: (live > 0).then_some(oldest), idle: Some((idle, observed)) }
            })
            .collect();
        Sample { now_ns, sites }
    }
}

/// The runtime's own count of live tasks, when it keeps one: of the candidate words, the one
/// that matched a complete walk while the other did not.
fn resolve_count(mem: &mut dyn Mem, r: &TaskLists, counts: &mut HashMap<u64, u64>, walked: u64, complete: bool) -> Option<u64> {
    if let Some(&at) = counts.get(&r.owner_id) {
        return mem.u64_fresh(at);
    }
    if !complete || r.count_candidates.is_empty() {
        return None;
    }
    let vals: Vec<(u64, u64)> = r.count_candidates.iter().filter_map(|&a| mem.u64_fresh(a).map(|v| (a, v))).collect();
    // the closest to the walk, clearly closer than the other (`added` counts finished tasks too)
    let mut by_dist: Vec<(u64, u64, u64)> = vals.iter().map(|&(a, v)| (v.abs_diff(walked), a, v)).collect();
    by_dist.sort();
    match by_dist[..] {
        [(d, at, v), (d2, ..), ..] if d <= 2 + walked / 100 && d2 >= d + 3 => {
            counts.insert(r.owner_id, at);
            Some(v)
        }
        // both words agree (no task has finished yet): either is the count, for now
        [(d, _, v), (_, _, v2), ..] if d <= 2 + walked / 100 && v == v2 => Some(v),
        [(d, at, v)] if d <= 2 + walked / 100 => {
            counts.insert(r.owner_id, at);
            Some(v)
        }
        _ => None,
    }
}
