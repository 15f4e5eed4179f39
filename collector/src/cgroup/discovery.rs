//! Finding a node's cgroups: one hierarchy walked with `getdents` into a stack buffer (no
//! allocation for cgroups already known), stopping at container cgroups (containers are
//! leaves). Every directory walked carries an inotify watch, so the walk is repeated only
//! in cycles after a cgroup was created or removed, and every [`REWALK_EVERY`] cycles as a
//! safety net; a quiet cycle costs one non-blocking read of the inotify descriptor. A
//! cgroup's identity, labels, controllers and start time are worked out once, when it
//! first appears; cgroups no longer found are dropped with their series.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::inotify;
use rustix::fs::{FileType, Mode, OFlags, RawDir};

use super::identity;
use super::labels::Labeler;
use super::layout::{Layout, Version};
use super::stats::{Cgroup, Stats};
use crate::cycle_errors::CycleErrors;
use crate::kept_files::ReadBuf;

/// Cycles between walks of an unchanged hierarchy: inotify tells of every change, but a
/// lost watch (the kernel's per-user watch limit) must not hide a cgroup for long.
pub const REWALK_EVERY: u64 = 20;

/// Says whether the hierarchy may have changed since the last walk.
pub(super) struct Watcher {
    /// None when inotify is not available: every cycle walks.
    pub(super) fd: Option<OwnedFd>,
    /// The last walk's cycle.
    pub(super) walked_at: u64,
}

impl Watcher {
    pub(super) fn new() -> Self {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .map_err(|e| tracing::warn!(error = %e, "no inotify: cgroups are listed every cycle"))
            .ok();
        Watcher { fd, walked_at: 0 }
    }

    /// Watches `dir` for cgroups created or removed in it. Called before listing it, so a
    /// cgroup created in between is either listed or announced.
    fn watch(&mut self, dir: &Path) {
        let Some(fd) = &self.fd else { return };
        let mask = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::ONLYDIR;
        if let Err(e) = inotify::add_watch(fd, dir, mask) {
            if e != rustix::io::Errno::NOENT {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch cgroups (fs.inotify.max_user_watches?): listing them every cycle");
                self.fd = None;
            }
        }
    }

    /// Drains pending events; true if a directory came or went (or events were lost).
    fn changed(&mut self) -> bool {
        let Some(fd) = &self.fd else { return true };
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(fd, &mut space);
        let mut changed = false;
        loop {
            match events.next() {
                Ok(ev) => {
                    let f = ev.events();
                    changed |= f.contains(inotify::ReadFlags::ISDIR)
                        || f.intersects(
                            inotify::ReadFlags::QUEUE_OVERFLOW | inotify::ReadFlags::DELETE_SELF,
                        );
                }
                Err(rustix::io::Errno::AGAIN) => return changed,
                Err(_) => return true,
            }
        }
    }
}

/// Finds new and vanished cgroups in `cgroups`, unless nothing came or went since the last
/// walk. New cgroups are labelled by `labels`; a walk that fails at the root keeps what was
/// known (and is tried again next cycle) rather than dropping every series.
pub(super) fn discover(
    watcher: &mut Watcher,
    layout: &Layout,
    labels: &Labeler,
    cycle: u64,
    cgroups: &mut BTreeMap<String, Cgroup>,
    buf: &mut ReadBuf,
    errors: &mut CycleErrors,
) {
    let due = cycle.saturating_sub(watcher.walked_at) >= REWALK_EVERY;
    let changed = watcher.changed();
    if watcher.walked_at != 0 && !changed && !due {
        return; // nothing came or went since the last walk
    }
    watcher.walked_at = cycle;
    let Some(root) = layout.discovery_root().map(Path::to_owned) else {
        return;
    };
    let mut path = root;
    let mut rel = String::with_capacity(256);
    let mut walk = Walk {
        watcher: &mut *watcher,
        layout,
        labels,
        cycle,
        cgroups: &mut *cgroups,
    };
    if let Err(e) = walk.walk(&mut path, &mut rel, 0, buf, errors) {
        errors.record("cgroup_discovery", format_args!("{}: {e}", path.display()));
        watcher.walked_at = 0; // try again next cycle
        return; // keep what we knew rather than dropping every series
    }
    cgroups.retain(|_, c| c.seen == cycle);
}

/// One walk of the hierarchy: marks every cgroup found as seen in `cycle`, adding new ones.
struct Walk<'a> {
    watcher: &'a mut Watcher,
    layout: &'a Layout,
    labels: &'a Labeler,
    cycle: u64,
    cgroups: &'a mut BTreeMap<String, Cgroup>,
}

impl Walk<'_> {
    fn walk(
        &mut self,
        path: &mut PathBuf,
        rel: &mut String,
        depth: usize,
        buf: &mut ReadBuf,
        errors: &mut CycleErrors,
    ) -> rustix::io::Result<()> {
        const MAX_DEPTH: usize = 16;
        self.watcher.watch(path);
        let fd = match rustix::fs::open(
            &*path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if depth == 0 => return Err(e),
            // A cgroup removed while we walk: it is simply gone.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // Any other failure below the root costs that subtree only.
            Err(e) => {
                errors.record("cgroup_discovery", format_args!("{}: {e}", path.display()));
                return Ok(());
            }
        };
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = RawDir::new(&fd, &mut space);
        while let Some(entry) = dir.next() {
            let Ok(entry) = entry else { break };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                FileType::Directory => true,
                FileType::Unknown => rustix::fs::statat(
                    &fd,
                    entry.file_name(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
                _ => false,
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if !is_dir {
                continue;
            }
            let rel_len = rel.len();
            rel.push('/');
            rel.push_str(name);
            path.push(name);
            let descend = self.visit(rel, path, buf);
            if descend && depth < MAX_DEPTH {
                self.walk(path, rel, depth + 1, buf, errors)?;
            }
            path.pop();
            rel.truncate(rel_len);
        }
        Ok(())
    }

    /// Marks `rel` as present this cycle, adding it if new. Returns whether to walk below it.
    fn visit(&mut self, rel: &str, path: &Path, buf: &mut ReadBuf) -> bool {
        if let Some(cg) = self.cgroups.get_mut(rel) {
            cg.seen = self.cycle;
            return !cg.identity.is_container();
        }
        let identity = identity::parse(rel);
        let descend = !identity.is_container();
        let labels = self.labels.labels_for(rel, &identity);
        let stats = Stats {
            start_time: start_time(path, self.layout.version()),
            ..Default::default()
        };
        let cg = Cgroup {
            rel: rel.to_owned(),
            ctrl: self.layout.controllers(rel, buf),
            identity,
            labels,
            files: Default::default(),
            stats,
            seen: self.cycle,
            reads: 0,
        };
        self.cgroups.insert(cg.rel.clone(), cg);
        descend
    }
}

/// cAdvisor's creation time: the earlier of the directory's mtime and that of a file the
/// kernel rarely touches (the directory's mtime moves when children come and go).
fn start_time(dir: &Path, version: Version) -> Option<f64> {
    let marker = match version {
        Version::V1 => "cgroup.clone_children",
        Version::V2 => "cgroup.events",
    };
    let mtime = |p: &Path| {
        rustix::fs::stat(p)
            .ok()
            .map(|s| s.st_mtime as f64 + s.st_mtime_nsec as f64 / 1e9)
    };
    match (mtime(dir), mtime(&dir.join(marker))) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
