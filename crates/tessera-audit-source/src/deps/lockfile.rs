//! Reading the pinned dependencies out of lockfiles and manifests, by file name, from their text.
//!
//! The formats are read line by line where their generators write one fact per line (yarn, pnpm, Bun, pip,
//! Poetry, uv, Cargo, Go, Maven), and as JSON where they are JSON (npm, Composer, NuGet), with the line of each entry found
//! in one pass over the text. A `pom.xml` version given as a `${property}` is resolved from the file's own
//! `<properties>`; one defined elsewhere (a parent POM) cannot be, and is skipped.

use std::collections::HashMap;

use serde_json::Value;

/// The package ecosystem a dependency comes from: how its name is compared, and which advisories apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    /// npm (package-lock.json, yarn.lock, pnpm-lock.yaml).
    Npm,
    /// PyPI (requirements*.txt, poetry.lock).
    PyPi,
    /// Go modules (go.mod, go.sum).
    Go,
    /// Maven (pom.xml): `groupId:artifactId`.
    Maven,
    /// crates.io (Cargo.lock).
    Cargo,
    /// Packagist (composer.lock).
    Packagist,
    /// NuGet (packages.lock.json).
    NuGet,
}

impl Ecosystem {
    /// The name used in advisory tables.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::PyPi => "pypi",
            Self::Go => "go",
            Self::Maven => "maven",
            Self::Cargo => "cargo",
            Self::Packagist => "packagist",
            Self::NuGet => "nuget",
        }
    }

    /// The ecosystem an advisory table names.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Npm, Self::PyPi, Self::Go, Self::Maven, Self::Cargo, Self::Packagist, Self::NuGet]
            .into_iter()
            .find(|ecosystem| ecosystem.as_str().eq_ignore_ascii_case(name))
    }

    /// A package name in the form two spellings of the same package share: PyPI folds case and `-_.` (PEP 503),
    /// NuGet, Packagist and Maven fold case; npm, Go and crates.io names are compared exactly.
    #[must_use]
    pub fn normalise(self, name: &str) -> String {
        match self {
            Self::PyPi => name.to_ascii_lowercase().replace(['_', '.'], "-"),
            Self::NuGet | Self::Packagist | Self::Maven => name.to_ascii_lowercase(),
            Self::Npm | Self::Go | Self::Cargo => name.to_owned(),
        }
    }
}

/// One pinned dependency, where the lockfile says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name as the lockfile writes it.
    pub name: String,
    /// The version the lockfile pins.
    pub version: String,
    /// The 1-based line of its entry (0 when it could not be placed).
    pub line: usize,
}

impl Dependency {
    fn new(ecosystem: Ecosystem, name: impl Into<String>, version: impl Into<String>, line: usize) -> Self {
        Self { ecosystem, name: name.into(), version: version.into(), line }
    }
}

/// The lockfiles and manifests read, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockfile {
    /// `package-lock.json` or `npm-shrinkwrap.json` (lockfile versions 1 to 3).
    PackageLock,
    /// `yarn.lock` (classic and Berry).
    YarnLock,
    /// `pnpm-lock.yaml` (lockfile versions 5 to 9).
    PnpmLock,
    /// `bun.lock` (Bun's text lockfile).
    BunLock,
    /// `requirements*.txt`: pinned (`==`) requirements only.
    Requirements,
    /// `poetry.lock`.
    PoetryLock,
    /// `uv.lock`.
    UvLock,
    /// `go.mod`: the required versions.
    GoMod,
    /// `go.sum`, read only where no `go.mod` is beside it: the newest version of each module built.
    GoSum,
    /// `Cargo.lock`.
    CargoLock,
    /// `pom.xml`: declared dependencies with a version.
    Pom,
    /// `composer.lock`.
    ComposerLock,
    /// NuGet's `packages.lock.json`.
    NuGetLock,
}

impl Lockfile {
    /// The kind of lockfile a file name says, if any.
    #[must_use]
    pub fn from_file_name(name: &str) -> Option<Self> {
        Some(match name {
            "package-lock.json" | "npm-shrinkwrap.json" => Self::PackageLock,
            "yarn.lock" => Self::YarnLock,
            "pnpm-lock.yaml" => Self::PnpmLock,
            "bun.lock" => Self::BunLock,
            "poetry.lock" => Self::PoetryLock,
            "uv.lock" => Self::UvLock,
            "go.mod" => Self::GoMod,
            "go.sum" => Self::GoSum,
            "Cargo.lock" => Self::CargoLock,
            "pom.xml" => Self::Pom,
            "composer.lock" => Self::ComposerLock,
            "packages.lock.json" => Self::NuGetLock,
            _ if name.starts_with("requirements") && name.ends_with(".txt") => Self::Requirements,
            _ => return None,
        })
    }

