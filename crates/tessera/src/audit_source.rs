//! `tessera audit source`: reads a source tree (never builds, runs or fetches anything) and hands each lockfile
//! and each source file the engine reads to `tessera-audit-source`, on every core.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tessera_audit::Report;
use tessera_audit_source::code::{audit_code, is_test_file, Language, Options, TestCode};
use tessera_audit_source::deps::{audit_lockfile, Advisories, Lockfile};

/// Directories whose files describe something other than the project: installed packages (covered by the
/// project's own lockfile), build output and version control.
const SKIPPED_DIRECTORIES: [&str; 8] =
    [".git", ".hg", ".svn", "node_modules", "target", ".venv", "venv", "__pycache__"];
/// Lockfiles larger than this are reported, not read (the largest real ones are tens of megabytes).
const MAX_LOCKFILE_BYTES: u64 = 64 * 1024 * 1024;
/// Source files larger than this are reported, not parsed: a syntax tree takes about 75 times its file's size
/// in memory (a 26 MB one-line bundle: 1.9 GB and 20 s), and a real bundle is a few megabytes.
const MAX_CODE_BYTES: u64 = 16 * 1024 * 1024;
/// Directories nested deeper than this are reported, not entered.
const MAX_DEPTH: usize = 64;
/// Languages whose rules are not built yet, by extension: their files are counted and named as not analysed.
const NOT_YET_ANALYSED: [(&str, &str); 4] = [("rb", "Ruby"), ("swift", "Swift"), ("scala", "Scala"), ("ex", "Elixir")];

/// A file the audit reads.
enum Work {
    Lockfile(Lockfile),
    Code(Language),
}

/// The report on the tree (or file) at `root`.
pub(crate) fn audit(root: &Path, advisories: &Advisories, options: &Options) -> anyhow::Result<Report> {
    let metadata = std::fs::metadata(root).with_context(|| format!("reading {}", root.display()))?;
    let mut report = Report::new("source", root.display().to_string());
    let (work, stats) = walk(root, metadata.is_dir(), options.tests, &mut report);
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let chunk = work.len().div_ceil(threads).max(1);
    let parts: Vec<(Report, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = work
            .chunks(chunk)
            .map(|files| {
                scope.spawn(move || {
                    let mut part = Report::new("source", String::new());
                    let mut syntax_errors = 0_u64;
                    for (relative, path, kind) in files {
                        syntax_errors += u64::from(read_one(relative, path, kind, advisories, options, &mut part));
                    }
                    (part, syntax_errors)
                })
            })
            .collect();
        workers.into_iter().filter_map(|worker| worker.join().ok()).collect()
    });
    let mut syntax_errors = 0;
    for (part, errors) in parts {
        report.findings.extend(part.findings);
        report.not_tested.extend(part.not_tested);
        syntax_errors += errors;
    }
    for (language, count) in &stats.not_analysed {
        report.not_tested.push(format!("{count} {language} files: the {language} rules are not built yet"));
    }
    if stats.test_files > 0 {
        report.not_tested.push(format!(
            "{} test files (test directories, *.test.*, *_test.*, ...): left out; --include-tests analyses them",
            stats.test_files
        ));
    }
    if stats.too_deep > 0 {
        report.not_tested.push(format!("{} entries nested deeper than {MAX_DEPTH} directories", stats.too_deep));
    }
    let lockfiles = work.iter().filter(|(_, _, kind)| matches!(kind, Work::Lockfile(_))).count();
    report.stats.insert("files_seen".into(), stats.files.into());
    report.stats.insert("lockfiles_read".into(), lockfiles.into());
    report.stats.insert("source_files_analysed".into(), (work.len() - lockfiles).into());
    report.stats.insert("files_with_syntax_errors".into(), syntax_errors.into());
    report.stats.insert("test_files_left_out".into(), stats.test_files.into());
    report
        .stats
        .insert("advisory_table".into(), format!("{} advisories as of {}", advisories.len(), advisories.as_of).into());
    // Findings in file and line order within a severity, whatever order the threads finished in.
    report.findings.sort_by(|a, b| {
        let place = |f: &tessera_audit::Finding| f.location.as_ref().map(|at| (at.path.clone(), at.line));
        place(a).cmp(&place(b))
    });
    report.not_tested.sort();
    report.finish();
    Ok(report)
}

