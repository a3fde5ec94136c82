//! g layouts and waitReason names per Go version, generated from each toolchain's DWARF with
//! `cargo run -p profiler --example go_layout -- fixtures/bin/go1.19 fixtures/bin/go-latest`
//! (do not edit by hand; regenerate when adding a toolchain). Used for binaries without DWARF.
use super::layout::GoLayout;
use crate::gocensus::GLayout;

/// (version, [atomicstatus, goid, waitsince, waitreason, gopc, startpc], waitReasons).
type Entry = (&'static str, [u64; 6], &'static [(u8, &'static str)]);

const TABLE: &[Entry] = &[
// GENERATED BELOW
    // go1.19.8
    ("go1.19.8", [144, 152, 168, 176, 296, 312], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "ChanReceiveNilChan"), (4, "ChanSendNilChan"), (5, "DumpingHeap"), (6, "GarbageCollection"), (7, "GarbageCollectionScan"), (8, "PanicWait"), (9, "Select"), (10, "SelectNoCases"), (11, "GCAssistWait"), (12, "GCSweepWait"), (13, "GCScavengeWait"), (14, "ChanReceive"), (15, "ChanSend"), (16, "FinalizerWait"), (17, "ForceGCIdle"), (18, "Semacquire"), (19, "Sleep"), (20, "SyncCondWait"), (21, "TimerGoroutineIdle"), (22, "TraceReaderBlocked"), (23, "WaitForGCCycle"), (24, "GCWorkerIdle"), (25, "Preempted"), (26, "DebugCall")]),
    // go1.27.3
    ("go1.27.3", [144, 152, 168, 176, 288, 304], &[(0, "Zero"), (1, "GCAssistMarking"), (2, "IOWait"), (3, "DumpingHeap"), (4, "GarbageCollection"), (5, "GarbageCollectionScan"), (6, "PanicWait"), (7, "GCAssistWait"), (8, "GCSweepWait"), (9, "GCScavengeWait"), (10, "FinalizerWait"), (11, "ForceGCIdle"), (12, "UpdateGOMAXPROCSIdle"), (13, "Semacquire"), (14, "Sleep"), (15, "ChanReceiveNilChan"), (16, "ChanSendNilChan"), (17, "SelectNoCases"), (18, "Select"), (19, "ChanReceive"), (20, "ChanSend"), (21, "SyncCondWait"), (22, "SyncMutexLock"), (23, "SyncRWMutexRLock"), (24, "SyncRWMutexLock"), (25, "SyncWaitGroupWait"), (26, "TraceReaderBlocked"), (27, "WaitForGCCycle"), (28, "GCWorkerIdle"), (29, "GCWorkerActive"), (30, "Preempted"), (31, "DebugCall"), (32, "GCMarkTermination"), (33, "StoppingTheWorld"), (34, "FlushProcCaches"), (35, "TraceGoroutineStatus"), (36, "TraceProcStatus"), (37, "PageTraceFlush"), (38, "Coroutine"), (39, "GCWeakToStrongWait"), (40, "SynctestRun"), (41, "SynctestWait"), (42, "SynctestChanReceive"), (43, "SynctestChanSend"), (44, "SynctestSelect"), (45, "SynctestWaitGroupWait"), (46, "CleanupWait")]),
];

/// The layout for a version ("go1.19.8"): an exact match, else the same major.minor.
pub fn for_version(version: &str) -> Option<GoLayout> {
    let mm = super::buildinfo::major_minor(version);
    let e = TABLE
        .iter()
        .find(|e| e.0 == version)
        .or_else(|| TABLE.iter().find(|e| super::buildinfo::major_minor(e.0) == mm))?;
    let [atomicstatus, goid, waitsince, waitreason, gopc, startpc] = e.1;
    Some(GoLayout {
        g: GLayout { atomicstatus, goid, waitsince, waitreason, gopc, startpc },
        wait_reasons: e.2.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    })
}

/// Versions the table knows.
pub fn known_versions() -> Vec<&'static str> {
    TABLE.iter().map(|e| e.0).collect()
}
