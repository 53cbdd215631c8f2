//! Sets `AIF_GIT_COMMIT`, the commit `aif-loadgen --version` shows.

include!("../build-support/git_commit.rs");

fn main() {
    emit_git_commit();
}
