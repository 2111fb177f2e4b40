//! `tessera audit source`: reads a source tree (never builds, runs or fetches anything) and hands each lockfile's
//! text to the audit engine.

use std::path::Path;

use anyhow::Context as _;
use tessera_audit::deps::{audit_lockfile, Advisories, Lockfile};
use tessera_audit::Report;

/// Directories whose lockfiles describe something other than the project: installed packages (covered by the
/// project's own lockfile), build output and version control.
const SKIPPED_DIRECTORIES: [&str; 8] =
    [".git", ".hg", ".svn", "node_modules", "target", ".venv", "venv", "__pycache__"];
/// Lockfiles larger than this are reported, not read (the largest real ones are tens of megabytes).
const MAX_LOCKFILE_BYTES: u64 = 256 * 1024 * 1024;
/// Directories nested deeper than this are reported, not entered.
const MAX_DEPTH: usize = 64;

/// The report on the tree (or file) at `root`.
pub(crate) fn audit(root: &Path, advisories: &Advisories) -> anyhow::Result<Report> {
    let metadata = std::fs::metadata(root).with_context(|| format!("reading {}", root.display()))?;
    let mut report = Report::new("source", root.display().to_string());
    let (mut files, mut lockfiles, mut skipped_deep) = (0_u64, 0_u64, 0_u64);
    let walk =
        walkdir::WalkDir::new(root).follow_links(false).max_depth(MAX_DEPTH + 1).into_iter().filter_entry(|entry| {
            entry.depth() == 0
                || !(entry.file_type().is_dir() && SKIPPED_DIRECTORIES.contains(&&*entry.file_name().to_string_lossy()))
        });
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                report.not_tested.push(format!(
                    "{}: {err}",
                    err.path().map_or_else(|| root.display().to_string(), |p| p.display().to_string())
                ));
                continue;
            }
        };
        if entry.depth() > MAX_DEPTH {
            skipped_deep += 1;
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        files += 1;
        let Some(kind) = Lockfile::from_file_name(&entry.file_name().to_string_lossy()) else { continue };
        let relative = relative_name(root, entry.path(), metadata.is_dir());
        if kind == Lockfile::GoSum && entry.path().with_file_name("go.mod").is_file() {
            continue; // go.mod says which versions are required; go.sum also lists versions not built.
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if size > MAX_LOCKFILE_BYTES {
            report
                .not_tested
                .push(format!("dependencies in {relative}: {size} bytes, over the {MAX_LOCKFILE_BYTES}-byte limit"));
            continue;
        }
        match std::fs::read(entry.path()).map(String::from_utf8) {
            Ok(Ok(text)) => {
                lockfiles += 1;
                audit_lockfile(&relative, kind, &text, advisories, &mut report);
            }
            Ok(Err(_)) => report.not_tested.push(format!("dependencies in {relative}: not UTF-8 text")),
            Err(err) => report.not_tested.push(format!("dependencies in {relative}: {err}")),
        }
    }
    if skipped_deep > 0 {
        report.not_tested.push(format!("{skipped_deep} entries nested deeper than {MAX_DEPTH} directories"));
    }
    report.not_tested.push(
        "the code itself (token signing in client code, algorithms taken from the token, hard-coded secrets, ...): \
         not implemented yet; this report covers the dependencies only"
            .to_owned(),
    );
    report.stats.insert("files_seen".into(), files.into());
    report.stats.insert("lockfiles_read".into(), lockfiles.into());
    report
        .stats
        .insert("advisory_table".into(), format!("{} advisories as of {}", advisories.len(), advisories.as_of).into());
    report.finish();
    Ok(report)
}

/// `path` relative to the audited directory, with `/` separators (SARIF and code-scanning tools expect them); the
/// file's own name when a single file was audited.
fn relative_name(root: &Path, path: &Path, root_is_directory: bool) -> String {
    let relative = if root_is_directory { path.strip_prefix(root).unwrap_or(path) } else { path };
    let relative =
        if root_is_directory { relative } else { Path::new(path.file_name().unwrap_or(relative.as_os_str())) };
    relative.components().map(|part| part.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}
