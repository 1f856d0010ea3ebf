//! The dependency rules of `ARCHITECTURE.md`, enforced.
//!
//! `ARCHITECTURE.md` has a section `## Dependency rules` whose first fenced block lists, one line
//! per workspace crate, the workspace crates it may depend on: `crate -> dep1, dep2` (nothing
//! after the arrow: no workspace dependency at all). This test reads every `crates/*/Cargo.toml`
//! and fails, naming the edge, when a crate's `[dependencies]` (including target-specific ones)
//! reach a workspace crate its line does not allow, when a crate has no line, or when a line
//! names a crate that does not exist. Dev-dependencies are not checked: tests may use `testkit`
//! and whatever they need to drive a crate from outside.
//!
//! Why a test and not a convention: an adapter that quietly starts depending on another adapter
//! (or the HTTP layer on the store) is how layering erodes; rust-analyzer keeps the same kind of
//! structural checks as ordinary tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const HEADING: &str = "## Dependency rules";

/// Allowed workspace dependencies per workspace crate.
type Rules = BTreeMap<String, BTreeSet<String>>;

/// One workspace crate as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Crate {
    /// Folder under `crates/`.
    dir: String,
    /// `[package] name`.
    name: String,
    /// Package names of everything under `[dependencies]` (workspace or not).
    deps: BTreeSet<String>,
}

/// Reads the rules block out of the markdown of `ARCHITECTURE.md`.
fn parse_rules(markdown: &str) -> Result<Rules, String> {
    let mut lines = markdown.lines().enumerate();
    lines
        .by_ref()
        .find(|(_, line)| line.trim_end() == HEADING)
        .ok_or_else(|| format!("no `{HEADING}` section"))?;
    let mut block = None;
    for (_, line) in lines.by_ref() {
        if line.starts_with("## ") {
            break;
        }
        if line.trim_start().starts_with("```") {
            block = Some(Vec::new());
            break;
        }
    }
    let mut block = block.ok_or_else(|| format!("the `{HEADING}` section has no fenced block"))?;
    let mut closed = false;
    for (index, line) in lines {
        if line.trim_start().starts_with("```") {
            closed = true;
            break;
        }
        block.push((index + 1, line));
    }
    if !closed {
        return Err(format!("the fenced block of `{HEADING}` is not closed"));
    }

    let mut rules = Rules::new();
    for (number, line) in block {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, deps) = line.split_once("->").ok_or_else(|| {
            format!("ARCHITECTURE.md line {number}: expected `crate -> dep1, dep2`, got `{line}`")
        })?;
        let name = name.trim();
        if !is_crate_name(name) {
            return Err(format!(
                "ARCHITECTURE.md line {number}: `{name}` is not a crate name"
            ));
        }
        let mut allowed = BTreeSet::new();
        for dep in deps.split(',').map(str::trim).filter(|dep| !dep.is_empty()) {
            if !is_crate_name(dep) {
                return Err(format!(
                    "ARCHITECTURE.md line {number}: `{dep}` is not a crate name"
                ));
            }
            if dep == name {
                return Err(format!(
                    "ARCHITECTURE.md line {number}: `{name}` depends on itself"
                ));
            }
            if !allowed.insert(dep.to_string()) {
                return Err(format!(
                    "ARCHITECTURE.md line {number}: `{dep}` is listed twice"
                ));
            }
        }
        if rules.insert(name.to_string(), allowed).is_some() {
            return Err(format!(
                "ARCHITECTURE.md line {number}: `{name}` has a second line"
            ));
        }
    }
    if rules.is_empty() {
        return Err(format!("the fenced block of `{HEADING}` lists no crate"));
    }
    Ok(rules)
}

fn is_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads one crate's manifest. `workspace_deps` is the root `[workspace.dependencies]`, needed
/// to resolve `foo.workspace = true` entries that rename a package.
fn parse_manifest(dir: &str, text: &str, workspace_deps: &toml::Table) -> Result<Crate, String> {
    let manifest: toml::Table =
        toml::from_str(text).map_err(|err| format!("crates/{dir}/Cargo.toml: {err}"))?;
    let name = manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("crates/{dir}/Cargo.toml has no [package] name"))?
        .to_string();

    let mut tables = vec![manifest.get("dependencies")];
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        tables.extend(targets.values().map(|target| target.get("dependencies")));
    }
    let mut deps = BTreeSet::new();
    for table in tables.into_iter().flatten() {
        let table = table
            .as_table()
            .ok_or_else(|| format!("crates/{dir}/Cargo.toml: [dependencies] is not a table"))?;
        for (key, spec) in table {
            deps.insert(package_name(key, spec, workspace_deps));
        }
    }
    Ok(Crate {
        dir: dir.to_string(),
        name,
        deps,
    })
}

