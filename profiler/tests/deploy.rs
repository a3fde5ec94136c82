//! The fleet artefacts in deploy/: the Kubernetes manifests validate against the Kubernetes schema
//! (kubernetes-validate, which bundles the schemas: no cluster), the systemd unit and its probes
//! drop-in pass `systemd-analyze verify`, and the defaults ask for the census's rights only.
mod common;

use std::{path::Path, process::Command};

use common::skip_or_fail;

const VALIDATE: &str = "/opt/leakprof-k8s/venv/bin/kubernetes-validate";

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

#[test]
fn the_daemonsets_validate_and_the_default_asks_for_the_census_rights_only() {
    if !Path::new(VALIDATE).exists() {
        skip_or_fail("the_daemonsets_validate", &format!("{VALIDATE} is missing (scripts/setup.sh installs it)"));
        return;
    }
    let files = [deploy("daemonset.yaml"), deploy("daemonset-probes.yaml")];
    let out = Command::new(VALIDATE).arg("--strict").args(&files).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // the validator does refuse a manifest that is not the schema's
    let bad = std::env::temp_dir().join(format!("leakprof-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, std::fs::read_to_string(&files[0]).unwrap().replace("capabilities:", "capabilitiez:")).unwrap();
    let out = Command::new(VALIDATE).arg("--strict").arg(&bad).output().unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert!(!out.status.success(), "a misspelled field passed the schema");
    // the manifest's own lines, not its comments
    let default: String = std::fs::read_to_string(&files[0]).unwrap().lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    assert!(default.contains(r#"add: ["SYS_PTRACE", "DAC_READ_SEARCH"]"#), "{default}");
    assert!(!default.contains("BPF") && !default.contains("--probes") && !default.contains("SYS_ADMIN"), "{default}");
    let probes = std::fs::read_to_string(&files[1]).unwrap();
    assert!(probes.contains("--probes") && probes.contains("\"BPF\"") && probes.contains("\"PERFMON\""), "{probes}");
}

#[test]
fn the_systemd_unit_and_its_probes_drop_in_verify() {
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        skip_or_fail("the_systemd_unit_verifies", "systemd-analyze is missing");
        return;
    }
    // the unit as installed, with its ExecStart pointing at the binary built here
    let dir = std::env::temp_dir().join(format!("leakprof-unit-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("leakprof.service.d")).unwrap();
    let exe = env!("CARGO_BIN_EXE_leakprof");
    for (from, to) in [("leakprof.service", "leakprof.service"), ("leakprof-probes.conf", "leakprof.service.d/leakprof-probes.conf")] {
        let text = std::fs::read_to_string(deploy(from)).unwrap().replace("/usr/local/bin/leakprof", exe);
        std::fs::write(dir.join(to), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("leakprof.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    let unit = std::fs::read_to_string(deploy("leakprof.service")).unwrap();
    assert!(unit.contains("AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH\n"), "{unit}");
}
