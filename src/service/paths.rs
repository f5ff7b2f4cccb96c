//! Where a service may read and write: paths in requests name files inside configured input
//! and output roots, and nothing a request says can reach a file outside them — no `..`, no
//! absolute path elsewhere, no symbolic link (in the path or as the file) that leaves a root.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Longest path a request may give, in bytes.
const MAX_PATH: usize = 4096;

/// The input and output roots of a service, resolved (symbolic links followed) once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    inputs: PathBuf,
    outputs: PathBuf,
}

/// `path` resolved, and checked to be a directory.
fn directory(path: &Path, role: &str) -> Result<PathBuf> {
    let resolved = path
        .canonicalize()
        .map_err(|e| Error::config(format!("the {role} root {}: {e}", path.display())))?;
    if !resolved.is_dir() {
        return Err(Error::config(format!("the {role} root {} is not a directory", path.display())));
    }
    Ok(resolved)
}

impl Roots {
    /// Roots at two existing directories (they may be the same one).
    pub fn new(inputs: impl AsRef<Path>, outputs: impl AsRef<Path>) -> Result<Self> {
        Ok(Self { inputs: directory(inputs.as_ref(), "input")?, outputs: directory(outputs.as_ref(), "output")? })
    }

    pub fn inputs(&self) -> &Path {
        &self.inputs
    }

    pub fn outputs(&self) -> &Path {
        &self.outputs
    }

    /// The existing file `requested` names inside the input root: relative to it, or absolute
    /// inside it; wherever its symbolic links lead, the file itself is inside the root.
    pub fn input(&self, requested: &str) -> Result<PathBuf> {
        let relative = relative_to(&self.inputs, requested)?;
        let joined = self.inputs.join(&relative);
        let resolved = joined.canonicalize().map_err(|e| Error::config(format!("input `{requested}`: {e}")))?;
        if !resolved.starts_with(&self.inputs) {
            return Err(Error::config(format!("input `{requested}` leads outside the input root")));
        }
        if !resolved.is_file() {
            return Err(Error::config(format!("input `{requested}` is not a file")));
        }
        Ok(resolved)
    }

    /// Where `requested` may be written inside the output root: its folder exists inside the
    /// root (links followed), and the name is not a symbolic link (writing through one could
    /// leave the root) nor a folder.
    pub fn output(&self, requested: &str) -> Result<PathBuf> {
        let relative = relative_to(&self.outputs, requested)?;
        let name = relative
            .file_name()
            .ok_or_else(|| Error::config(format!("output `{requested}` names no file")))?
            .to_owned();
        let folder = self.outputs.join(relative.parent().unwrap_or(Path::new("")));
        let folder = folder
            .canonicalize()
            .map_err(|e| Error::config(format!("output `{requested}`: its folder: {e}")))?;
        if !folder.starts_with(&self.outputs) {
            return Err(Error::config(format!("output `{requested}` leads outside the output root")));
        }
        let target = folder.join(name);
        match target.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(Error::config(format!("output `{requested}` is a symbolic link")))
            }
            Ok(meta) if meta.is_dir() => Err(Error::config(format!("output `{requested}` is a folder"))),
            _ => Ok(target),
        }
    }
}

/// `requested` as a path below `root`: plain names only (`.` ignored); an absolute path must
/// lie inside the root.
fn relative_to(root: &Path, requested: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::config(format!("path `{requested}`: {why}"));
    if requested.is_empty() {
        return Err(bad("empty"));
    }
    if requested.len() > MAX_PATH {
        return Err(Error::config(format!("a path of {} bytes (at most {MAX_PATH})", requested.len())));
    }
    if requested.contains('\0') {
        return Err(bad("a NUL byte"));
    }
    let path = Path::new(requested);
    let path = if path.is_absolute() {
        path.strip_prefix(root).map_err(|_| bad("an absolute path outside the root"))?
    } else {
        path
    };
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("an absolute path outside the root")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad("names no file"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh `in/` and `out/` folders with a file `in/a/clip.mp4` and a file outside both.
    fn setup(name: &str) -> (PathBuf, Roots) {
        let base = std::env::temp_dir().join(format!("framestream-roots-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for dir in ["in/a", "out/sub", "elsewhere"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        std::fs::write(base.join("in/a/clip.mp4"), b"x").unwrap();
        std::fs::write(base.join("elsewhere/secret"), b"x").unwrap();
        let roots = Roots::new(base.join("in"), base.join("out")).unwrap();
        (base, roots)
    }

    fn refused<T: std::fmt::Debug>(result: Result<T>, says: &str) {
        let err = result.expect_err("refused").to_string();
        assert!(err.contains(says), "{err}");
    }

    #[test]
    fn inputs_inside_the_root_resolve() {
        let (base, roots) = setup("inputs");
        let want = base.join("in/a/clip.mp4").canonicalize().unwrap();
        assert_eq!(roots.input("a/clip.mp4").unwrap(), want);
        assert_eq!(roots.input("./a/./clip.mp4").unwrap(), want);
        assert_eq!(roots.input(want.to_str().unwrap()).unwrap(), want);
        refused(roots.input("a/missing.mp4"), "No such file");
        refused(roots.input("a"), "not a file");
        refused(roots.input("../elsewhere/secret"), "`..` is not allowed");
        refused(roots.input("a/../../elsewhere/secret"), "`..` is not allowed");
        refused(roots.input(base.join("elsewhere/secret").to_str().unwrap()), "absolute path outside the root");
        refused(roots.input(""), "empty");
        refused(roots.input("a\0b"), "NUL");
        refused(roots.input(&"a/".repeat(3000)), "at most 4096");
    }

    #[test]
    fn outputs_inside_the_root_resolve() {
        let (base, roots) = setup("outputs");
        let out = base.join("out").canonicalize().unwrap();
        assert_eq!(roots.output("x.mp4").unwrap(), out.join("x.mp4"));
        assert_eq!(roots.output("sub/x.mp4").unwrap(), out.join("sub/x.mp4"));
        refused(roots.output("missing/x.mp4"), "its folder");
        refused(roots.output("sub"), "is a folder");
        refused(roots.output("../x.mp4"), "`..` is not allowed");
        refused(roots.output("/tmp/x.mp4"), "absolute path outside the root");
        refused(roots.output("."), "names no file");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_that_leave_a_root_are_refused() {
        use std::os::unix::fs::symlink;
        let (base, roots) = setup("links");
        let elsewhere = base.join("elsewhere");
        // A linked file and a linked folder inside the input root, both pointing out.
        symlink(elsewhere.join("secret"), base.join("in/leak")).unwrap();
        symlink(&elsewhere, base.join("in/outside")).unwrap();
        refused(roots.input("leak"), "leads outside the input root");
        refused(roots.input("outside/secret"), "leads outside the input root");
        // A link that stays inside is followed.
        symlink(base.join("in/a/clip.mp4"), base.join("in/alias.mp4")).unwrap();
        assert_eq!(roots.input("alias.mp4").unwrap(), base.join("in/a/clip.mp4").canonicalize().unwrap());
        // Outputs: a linked folder that leaves, and a link as the file itself.
        symlink(&elsewhere, base.join("out/away")).unwrap();
        refused(roots.output("away/x.mp4"), "leads outside the output root");
        symlink(elsewhere.join("secret"), base.join("out/x.mp4")).unwrap();
        refused(roots.output("x.mp4"), "is a symbolic link");
        refused(Roots::new(base.join("nowhere"), base.join("out")), "the input root");
    }
}
