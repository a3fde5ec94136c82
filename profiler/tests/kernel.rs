//! The kernel leakprof runs on: the features `--probes` needs, asked of this kernel, are the ones
//! its release should have, and it loads every one of leakprof's BPF programs (`leakprof
//! features`). Run on the host by the test command, and in
//! every kernel of the matrix by `cargo xtask test-kernels`.
mod common;

use common::{bpf_available, run};

#[test]
fn features_are_those_of_the_kernel_release() {
    if !bpf_available("features_are_those_of_the_kernel_release") {
        return;
    }
    let out = run(&["features", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let release = f["release"].as_str().unwrap().to_string();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap());
    let version = (v.next().unwrap(), v.next().unwrap());
    for feat in f["features"].as_array().unwrap() {
        let since = (feat["since"][0].as_u64().unwrap() as u32, feat["since"][1].as_u64().unwrap() as u32);
        if version >= since {
            assert_eq!(feat["present"], true, "kernel {release} should have {feat} (Linux {}.{}+)", since.0, since.1);
        }
    }
    // every one of leakprof's BPF programs is loaded (verified) by this kernel
    assert!(f.get("programs_unchecked").is_none(), "{f:#}");
    let progs = f["programs"].as_array().unwrap();
    assert!(progs.len() >= 9, "{f:#}");
    for p in progs {
        assert_eq!(p["loads"], true, "kernel {release} refused {p}");
    }
    // every feature --probes needs is there: the text says so, with the minimum
    let text = String::from_utf8(run(&["features"]).stdout).unwrap();
    assert!(text.contains("--probes: yes (needs Linux 5.8+)"), "{text}");
}
