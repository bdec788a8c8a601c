//! Writing job outputs under a local directory without trusting the worker or the
//! directory: every path stays inside the target, no symlink at or under the target
//! is followed, nothing is overwritten unless asked, and a file reaches its final name
//! only complete and checked (it is written to a temporary name next to it, created
//! exclusively, and moved once its hash matched).
//!
//! The policy lives here, in the core; hosts supply the primitives (`lstat`,
//! `make_dir`, `http_to_file`, `write_new_file`, `commit_file`, `remove_file`).

use super::{PathKind, Platform};
use crate::error::{Error, ErrorCode, Result};
use crate::util::check_relative_path;
use std::cell::Cell;
use std::rc::Rc;

/// Options of `downloadTo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace existing regular files (never a symlink, never a directory).
    pub overwrite: bool,
}

fn refuse(msg: String, path: &str) -> Error {
    Error::new(ErrorCode::Io, msg).with_details(serde_json::json!({"path": path}))
}

/// The target directory without trailing slashes (`/` stays `/`).
pub fn normalize_dir(dir: &str) -> String {
    let t = dir.trim_end_matches('/');
    if t.is_empty() && dir.starts_with('/') {
        "/".into()
    } else if t.is_empty() {
        ".".into()
    } else {
        t.into()
    }
}

fn join(dir: &str, rel: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// Check the target directory itself: it may be missing (it is created when the
/// first file is written) or a directory, but not a symlink or anything else.
/// Directories above it are the user's business and may be symlinks.
pub async fn check_root(p: &dyn Platform, dir: &str) -> Result<()> {
    let dir = normalize_dir(dir);
    match p.lstat(&dir).await? {
        PathKind::Missing | PathKind::Dir => Ok(()),
        PathKind::Symlink => Err(refuse(format!("refusing to write into {dir}: it is a symbolic link (give the real directory)"), &dir)),
        _ => Err(refuse(format!("refusing to write into {dir}: it is not a directory"), &dir)),
    }
}

/// One file to write: its job-relative path and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub rel: String,
    pub dest: String,
    /// The temporary name next to `dest` the bytes stream into.
    pub temp: String,
}

/// A checked plan: every path inside the target, no symlink on the way, no existing
/// file in the way (unless `overwrite`). Nothing has been written yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub root: String,
    /// Directories to create, parents first.
    pub dirs: Vec<String>,
    pub files: Vec<PlannedFile>,
    pub overwrite: bool,
}

thread_local! {
    static TEMP_SEQ: Cell<u64> = const { Cell::new(0) };
}

fn temp_name(dest: &str, salt: u64) -> String {
    let seq = TEMP_SEQ.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let (parent, name) = match dest.rfind('/') {
        Some(i) => (&dest[..=i], &dest[i + 1..]),
        None => ("", dest),
    };
    format!("{parent}.{name}.sandrun-{salt:x}-{seq}.part")
}