    /// The dependencies `text` pins.
    ///
    /// # Errors
    /// A JSON lockfile that is not JSON of the expected shape, saying why.
    pub fn read(self, text: &str) -> Result<Vec<Dependency>, String> {
        match self {
            Self::PackageLock => package_lock(text),
            Self::YarnLock => Ok(yarn_lock(text)),
            Self::PnpmLock => Ok(pnpm_lock(text)),
            Self::BunLock => Ok(bun_lock(text)),
            Self::Requirements => Ok(requirements(text)),
            Self::PoetryLock | Self::UvLock => Ok(toml_packages(text, Ecosystem::PyPi)),
            Self::CargoLock => Ok(toml_packages(text, Ecosystem::Cargo)),
            Self::GoMod => Ok(go_mod(text)),
            Self::GoSum => Ok(go_sum(text)),
            Self::Pom => Ok(pom(text)),
            Self::ComposerLock => composer_lock(text),
            Self::NuGetLock => nuget_lock(text),
        }
    }
}

/// Each trimmed line (without a trailing comma) → its first 1-based line number: where a JSON entry is.
fn line_index(text: &str) -> HashMap<&str, usize> {
    let mut index = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        index.entry(line.trim().trim_end_matches(',')).or_insert(number + 1);
    }
    index
}

/// The line of an entry `line_index` found, or 0 (unplaced).
fn line_of(lines: &HashMap<&str, usize>, entry: &str) -> usize {
    lines.get(entry).copied().unwrap_or(0)
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))
}

fn package_lock(text: &str) -> Result<Vec<Dependency>, String> {
    let document = parse_json(text)?;
    let lines = line_index(text);
    let dependency = |name: &str, entry: &Value, key: &str| {
        let version = entry.get("version")?.as_str()?;
        let linked = entry.get("link").and_then(Value::as_bool) == Some(true);
        let line = line_of(&lines, &format!("{}: {{", Value::from(key)));
        (!linked).then(|| Dependency::new(Ecosystem::Npm, name, version, line))
    };
    let mut found = Vec::new();
    if let Some(packages) = document.get("packages").and_then(Value::as_object) {
        // Lockfile versions 2 and 3: "node_modules/a/node_modules/@scope/b" → @scope/b. Keys without
        // node_modules are the project and its workspaces.
        for (key, entry) in packages {
            if let Some((_, name)) = key.rsplit_once("node_modules/") {
                found.extend(dependency(name, entry, key));
            }
        }
    } else if let Some(dependencies) = document.get("dependencies").and_then(Value::as_object) {
        // Version 1: nested "dependencies" objects.
        let mut pending: Vec<_> = dependencies.iter().collect();
        while let Some((name, entry)) = pending.pop() {
            found.extend(dependency(name, entry, name));
            if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                pending.extend(nested.iter());
            }
        }
    } else {
        return Err("neither \"packages\" nor \"dependencies\" is an object".to_owned());
    }
    Ok(found)
}

/// `"@scope/name@npm:^1.0.0", name@^1.2.0:` → `@scope/name`.
fn npm_name_of_spec(spec: &str) -> Option<&str> {
    let spec = spec.trim().trim_matches('"');
    let at = spec.get(1..)?.find('@')? + 1;
    spec.get(..at).filter(|name| !name.is_empty())
}

fn yarn_lock(text: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            // An entry's header: one or more specs of one package, ending with ':'.
            current = line
                .trim_end()
                .strip_suffix(':')
                .and_then(|specs| specs.split(',').next())
                .and_then(npm_name_of_spec)
                .filter(|name| *name != "__metadata")
                .map(|name| (name.to_owned(), number + 1));
        } else if let Some((name, line_number)) = current.as_ref().filter(|_| !line.starts_with("   ")) {
            // Classic: `  version "1.2.3"`; Berry: `  version: 1.2.3`.
            if let Some(version) = line.trim().strip_prefix("version").map(|rest| rest.trim_start_matches(':').trim()) {
                found.push(Dependency::new(Ecosystem::Npm, name, version.trim_matches('"'), *line_number));
                current = None;
            }
        }
    }
    found
}

