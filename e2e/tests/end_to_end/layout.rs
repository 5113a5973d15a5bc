//! The README's layout table is the map of the crates: every workspace
//! crate has a row, and each depends (tests included) only on crates whose
//! rows stand above its own.

use std::collections::BTreeMap;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

fn manifest(dir: &str) -> toml::Table {
    let path = root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The paths each row of the README's layout table names, in order.
fn layout_rows() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("the README");
    let table = readme
        .split("| path | what it holds |")
        .nth(1)
        .expect("the layout table");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cell = line.split('|').nth(1).unwrap_or_default();
            cell.split('`')
                .skip(1)
                .step_by(2)
                .flat_map(|path| match path.split_once('{') {
                    // `rules/components/{order,inventory}`
                    Some((stem, rest)) => rest
                        .trim_end_matches('}')
                        .split(',')
                        .map(|leaf| format!("{stem}{leaf}"))
                        .collect(),
                    None => vec![path.trim_end_matches('/').to_owned()],
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_layout_lists_every_crate_below_what_it_depends_on() {
    let rows = layout_rows();
    let row_of = |dir: &str| rows.iter().position(|paths| paths.iter().any(|p| p == dir));
    let workspace = manifest(".");
    let members = workspace["workspace"]["members"].as_array().expect("members");
    let mut dirs = BTreeMap::new();
    for member in members {
        let dir = member.as_str().expect("a path");
        let name = manifest(dir)["package"]["name"].as_str().expect("a name").to_owned();
        dirs.insert(name, dir.to_owned());
    }
    let mut wrong = Vec::new();
    for (name, dir) in &dirs {
        let Some(row) = row_of(dir) else {
            wrong.push(format!("{dir} ({name}) has no row in the README's layout table"));
            continue;
        };
        let crate_manifest = manifest(dir);
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = crate_manifest.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for dep in deps.keys().filter(|dep| *dep != name) {
                let Some(dep_dir) = dirs.get(dep) else { continue };
                if row_of(dep_dir).is_none_or(|dep_row| dep_row >= row) {
                    wrong.push(format!("{dir} depends on {dep_dir} ({section}), listed below it"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