/// The package a dependency entry `key = spec` refers to (`package = "…"` renames it, here or in
/// the workspace entry it inherits).
fn package_name(key: &str, spec: &toml::Value, workspace_deps: &toml::Table) -> String {
    let renamed = |spec: &toml::Value| {
        spec.get("package")
            .and_then(toml::Value::as_str)
            .map(str::to_string)
    };
    if let Some(name) = renamed(spec) {
        return name;
    }
    let inherits = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
    if inherits && let Some(name) = workspace_deps.get(key).and_then(renamed) {
        return name;
    }
    key.to_string()
}

/// Every rule broken by `crates`, as messages that name the crate or the edge and what to do.
fn violations(rules: &Rules, crates: &[Crate]) -> Vec<String> {
    let workspace: BTreeSet<&str> = crates.iter().map(|krate| krate.name.as_str()).collect();
    let mut problems = Vec::new();
    for krate in crates {
        let name = &krate.name;
        if krate.dir != *name {
            problems.push(format!(
                "crates/{} holds the package `{name}`: the folder name must be the crate name",
                krate.dir
            ));
        }
        let Some(allowed) = rules.get(name) else {
            problems.push(format!(
                "crate `{name}` (crates/{}) is missing from `{HEADING}` in ARCHITECTURE.md: add a \
                 line `{name} -> <the workspace crates it may use>`",
                krate.dir
            ));
            continue;
        };
        for dep in krate
            .deps
            .iter()
            .filter(|dep| workspace.contains(dep.as_str()))
        {
            if !allowed.contains(dep) {
                let allowed = if allowed.is_empty() {
                    format!("`{name}` no workspace dependency")
                } else {
                    let list = allowed.iter().map(String::as_str).collect::<Vec<_>>();
                    format!("only `{name} -> {}`", list.join(", "))
                };
                problems.push(format!(
                    "forbidden dependency edge `{name} -> {dep}` (crates/{}/Cargo.toml): \
                     ARCHITECTURE.md allows {allowed}. Remove the dependency, or change the \
                     rules (that is an architecture change: explain it there)",
                    krate.dir
                ));
            }
        }
    }
    for (name, allowed) in rules {
        if !workspace.contains(name.as_str()) {
            problems.push(format!(
                "`{HEADING}` names crate `{name}`, which does not exist"
            ));
        }
        for dep in allowed
            .iter()
            .filter(|dep| !workspace.contains(dep.as_str()))
        {
            problems.push(format!(
                "`{HEADING}` allows `{name} -> {dep}`, but there is no workspace crate `{dep}`"
            ));
        }
    }
    problems
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|err| format!("reading {}: {err}", path.display()))
}

