// The git commit a binary was built from, for `--version`
// (`aif-node-exporter 0.1.0 (commit 676f200abcde)`). Shared by the binary
// crates' build scripts with `include!("../build-support/git_commit.rs")`.
//
// `AIF_GIT_COMMIT` in the environment wins (`scripts/dist.sh` sets it, with
// `-dirty` when tracked files differ from HEAD; a build from a source tarball
// may set it too). Otherwise `git rev-parse --short=12 HEAD` in the crate's
// directory, or `unknown` when git or the repository is absent. The build
// script reruns only when HEAD moves: `.git/HEAD`, the branch's ref file (its
// directory while the ref is only packed) and `packed-refs` are watched, never
// the work tree.

/// Sets `cargo:rustc-env=AIF_GIT_COMMIT=…` for the crate being built.
fn emit_git_commit() {
    println!("cargo:rerun-if-env-changed=AIF_GIT_COMMIT");
    let commit = match std::env::var("AIF_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit_from_repo().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=AIF_GIT_COMMIT={commit}");
}

/// Runs git in the crate's directory; `None` when it fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The short commit of HEAD, registering the files that move with it.
fn git_commit_from_repo() -> Option<String> {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // `--git-path` answers relative to the crate's directory; absolute for
    // worktrees and `GIT_DIR`.
    // A missing path would make cargo rerun the script on every build.
    let watch = |path: &std::path::Path| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    watch(&dir.join(git(&["rev-parse", "--git-path", "HEAD"])?));
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = dir.join(git(&["rev-parse", "--git-path", &head_ref])?);
        match loose.parent() {
            // Only packed so far: the next commit creates the loose file there.
            Some(parent) if !loose.exists() => watch(parent),
            _ => watch(&loose),
        }
        watch(&dir.join(git(&["rev-parse", "--git-path", "packed-refs"])?));
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
