//! Link arguments of the release binary: it is stripped, and its functions
//! are laid out in the order of packaging/symbol-order.txt (made by
//! scripts/symbol-order.sh), so the code procship runs sits together and the
//! kernel's 64 KiB fault-around maps a few hundred KiB of text instead of
//! all of it.
//!
//! The order is applied to release builds on x86_64 Linux with rustc 1.90 or
//! later, whose default linker there is lld (GNU ld has no
//! `--symbol-ordering-file`). Build-time switches:
//! `PROCSHIP_BUILD_SYMBOL_ORDER=off` builds without the order (another
//! linker, or to measure), `=warn` lets lld name every listed symbol the
//! build lacks; `PROCSHIP_BUILD_KEEP_SYMBOLS=1` keeps the symbol table
//! (profiling, and the training build).

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    build_info();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=PROCSHIP_BUILD_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=PROCSHIP_BUILD_KEEP_SYMBOLS");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if env::var("PROCSHIP_BUILD_KEEP_SYMBOLS").as_deref() != Ok("1") {
        println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
    }
    let mode = env::var("PROCSHIP_BUILD_SYMBOL_ORDER").unwrap_or_default();
    if mode == "off"
        || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || !rustc_links_with_lld()
    {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let file = Path::new(&dir).join("packaging/symbol-order.txt");
    if !file.is_file() {
        println!(
            "cargo:warning=no {}: the release binary keeps the default layout",
            file.display()
        );
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    if mode != "warn" {
        // A listed symbol this build lacks (renamed, inlined, another
        // compiler) is skipped; `scripts/symbol-order.sh --check` says when
        // the list has gone stale.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc 1.90+ links x86_64-unknown-linux-gnu with its bundled lld, unless
/// told to use another linker.
/// What `procship --version` says about the build: the commit (from git,
/// "unknown" when built outside a checkout, as from a source package), the
/// target and the compiler.
fn build_info() {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit =
        out("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = out(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    let target = env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=PROCSHIP_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=PROCSHIP_BUILD_TARGET={target}");
    println!("cargo:rustc-env=PROCSHIP_BUILD_RUSTC={rustc}");
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=PROCSHIP_BUILD_PROFILE={profile}");
    for head in [".git/HEAD", ".git/refs/heads"] {
        if Path::new(head).exists() {
            println!("cargo:rerun-if-changed={head}");
        }
    }
}

fn rustc_links_with_lld() -> bool {
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 1 || (major == 1 && minor >= 90)
}
