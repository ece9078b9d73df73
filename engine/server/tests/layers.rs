//! The engine crate's import rules, checked over its sources: a module imports only from its
//! own layer or the layers below it, no two files of a layer import each other round a
//! circle, and no file outside `shard/` names the shard itself (handlers hold a
//! `ShardHandle`). Paths are read from `use crate::…` items (groups included), inline
//! `crate::…` paths and `super::…` paths; test modules (from `#[cfg(test)]` on) are not
//! read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first: each may import from itself and from those after it.
const LAYERS: [&str; 7] = [
    "node", "serve", "shard", "upstream", "machine", "config", "net",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file as its module path (`shard/hls.rs` → `["shard", "hls"]`).
fn modules() -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src()).unwrap().with_extension("");
                let mut module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                if module == ["lib"] || module == ["main"] {
                    module.clear();
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(module, text);
            }
        }
    }
    out
}

/// The text without comments and without the test modules at the end.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names from `crate::` or `super::`, as segments from the crate root.
fn paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| ident(c) || c == ':') {
                continue;
            }
            for p in expand(rest) {
                let mut full = base.clone();
                let mut p = p;
                // `super::super::x`
                while p.first().is_some_and(|s| s == "super") {
                    p.remove(0);
                    full = parent(&full);
                }
                full.extend(p);
                out.push(full);
            }
        }
    }
    out
}

fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// The paths at the start of `rest`: `a::b::c`, or a `{…}` group of them.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut segs = Vec::new();
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let inner = &group[..end];
            let mut items = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[start..]);
            return items
                .into_iter()
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .flat_map(expand)
                .map(|tail| segs.iter().cloned().chain(tail).collect())
                .collect();
        }
        let len = s.find(|c: char| !ident(c)).unwrap_or(s.len());
        if len == 0 {
            break;
        }
        segs.push(s[..len].to_string());
        s = &s[len..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    vec![segs]
}

/// The longest module prefix of `path`.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains_key(m))
}

fn layer(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l == top)
}

/// Module → the modules it imports (a child's imports of its ancestors left out: a parent
/// declares its children, and they may use what it declares).
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut g = BTreeMap::new();
    for (module, text) in &modules {
        let deps: BTreeSet<Vec<String>> = paths(module, &code(text))
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|d| d != module && !module.starts_with(d))
            .collect();
        g.insert(module.clone(), deps);
    }
    g
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn modules_import_only_from_their_layer_and_the_layers_below() {
    let g = graph();
    assert!(g.len() > 40, "the sources were read: {} modules", g.len());
    let mut wrong = Vec::new();
    for (module, deps) in &g {
        let Some(mine) = layer(module) else { continue };
        for d in deps {
            match layer(d) {
                Some(theirs) if theirs < mine => wrong.push(format!(
                    "{} ({}) imports {} ({})",
                    name(module),
                    LAYERS[mine],
                    name(d),
                    LAYERS[theirs]
                )),
                Some(_) => {}
                None => wrong.push(format!("{} imports the crate root", name(module))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_round_a_circle() {
    let g = graph();
    // Tarjan's strongly connected components.
    struct State<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        circles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let Some((w, _)) = s.g.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(name(w));
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.circles.push(component);
            }
        }
    }
    let mut s = State {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        circles: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    assert!(s.circles.is_empty(), "import circles: {:?}", s.circles);
}

#[test]
fn only_the_shard_module_names_the_shard() {
    let mut named = Vec::new();
    for (module, text) in modules() {
        if module.first().is_some_and(|m| m == "shard") {
            continue;
        }
        let code = code(&text);
        let names = |p: &str| {
            code.match_indices(p).any(|(i, _)| {
                let next = code[i + p.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        if ["Rc<Shard>", "&Shard", "shard::Shard"]
            .iter()
            .any(|p| names(p))
        {
            named.push(name(&module));
        }
    }
    assert!(named.is_empty(), "files naming Shard: {named:?}");
}

#[test]
fn the_reader_sees_groups_and_relative_paths() {
    let m = vec!["shard".to_string(), "hls".to_string()];
    let found = paths(
        &m,
        "use crate::{net::{mesh::Mesh, tls}, config};\nlet x = super::mesh_port::MeshPort;",
    );
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "net::mesh::Mesh",
            "net::tls",
            "config",
            "shard::mesh_port::MeshPort"
        ]
    );
}
