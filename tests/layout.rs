//! The crate's modules depend on each other in one direction only: no import circles between
//! the top-level modules of `src/` (their tests aside), so each layer can be read, and changed,
//! knowing only the layers under it. See the module map in `src/lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module each file belongs to, and the top-level modules its code names through
/// `crate::`, leaving out comments (a doc link is no import) and its `#[cfg(test)]` module
/// (tests may reach anywhere).
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        // The binary's command line and the crate root sit above every module.
        if matches!(module.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        // A module's tests in a file of their own (`#[cfg(test)] mod tests;`).
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != module && !name.is_empty() {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_circles_between_modules() {
    let graph = dependencies();
    assert!(graph.len() > 10, "modules found: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

#[test]
fn layers_point_down() {
    let graph = dependencies();
    let uses = |from: &str, to: &str| graph.get(from).is_some_and(|d| d.contains(to));
    // The wiring imports the listener and the admin endpoint, never the other way round.
    assert!(!uses("server", "proxy") && !uses("admin", "proxy"), "{graph:?}");
    // Config rules are the config's own: routing reads config, not the reverse.
    assert!(!uses("config", "routing"), "{graph:?}");
    // The wire layer stands alone.
    for dep in graph.get("pdu").into_iter().flatten() {
        assert_eq!(dep, "hex", "pdu imports {dep}");
    }
}

/// The modules in the order `src/lib.rs` lists them under "# Layout".
fn documented_order() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let layout = lib
        .split("//! # Layout")
        .nth(1)
        .and_then(|rest| rest.split("//! # ").next())
        .expect("src/lib.rs has a # Layout section");
    let mut order: Vec<String> = Vec::new();
    for (at, _) in layout.match_indices("[`") {
        let name: String = layout[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if !name.contains("::") && !order.contains(&name) {
            order.push(name);
        }
    }
    order
}

/// The crate map in `src/lib.rs` lists every module, each after everything it imports: read
/// top to bottom, it is the order in which the layers build on each other.
#[test]
fn the_crate_map_lists_each_module_after_what_it_imports() {
    let graph = dependencies();
    let order = documented_order();
    for module in graph.keys() {
        assert!(order.contains(module), "src/lib.rs does not list {module}: {order:?}");
    }
    for (k, module) in order.iter().enumerate() {
        for dep in graph.get(module).into_iter().flatten() {
            let at = order.iter().position(|m| m == dep);
            assert!(
                at.is_some_and(|at| at < k),
                "{module} imports {dep}, which src/lib.rs lists after it (or not at all): {order:?}"
            );
        }
    }
}
