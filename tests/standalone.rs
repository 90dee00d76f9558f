//! A clone of the repository is all a newcomer needs: no tracked file may lean on files beside
//! the repository (a sibling `shared` folder, design notes that are not in it), and the Enedis
//! fixtures must be exactly what their generator writes, so that every figure the tests expect
//! can be explained from tests/fixtures/enedis/make_fixtures.py.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The tracked files, as `git ls-files` lists them.
fn tracked_files() -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = String::from_utf8(out.stdout)
        .expect("file names are UTF-8")
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        files.iter().any(|f| f == "Cargo.toml"),
        "no Cargo.toml listed: {files:?}"
    );
    files
}

/// What is looked for, built from pieces so that this file does not match itself.
fn needles() -> [String; 5] {
    [
        ["..", "/shared"].concat(),
        ["DESIGN", ".md"].concat(),
        ["DESIGN", " §"].concat(),
        ["NOTES", ".md"].concat(),
        ["seed", " 000"].concat(),
    ]
}

/// A tracker's number ("issue" and a number) means nothing to whoever clones the repository;
/// the document it stands for must be in docs/.
fn names_an_issue(line: &str) -> bool {
    let lower = line.to_lowercase();
    let word = ["issue", " "].concat();
    lower.match_indices(&word).any(|(i, _)| {
        lower[i + word.len()..]
            .trim_start_matches('#')
            .starts_with(|c: char| c.is_ascii_digit())
    })
}

/// `file:line: text` of every line of `files` (relative to `root`) holding a needle.
fn offending(root: &Path, files: &[String]) -> Vec<String> {
    let needles = needles();
    let mut found = Vec::new();
    for file in files {
        // A file deleted in the work tree but not yet from the index has nothing to say.
        let Ok(bytes) = std::fs::read(root.join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) || names_an_issue(line) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_tracked_file_refers_outside_the_repository() {
    let found = offending(Path::new(ROOT), &tracked_files());
    assert!(
        found.is_empty(),
        "tracked files refer to documents outside the repository (point them at docs/):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let dir = tempfile::tempdir().unwrap();
    let planted = ["x = include_str!(\"", "..", "/shared/a.json\");\n"].concat();
    std::fs::write(dir.path().join("a.rs"), format!("// fine\n{planted}")).unwrap();
    std::fs::write(
        dir.path().join("b.md"),
        ["see ", "DESIGN", ".md §2\n"].concat(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.txt"),
        "docs/architecture.md\nan issue to fix\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("d.rs"),
        ["//! ", "Issue", " 4 benchmark\n"].concat(),
    )
    .unwrap();
    let files = ["a.rs", "b.md", "c.txt", "d.rs", "gone.rs"].map(String::from);
    let found = offending(dir.path(), &files);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("a.rs:2: "), "{found:?}");
    assert!(found[1].starts_with("b.md:1: "), "{found:?}");
    assert!(found[2].starts_with("d.rs:1: "), "{found:?}");
}

#[test]
fn enedis_fixtures_are_what_make_fixtures_writes() {
    let script = Path::new(ROOT).join("tests/fixtures/enedis/make_fixtures.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("python3 runs make_fixtures.py");
    assert!(
        out.status.success(),
        "tests/fixtures/enedis/ differs from make_fixtures.py (run it to rewrite them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