/// Every crate under `<root>/crates`, sorted by folder.
fn read_workspace(root: &Path) -> Result<Vec<Crate>, String> {
    let root_manifest: toml::Table = toml::from_str(&read(&root.join("Cargo.toml"))?)
        .map_err(|err| format!("Cargo.toml: {err}"))?;
    let empty = toml::Table::new();
    let workspace_deps = root_manifest
        .get("workspace")
        .and_then(|workspace| workspace.get("dependencies"))
        .and_then(toml::Value::as_table)
        .unwrap_or(&empty);

    let crates_dir = root.join("crates");
    let entries = std::fs::read_dir(&crates_dir)
        .map_err(|err| format!("listing {}: {err}", crates_dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| format!("listing {}: {err}", crates_dir.display()))?;
        if entry.path().join("Cargo.toml").is_file() {
            dirs.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    dirs.sort();
    dirs.iter()
        .map(|dir| {
            let text = read(&crates_dir.join(dir).join("Cargo.toml"))?;
            parse_manifest(dir, &text, workspace_deps)
        })
        .collect()
}

#[test]
fn workspace_crates_follow_the_dependency_rules() {
    let root = workspace_root();
    let markdown = read(&root.join("ARCHITECTURE.md")).unwrap();
    let rules = parse_rules(&markdown).unwrap_or_else(|err| panic!("ARCHITECTURE.md: {err}"));
    let crates = read_workspace(&root).unwrap();
    assert!(
        crates.iter().any(|krate| krate.name == "domain"),
        "found no crates: {crates:?}"
    );
    let problems = violations(&rules, &crates);
    assert!(
        problems.is_empty(),
        "dependency rules broken:\n- {}",
        problems.join("\n- ")
    );
}

// --- the checker itself -------------------------------------------------------------------

const SAMPLE: &str = "# Architecture

Some prose.

## Dependency rules

Allowed edges:

```text
# crate -> workspace crates it may use
domain ->
store -> domain
engine -> domain, store
```

## Cross-cutting concerns

```
not -> rules
```
";

fn krate(name: &str, deps: &[&str]) -> Crate {
    Crate {
        dir: name.to_string(),
        name: name.to_string(),
        deps: deps.iter().map(|dep| dep.to_string()).collect(),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn parser_reads_each_line_of_the_first_block_of_the_section() {
    let rules = parse_rules(SAMPLE).unwrap();
    let want = Rules::from([
        ("domain".to_string(), set(&[])),
        ("store".to_string(), set(&["domain"])),
        ("engine".to_string(), set(&["domain", "store"])),
    ]);
    assert_eq!(rules, want);
}

#[test]
fn a_bad_edge_fails_naming_it() {
    let rules = parse_rules(SAMPLE).unwrap();
    let crates = [
        krate("domain", &["serde"]),
        krate("store", &["domain", "engine", "rusqlite"]),
        krate("engine", &["domain", "store"]),
    ];
    assert_eq!(
        violations(&rules, &crates),
        vec![
            "forbidden dependency edge `store -> engine` (crates/store/Cargo.toml): \
             ARCHITECTURE.md allows only `store -> domain`. Remove the dependency, or change the \
             rules (that is an architecture change: explain it there)"
                .to_string()
        ]
    );

    let crates = [
        krate("domain", &["store"]),
        krate("store", &["domain"]),
        krate("engine", &[]),
    ];
    assert_eq!(
        violations(&rules, &crates),
        vec![
            "forbidden dependency edge `domain -> store` (crates/domain/Cargo.toml): \
             ARCHITECTURE.md allows `domain` no workspace dependency. Remove the dependency, or \
             change the rules (that is an architecture change: explain it there)"
                .to_string()
        ]
    );
}

#[test]
fn a_crate_missing_from_the_rules_fails() {
    let rules = parse_rules(SAMPLE).unwrap();
    let crates = [
        krate("domain", &[]),
        krate("store", &["domain"]),
        krate("engine", &["domain", "store"]),
        krate("forge", &["domain"]),
    ];
    assert_eq!(
        violations(&rules, &crates),
        vec![
            "crate `forge` (crates/forge) is missing from `## Dependency rules` in \
             ARCHITECTURE.md: add a line `forge -> <the workspace crates it may use>`"
                .to_string()
        ]
    );
}

#[test]
fn rules_naming_unknown_crates_and_misnamed_folders_fail() {
    let rules = parse_rules(SAMPLE).unwrap();
    let crates = [
        krate("domain", &[]),
        Crate {
            dir: "persistence".into(),
            ..krate("store", &["domain"])
        },
    ];
    assert_eq!(
        violations(&rules, &crates),
        vec![
            "crates/persistence holds the package `store`: the folder name must be the crate name"
                .to_string(),
            "`## Dependency rules` names crate `engine`, which does not exist".to_string(),
        ]
    );
}

#[test]
fn malformed_rules_are_refused() {
    let cases = [
        ("# Nothing here\n", "no `## Dependency rules` section"),
        (
            "## Dependency rules\n\nprose\n## Next\n```\na ->\n```\n",
            "has no fenced block",
        ),
        ("## Dependency rules\n```\na -> b\n", "is not closed"),
        ("## Dependency rules\n```\n```\n", "lists no crate"),
        (
            "## Dependency rules\n```\nstore: domain\n```\n",
            "line 3: expected `crate -> dep1",
        ),
        (
            "## Dependency rules\n```\na -> b\na -> c\n```\n",
            "line 4: `a` has a second line",
        ),
        (
            "## Dependency rules\n```\na -> b, b\n```\n",
            "`b` is listed twice",
        ),
        (
            "## Dependency rules\n```\na -> a\n```\n",
            "`a` depends on itself",
        ),
        (
            "## Dependency rules\n```\na -> b c\n```\n",
            "`b c` is not a crate name",
        ),
    ];
    for (markdown, want) in cases {
        let err = parse_rules(markdown).unwrap_err();
        assert!(
            err.contains(want),
            "for {markdown:?}: got `{err}`, want `{want}`"
        );
    }
}

#[test]
fn manifests_resolve_renames_and_skip_dev_dependencies() {
    let workspace_deps: toml::Table = toml::from_str(
        r#"
        domain = { path = "crates/domain" }
        core = { path = "crates/domain", package = "domain" }
        "#,
    )
    .unwrap();
    let manifest = r#"
        [package]
        name = "server"

        [dependencies]
        core.workspace = true
        persistence = { path = "../store", package = "store" }
        serde = "1"

        [target.'cfg(unix)'.dependencies]
        git = { path = "../git" }

        [dev-dependencies]
        testkit.workspace = true
        engine = { path = "../engine" }
    "#;
    assert_eq!(
        parse_manifest("server", manifest, &workspace_deps).unwrap(),
        krate("server", &["domain", "store", "serde", "git"])
    );
}
