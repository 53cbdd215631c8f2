//! Compiles every `recipes/*.toml` into the binary (`include_str!`), so the API
//! starts from any directory; `--recipes DIR` adds to or overrides them. Also
//! sets `AIF_GIT_COMMIT` (the commit shown by `--version` of both binaries).

use std::fmt::Write as _;

include!("../build-support/git_commit.rs");

fn main() {
    emit_git_commit();
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("recipes");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("bench-api/recipes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::from(
        "/// The shipped recipes: (file name, TOML text).\npub const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().expect("file name").to_string_lossy();
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .expect("write");
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("out dir"))
        .join("builtin_recipes.rs");
    std::fs::write(dest, out).expect("write builtin_recipes.rs");
}
