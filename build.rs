//! Puts the git commit the binary is built from into `SMPP_PROXY_COMMIT`, for `--version`.
//! A build outside a git checkout (a source tarball, a container build without `.git`) says
//! `unknown`, unless `SMPP_PROXY_COMMIT` is set in the build's environment.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SMPP_PROXY_COMMIT");
    let commit = std::env::var("SMPP_PROXY_COMMIT").ok().or_else(git_commit);
    println!(
        "cargo:rustc-env=SMPP_PROXY_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // Build again when the checked-out commit moves (HEAD, or the branch it points to).
    let git = Path::new(".git");
    if git.join("HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
            if let Some(branch) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed=.git/{branch}");
            }
        }
    }
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}
