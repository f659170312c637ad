//! Dependencies between the crate's modules point one way. At the bottom, the primitives
//! every capability is written with (HTTP request and response, errors, the database,
//! clock, ids, secrets and the other ports) import no capability; at the top, the router,
//! cron and the console wire the capabilities together, and nothing imports them. Read from the
//! sources: `crate::<module>` paths and `use crate::{...}` trees, outside comments and test
//! modules.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const PRIMITIVES: &[&str] = &[
    "api",
    "clock",
    "db",
    "error",
    "ids",
    "notify",
    "outbound",
    "rate_limit",
    "secrets",
    "tokens",
];
const TOP: &[&str] = &["router", "cron", "console"];

/// Each top-level module of the crate and the `.rs` files it is made of.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        collect(&path, &mut files);
        modules.insert(name, files);
    }
    modules
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            collect(&entry.unwrap().path(), files);
        }
    } else if path.extension().is_some_and(|extension| extension == "rs") {
        files.push(path.to_owned());
    }
}

/// The code of a file: up to its test module, without comment lines.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every path `code` names under `crate::`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let word = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (index, _) in code.match_indices("crate::") {
        let rest = &code[index + "crate::".len()..];
        if let Some(tree) = rest.strip_prefix('{') {
            // The top-level items of a `use crate::{a, b::{c, d}, e}` tree.
            let mut depth = 0;
            let mut item_start = true;
            for (offset, character) in tree.char_indices() {
                match character {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        names.insert(word(&tree[offset..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(word(rest));
        }
    }
    names
}

/// What each module imports of the crate's other modules.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<&String> = modules.keys().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let named = files
                .iter()
                .flat_map(|file| named_modules(&code(file)))
                .filter(|other| other != name && known.contains(other))
                .collect();
            (name.clone(), named)
        })
        .collect()
}

#[test]
fn the_primitives_import_no_capability() {
    for (module, imported) in imports() {
        if PRIMITIVES.contains(&module.as_str()) {
            let upward: Vec<&String> = imported
                .iter()
                .filter(|other| !PRIMITIVES.contains(&other.as_str()))
                .collect();
            assert!(upward.is_empty(), "{module} imports {upward:?}");
        }
    }
}

#[test]
fn nothing_imports_the_top_but_the_router() {
    for (module, imported) in imports() {
        for top in TOP {
            assert!(
                module == "router" || !imported.contains(*top),
                "{module} imports {top}"
            );
        }
    }
}

#[test]
fn the_reading_finds_use_trees_and_paths() {
    let names = named_modules(
        "use crate::{\n    api::{ApiRequest, ok},\n    db::Statement,\n    Env,\n};\nlet x = crate::ids::new_id();",
    );
    let expected: BTreeSet<String> = ["api", "db", "Env", "ids"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected);
}
