//! Sets `AIF_GIT_COMMIT` (the commit shown by `--version`).

include!("../build-support/git_commit.rs");

fn main() {
    emit_git_commit();
}