/// Check every path against the target as it is now; refuse the whole set at the first
/// problem, naming the file, before anything is written.
pub async fn plan(p: &dyn Platform, dir: &str, rels: &[String], opts: WriteOptions) -> Result<Plan> {
    let root = normalize_dir(dir);
    check_root(p, &root).await?;
    for rel in rels {
        check_relative_path(rel).map_err(|e| refuse(format!("refusing to write job output: {}", e.message), rel))?;
    }
    let root_missing = p.lstat(&root).await? == PathKind::Missing;
    let mut dirs: Vec<String> = Vec::new();
    let mut files = Vec::new();
    let salt = (p.now_ms() * 1000.0) as u64;
    for rel in rels {
        let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let mut at = root.clone();
        let mut missing = root_missing;
        for d in &parts[..parts.len().saturating_sub(1)] {
            at = join(&at, d);
            if !missing {
                match p.lstat(&at).await? {
                    PathKind::Dir => continue,
                    PathKind::Missing => missing = true,
                    PathKind::Symlink => return Err(refuse(format!("refusing to write {rel}: {at} is a symbolic link inside the target, and links are never followed"), &at)),
                    _ => return Err(refuse(format!("refusing to write {rel}: {at} exists and is not a directory"), &at)),
                }
            }
            if !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
        let dest = join(&root, &parts.join("/"));
        if !missing {
            match p.lstat(&dest).await? {
                PathKind::Missing => {}
                PathKind::File if opts.overwrite => {}
                PathKind::File => {
                    return Err(refuse(format!("refusing to overwrite {dest}: it exists (pass {{ overwrite: true }} to replace files); nothing was written"), &dest))
                }
                PathKind::Symlink => return Err(refuse(format!("refusing to write {dest}: a symbolic link is there, and links are never followed nor replaced"), &dest)),
                _ => return Err(refuse(format!("refusing to write {dest}: something that is not a file is there"), &dest)),
            }
        }
        if files.iter().any(|f: &PlannedFile| f.dest == dest) || dirs.contains(&dest) {
            return Err(refuse(format!("refusing to write {rel}: two outputs land on {dest}"), &dest));
        }
        files.push(PlannedFile { rel: rel.clone(), temp: temp_name(&dest, salt), dest });
    }
    if files.iter().any(|f| dirs.contains(&f.dest)) {
        return Err(refuse("refusing to write the outputs: one output is both a file and a directory".into(), &root));
    }
    Ok(Plan { root, dirs, files, overwrite: opts.overwrite })
}

/// Create the target and the plan's directories, refusing one that became a symlink.
pub async fn make_dirs(p: &dyn Platform, plan: &Plan) -> Result<()> {
    if p.lstat(&plan.root).await? == PathKind::Missing {
        // Create the missing ancestors of the target too (they are outside the target).
        let mut chain = vec![plan.root.clone()];
        let mut cur = plan.root.clone();
        while let Some(i) = cur.rfind('/') {
            cur.truncate(i);
            if cur.is_empty() || p.lstat(&cur).await? != PathKind::Missing {
                break;
            }
            chain.push(cur.clone());
        }
        for d in chain.iter().rev() {
            p.make_dir(d).await?;
        }
    }
    check_root(p, &plan.root).await?;
    for d in &plan.dirs {
        match p.lstat(d).await? {
            PathKind::Dir => {}
            PathKind::Missing => p.make_dir(d).await?,
            _ => return Err(refuse(format!("refusing to write under {d}: it changed into something that is not a directory"), d)),
        }
    }
    Ok(())
}

/// Files written to their temporary names, waiting to be moved to their final ones.
pub struct Staged {
    platform: Rc<dyn Platform>,
    moves: Vec<(String, String)>,
    overwrite: bool,
}

impl Staged {
    pub fn new(platform: Rc<dyn Platform>, overwrite: bool) -> Self {
        Staged { platform, moves: Vec::new(), overwrite }
    }
    /// Record a finished temporary file.
    pub fn add(&mut self, temp: String, dest: String) {
        self.moves.push((temp, dest));
    }
    /// Move every file to its final name, in order. At the first failure the remaining
    /// temporary files are removed; files already moved stay.
    pub async fn commit(self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut failed = None;
        for (temp, dest) in &self.moves {
            if failed.is_some() {
                let _ = self.platform.remove_file(temp).await;
                continue;
            }
            match self.platform.commit_file(temp, dest, self.overwrite).await {
                Ok(()) => done.push(dest.clone()),
                Err(e) => {
                    let _ = self.platform.remove_file(temp).await;
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
    /// Remove every temporary file.
    pub async fn discard(self) {
        for (temp, _) in &self.moves {
            let _ = self.platform.remove_file(temp).await;
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativePlatform;
    use std::os::unix::fs::symlink;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    fn tempdir(name: &str) -> String {
        let d = std::env::temp_dir().join(format!("sandrun-target-{name}-{}-{}", std::process::id(), TEMP_SEQ.with(|c| c.get())));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.to_string_lossy().into_owned()
    }

    fn rels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_refuse_symlinks_existing_files_and_escapes_before_writing() {
        let p = NativePlatform::default();
        let base = tempdir("plan");
        let outside = format!("{base}/outside");
        std::fs::create_dir(&outside).unwrap();
        let target = format!("{base}/out");
        std::fs::create_dir(&target).unwrap();
        // A symlinked directory inside the target, pointing outside.
        symlink(&outside, format!("{target}/results")).unwrap();
        let e = run(plan(&p, &target, &rels(&["a.txt", "results/x.csv"]), WriteOptions::default())).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
        assert!(e.message.contains("symbolic link"), "{e}");
        // A symlink at a file's own name: refused even with overwrite.
        symlink(format!("{outside}/victim"), format!("{target}/b.txt")).unwrap();
        let e = run(plan(&p, &target, &rels(&["b.txt"]), WriteOptions { overwrite: true })).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        // An existing file: refused unless overwrite, naming the file.
        std::fs::write(format!("{target}/c.txt"), "mine").unwrap();
        let e = run(plan(&p, &target, &rels(&["new.txt", "c.txt"]), WriteOptions::default())).unwrap_err();
        assert!(e.message.contains("c.txt") && e.message.contains("overwrite"), "{e}");
        assert_eq!(e.details.unwrap()["path"], format!("{target}/c.txt"));
        assert!(run(plan(&p, &target, &rels(&["c.txt"]), WriteOptions { overwrite: true })).is_ok());
        // Escapes.
        for bad in ["../x", "/etc/passwd", "a/../../x", "a//b", "./a"] {
            assert_eq!(run(plan(&p, &target, &rels(&[bad]), WriteOptions::default())).unwrap_err().code, ErrorCode::Io, "{bad}");
        }
        // The target itself a symlink.
        symlink(&outside, format!("{base}/link")).unwrap();
        let e = run(plan(&p, &format!("{base}/link/"), &rels(&["a.txt"]), WriteOptions::default())).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        // Nothing was written anywhere.
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert!(!std::path::Path::new(&format!("{target}/a.txt")).exists());
    }

    #[test]
    fn stages_and_commits_without_clobbering() {
        let p: Rc<dyn Platform> = Rc::new(NativePlatform::default());
        let base = tempdir("commit");
        let target = format!("{base}/new/out");
        let pl = run(plan(&*p, &target, &rels(&["a.txt", "d/e/f.txt"]), WriteOptions::default())).unwrap();
        assert_eq!(pl.dirs, vec![format!("{target}/d"), format!("{target}/d/e")]);
        run(make_dirs(&*p, &pl)).unwrap();
        let mut staged = Staged::new(p.clone(), false);
        for f in &pl.files {
            assert!(f.temp.contains(".sandrun-") && f.temp.ends_with(".part"));
            run(p.write_new_file(&f.temp, f.rel.as_bytes())).unwrap();
            // Exclusive create: the same temporary name cannot be written twice.
            assert_eq!(run(p.write_new_file(&f.temp, b"again")).unwrap_err().code, ErrorCode::Io);
            staged.add(f.temp.clone(), f.dest.clone());
        }
        // A file appears at a final name after the plan: the commit refuses it.
        std::fs::write(format!("{target}/d/e/f.txt"), "raced").unwrap();
        let e = run(staged.commit()).unwrap_err();
        assert!(e.message.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read_to_string(format!("{target}/d/e/f.txt")).unwrap(), "raced");
        assert_eq!(std::fs::read_to_string(format!("{target}/a.txt")).unwrap(), "a.txt");
        let leftovers: Vec<_> = std::fs::read_dir(format!("{target}/d/e")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "the temporary file is removed: {leftovers:?}");
        // With overwrite, a regular file is replaced.
        let pl = run(plan(&*p, &target, &rels(&["a.txt"]), WriteOptions { overwrite: true })).unwrap();
        let mut staged = Staged::new(p.clone(), true);
        run(p.write_new_file(&pl.files[0].temp, b"new")).unwrap();
        staged.add(pl.files[0].temp.clone(), pl.files[0].dest.clone());
        run(staged.commit()).unwrap();
        assert_eq!(std::fs::read_to_string(format!("{target}/a.txt")).unwrap(), "new");
    }
}