fn pnpm_lock(text: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    let mut in_packages = false;
    for (number, line) in text.lines().enumerate() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        // Entries are indented by exactly two spaces: `  /name/1.2.3:` (v5), `  /name@1.2.3:` (v6),
        // `  name@1.2.3:` or `  '@scope/name@1.2.3':` (v9); peer suffixes `(...)` or `_...` follow.
        let Some(key) = line.strip_prefix("  ").filter(|key| in_packages && !key.starts_with(' ')) else { continue };
        let Some(key) = key.trim_end().strip_suffix(':') else { continue };
        let key = key.trim_matches(['\'', '"']);
        let key = key.strip_prefix('/').unwrap_or(key);
        let key = key.split('(').next().unwrap_or(key);
        let (name, version) = match npm_name_of_spec(key) {
            Some(name) => (name, key.get(name.len() + 1..).unwrap_or_default()),
            None => match key.rsplit_once('/') {
                Some((name, version)) => (name, version),
                None => continue,
            },
        };
        let version = version.split('_').next().unwrap_or(version);
        if !name.is_empty() && !version.is_empty() {
            found.push(Dependency::new(Ecosystem::Npm, name, version, number + 1));
        }
    }
    found
}

/// `bun.lock`'s `"packages"` entries, one per line: `"key": ["name@version", ...]`. The file is JSON with trailing
/// commas, which JSON parsers refuse, and Bun writes each package on one line.
fn bun_lock(text: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    let mut in_packages = false;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("\"packages\"") {
            in_packages = true;
            continue;
        }
        let Some((_, rest)) = trimmed.split_once("\": [\"").filter(|_| in_packages) else { continue };
        let Some(spec) = rest.split('"').next() else { continue };
        // `name@version`, where a scoped name starts with `@`; workspace and git entries carry no plain version.
        let Some(name) = npm_name_of_spec(spec) else { continue };
        let version = spec.get(name.len() + 1..).unwrap_or_default();
        if !version.is_empty() && !version.contains(':') {
            found.push(Dependency::new(Ecosystem::Npm, name, version, number + 1));
        }
    }
    found
}

fn requirements(text: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        // Comments, options (`-r`, `--hash`), environment markers and line continuations go.
        let line = line.split(" #").next().unwrap_or(line).split(';').next().unwrap_or(line);
        let line = line.trim().trim_end_matches('\\').trim();
        if line.starts_with(['#', '-']) {
            continue;
        }
        let Some((name, version)) = line.split_once("===").or_else(|| line.split_once("==")) else { continue };
        let name = name.split('[').next().unwrap_or(name).trim();
        let version = version.split_whitespace().next().unwrap_or_default();
        if !name.is_empty() && !version.is_empty() && !version.contains('*') {
            found.push(Dependency::new(Ecosystem::PyPi, name, version, number + 1));
        }
    }
    found
}

/// `[[package]]` tables with `name = "..."` and `version = "..."` (Cargo.lock, poetry.lock).
fn toml_packages(text: &str, ecosystem: Ecosystem) -> Vec<Dependency> {
    /// The `[[package]]` table being read: its name (and line) and version once seen.
    #[derive(Default)]
    struct Table {
        name: Option<(String, usize)>,
        version: Option<String>,
    }
    let mut found = Vec::new();
    let mut current: Option<Table> = None;
    let mut finish = |current: &mut Option<Table>| {
        if let Some(Table { name: Some((name, line)), version: Some(version) }) = current.take() {
            found.push(Dependency::new(ecosystem, name, version, line));
        }
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            finish(&mut current);
            if line == "[[package]]" {
                current = Some(Table::default());
            }
            continue;
        }
        let Some(table) = current.as_mut() else { continue };
        let value = |key: &str| {
            let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
            Some(rest.trim_matches('"').to_owned())
        };
        if let Some(value) = value("name") {
            table.name = Some((value, number + 1));
        } else if let Some(value) = value("version") {
            table.version = Some(value);
        }
    }
    finish(&mut current);
    found
}

