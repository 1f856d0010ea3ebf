//! Tells the OpenAPI validation test whether GitHub's descriptions are installed: without
//! `ATELIER_OCTOKIT_DIR` and without the pinned packages in `<repo>/.tools/node_modules` (what
//! `scripts/test` installs), and outside CI, the test is compiled as ignored — shown as skipped,
//! never run and passed. Under `CI=true` it always runs, and fails when they are missing.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(octokit_missing)");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=ATELIER_OCTOKIT_DIR");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let default = Path::new(&manifest).join("../../.tools/node_modules");
    let dir = std::env::var_os("ATELIER_OCTOKIT_DIR").map_or(default, Into::into);
    let file = dir.join("@octokit/openapi/generated/api.github.com.json");
    println!("cargo::rerun-if-changed={}", file.display());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !file.is_file() && !ci {
        println!("cargo::rustc-cfg=octokit_missing");
    }
}
