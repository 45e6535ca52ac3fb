//! Link order of the shipped binary (issue 22).
//!
//! The kernel maps a binary's text 64 KB around each page fault, so an idle node whose few hot
//! functions are scattered over the 9 MB of text held nearly all of it resident. For `dist` builds
//! on x86_64 Linux (linked by rust-lld), the functions listed in `deploy/dist/hot-functions.txt`
//! (what a node runs up to idling in a cluster; `deploy/dist/hot-functions.sh` regenerates it)
//! go first in `.text`, together. Names the build lacks are skipped silently: a stale list costs
//! resident memory, never a failed link. `FOUNDATION_LINK_ORDER=0` leaves the order to the linker
//! (needed with a linker other than lld, which lacks `--symbol-ordering-file`).

use std::path::Path;

const LIST: &str = "deploy/dist/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=FOUNDATION_LINK_ORDER");
    if std::env::var("FOUNDATION_LINK_ORDER").as_deref() == Ok("0") || !dist_build() {
        return;
    }
    let lld_by_default = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if !lld_by_default {
        return;
    }
    let list = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(LIST);
    println!(
        "cargo:rustc-link-arg-bin=foundation=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bin=foundation=-Wl,--no-warn-symbol-ordering");
}

/// Whether cargo builds the `dist` profile: build scripts see only "release" or "debug" in
/// `PROFILE`, but the profile's directory names `OUT_DIR` (`target/dist/build/foundation-…/out`).
fn dist_build() -> bool {
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(Path::file_name)
        .is_some_and(|name| name == "dist")
}
