//! Embeds every file of `migrations/` (the one source of the schema) into the crate, in
//! version order, so the runtime never reads the filesystem.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(u32, String, PathBuf)> = fs::read_dir(&dir)
        .expect("migrations/ beside shared/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .map(|path| {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let (version, name) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{stem}: migrations are named NNNN_name.sql"));
            let version: u32 = version
                .parse()
                .unwrap_or_else(|_| panic!("{stem}: the version must be a number"));
            (version, name.to_owned(), fs::canonicalize(&path).unwrap())
        })
        .collect();
    files.sort();
    for pair in files.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "two migrations share version {}",
            pair[0].0
        );
    }
    let entries: String = files
        .iter()
        .map(|(version, name, path)| {
            format!(
                "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({path:?}) }},\n",
                path = path.display().to_string()
            )
        })
        .collect();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("migrations.rs");
    fs::write(out, format!("&[\n{entries}]\n")).unwrap();
}