fn go_mod(text: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    let mut in_require = false;
    for (number, line) in text.lines().enumerate() {
        let line = line.split("//").next().unwrap_or(line).trim();
        let requirement = if in_require {
            if line == ")" {
                in_require = false;
                continue;
            }
            line
        } else if line == "require (" || line == "require(" {
            in_require = true;
            continue;
        } else if let Some(rest) = line.strip_prefix("require ") {
            rest
        } else {
            continue;
        };
        let mut words = requirement.split_whitespace();
        if let (Some(module), Some(version)) = (words.next(), words.next()) {
            found.push(Dependency::new(Ecosystem::Go, module, version, number + 1));
        }
    }
    found
}

fn go_sum(text: &str) -> Vec<Dependency> {
    use crate::deps::version::Version;
    // go.sum lists every version the module graph mentions; those with a hash of the whole module (not only
    // `/go.mod`) were downloaded, and minimal version selection builds the newest of them.
    let mut newest: HashMap<&str, (&str, usize)> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let (Some(module), Some(version)) = (words.next(), words.next()) else { continue };
        if version.ends_with("/go.mod") {
            continue;
        }
        let newer = newest.get(module).is_none_or(|(seen, _)| Version::parse(version) > Version::parse(seen));
        if newer {
            newest.insert(module, (version, number + 1));
        }
    }
    let mut found: Vec<_> = newest
        .into_iter()
        .map(|(module, (version, line))| Dependency::new(Ecosystem::Go, module, version, line))
        .collect();
    found.sort_by_key(|dependency| dependency.line);
    found
}

/// The text of the first `<tag>...</tag>` in `block`.
fn xml_text<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let start = block.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = block.get(start..)?.find(&format!("</{tag}>"))? + start;
    block.get(start..end).map(str::trim)
}

fn pom(text: &str) -> Vec<Dependency> {
    // Comments could hide or fake dependencies: drop them first, keeping the line count.
    let mut uncommented = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        uncommented.push_str(&rest[..start]);
        let end = rest[start..].find("-->").map_or(rest.len(), |end| start + end + 3);
        uncommented.extend(rest[start..end].chars().filter(|c| *c == '\n'));
        rest = &rest[end..];
    }
    uncommented.push_str(rest);
    let text = uncommented.as_str();
    let properties = xml_text(text, "properties").unwrap_or_default();
    let resolve = |version: &str| -> Option<String> {
        match version.strip_prefix("${").and_then(|name| name.strip_suffix('}')) {
            Some(property) => xml_text(properties, property).map(str::to_owned),
            None => Some(version.to_owned()),
        }
    };
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(start) = text[offset..].find("<dependency>").map(|start| start + offset) {
        let Some(end) = text[start..].find("</dependency>").map(|end| start + end) else { break };
        let block = &text[start..end];
        offset = end;
        let (Some(group), Some(artifact), Some(version)) =
            (xml_text(block, "groupId"), xml_text(block, "artifactId"), xml_text(block, "version").and_then(resolve))
        else {
            continue;
        };
        let line = text[..start].matches('\n').count() + 1;
        found.push(Dependency::new(Ecosystem::Maven, format!("{group}:{artifact}"), version, line));
    }
    found
}

fn composer_lock(text: &str) -> Result<Vec<Dependency>, String> {
    let document = parse_json(text)?;
    let lines = line_index(text);
    let mut found = Vec::new();
    for section in ["packages", "packages-dev"] {
        for entry in document.get(section).and_then(Value::as_array).into_iter().flatten() {
            let (Some(name), Some(version)) =
                (entry.get("name").and_then(Value::as_str), entry.get("version").and_then(Value::as_str))
            else {
                continue;
            };
            let line = line_of(&lines, &format!("\"name\": {}", Value::from(name)));
            found.push(Dependency::new(Ecosystem::Packagist, name, version, line));
        }
    }
    Ok(found)
}

fn nuget_lock(text: &str) -> Result<Vec<Dependency>, String> {
    let document = parse_json(text)?;
    let lines = line_index(text);
    let frameworks = document.get("dependencies").and_then(Value::as_object).ok_or("no \"dependencies\" object")?;
    let mut found: Vec<Dependency> = Vec::new();
    for packages in frameworks.values().filter_map(Value::as_object) {
        for (name, entry) in packages {
            let Some(version) = entry.get("resolved").and_then(Value::as_str) else { continue };
            if found.iter().any(|seen| seen.name == *name && seen.version == version) {
                continue; // The same package under a second target framework.
            }
            let line = line_of(&lines, &format!("{}: {{", Value::from(name.as_str())));
            found.push(Dependency::new(Ecosystem::NuGet, name.as_str(), version, line));
        }
    }
    Ok(found)
}