/// What the walk counted besides the files to read.
#[derive(Default)]
struct WalkStats {
    files: u64,
    too_deep: u64,
    /// Test code files left out.
    test_files: u64,
    /// Files of languages whose rules are not built yet, by language.
    not_analysed: Vec<(&'static str, u64)>,
}

/// The files to read under `root`, in walk order. Links are not followed: a loop cannot trap the walk, and
/// nothing outside `root` is read.
fn walk(
    root: &Path,
    root_is_directory: bool,
    tests: TestCode,
    report: &mut Report,
) -> (Vec<(String, PathBuf, Work)>, WalkStats) {
    let mut work = Vec::new();
    let mut stats = WalkStats::default();
    let entries =
        walkdir::WalkDir::new(root).follow_links(false).max_depth(MAX_DEPTH + 1).into_iter().filter_entry(|entry| {
            entry.depth() == 0
                || !(entry.file_type().is_dir() && SKIPPED_DIRECTORIES.contains(&&*entry.file_name().to_string_lossy()))
        });
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().map_or_else(|| root.display().to_string(), |p| p.display().to_string());
                report.not_tested.push(format!("{path}: {err}"));
                continue;
            }
        };
        if entry.depth() > MAX_DEPTH {
            stats.too_deep += 1;
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        stats.files += 1;
        let name = entry.file_name().to_string_lossy();
        let kind = match (Lockfile::from_file_name(&name), Language::from_file_name(&name)) {
            // go.mod says which versions are required; go.sum also lists versions not built.
            (Some(Lockfile::GoSum), _) if entry.path().with_file_name("go.mod").is_file() => continue,
            (Some(lockfile), _) => Work::Lockfile(lockfile),
            (None, Some(language)) => Work::Code(language),
            (None, None) => {
                let extension = name.rsplit_once('.').map(|(_, extension)| extension);
                if let Some((_, language)) = NOT_YET_ANALYSED.iter().find(|(known, _)| Some(*known) == extension) {
                    match stats.not_analysed.iter_mut().find(|(seen, _)| seen == language) {
                        Some((_, count)) => *count += 1,
                        None => stats.not_analysed.push((language, 1)),
                    }
                }
                continue;
            }
        };
        let relative = relative_name(root, entry.path(), root_is_directory);
        if matches!(kind, Work::Code(_)) && tests == TestCode::Skip && is_test_file(&relative) {
            stats.test_files += 1;
            continue;
        }
        work.push((relative, entry.into_path(), kind));
    }
    (work, stats)
}

/// Reads and audits one file into `report`; whether parts of it did not parse.
fn read_one(
    relative: &str,
    path: &Path,
    kind: &Work,
    advisories: &Advisories,
    options: &Options,
    report: &mut Report,
) -> bool {
    let (what, limit) = match kind {
        Work::Lockfile(_) => ("dependencies in", MAX_LOCKFILE_BYTES),
        Work::Code(_) => ("code in", MAX_CODE_BYTES),
    };
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > limit {
        report.not_tested.push(format!("{what} {relative}: {size} bytes, over the {limit}-byte limit"));
        return false;
    }
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            report.not_tested.push(format!("{what} {relative}: not UTF-8 text"));
            return false;
        }
        Err(err) => {
            report.not_tested.push(format!("{what} {relative}: {err}"));
            return false;
        }
    };
    match kind {
        Work::Lockfile(lockfile) => {
            audit_lockfile(relative, *lockfile, &text, advisories, report);
            false
        }
        Work::Code(language) => match audit_code(relative, *language, &text, options, report) {
            Ok(outcome) => outcome.has_syntax_errors,
            Err(err) => {
                report.not_tested.push(format!("{what} {relative}: {err}"));
                false
            }
        },
    }
}

/// `path` relative to the audited directory, with `/` separators (SARIF and code-scanning tools expect them); the
/// file's own name when a single file was audited.
fn relative_name(root: &Path, path: &Path, root_is_directory: bool) -> String {
    let relative = if root_is_directory {
        path.strip_prefix(root).unwrap_or(path)
    } else {
        Path::new(path.file_name().unwrap_or(path.as_os_str()))
    };
    relative.components().map(|part| part.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}
