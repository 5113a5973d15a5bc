//! Builds the guest crates into WebAssembly components with a nested cargo.
//!
//! The nested build uses its own target directory (beside the outer one) so
//! it does not wait on the outer build's lock, and drops the outer build's
//! compiler wrappers and flags, which are meant for the host target.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "rules";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let rules_dir = manifest_dir.parent().expect("rules/bundle lives in rules/");
    let workspace = rules_dir.parent().expect("rules/ lives in the workspace");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    let mut crates = vec!["shop-order-rules", "shop-inventory-rules", "shop-purchase-limit"];
    if env::var_os("CARGO_FEATURE_FIXTURES").is_some() {
        crates.extend(["shop-rogue-rules", "shop-previous-minor", "shop-next-minor"]);
    }

    for watched in ["wit", "domain", "components", "plugins", "testing"] {
        println!("cargo:rerun-if-changed={}", rules_dir.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());

    check_target_installed();

    let target_dir = wasm_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--target", TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(&target_dir)
        .args(crates.iter().flat_map(|c| ["-p", c]));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let output = build.output().expect("run cargo for the rule components");
    if !output.status.success() {
        panic!(
            "building the rule components for {TARGET} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    for name in crates {
        let file = format!("{}.wasm", name.replace('-', "_"));
        let built = target_dir.join(TARGET).join(PROFILE).join(&file);
        std::fs::copy(&built, out_dir.join(&file)).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
}

/// `<target>/rules-wasm`, shared by every outer profile so the guests are
/// compiled once, not once per debug/release/test build.
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out, or one level
    // deeper when cargo builds for an explicit --target.
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map(|target| target.join("rules-wasm"))
        .unwrap_or_else(|| out_dir.join("rules-wasm"))
}

fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(TARGET).exists()
    {
        panic!(
            "the {TARGET} target is not installed; the rule components need it:\n\n    rustup target add {TARGET}\n"
        );
    }
}
