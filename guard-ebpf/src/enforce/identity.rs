//! Rules on concrete files by identity: the walk up a file's directories, and the
//! files too deep to place.

use super::*;

/// Entries of `INODE_RULES` in force.
#[inline(always)]
pub(super) fn identity_count(cfg: &Config) -> u32 {
    INODE_COUNT.get(cfg.generation & 1).copied().unwrap_or(0)
}

/// One level of the identity walk: level 0 is the opened file (looked up among
/// the rules on concrete files), every level above a directory (looked up among
/// the rules on concrete directories). Stops at the first entry that enforces, or
/// at the root of the file system; the first entry met is reported in any case.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn ident_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let (d, generation) = unsafe { ((*c).ident_d as *const core::ffi::c_void, (*c).generation) };
    if d.is_null() {
        return 1;
    }
    let (dev, ino) = core_read::dentry_ident(d);
    let kind = if index == 0 {
        inode_kind::FILE
    } else {
        inode_kind::TREE
    };
    let key = InodeKey::new(generation as u8, kind, dev, ino);
    // SAFETY: read-only copy of the map value.
    let hit = if ino != 0 {
        unsafe { INODE_RULES.get(key) }.copied()
    } else {
        None
    };
    if let Some(r) = hit {
        if index != 0 {
            // SAFETY: as above.
            unsafe { (*c).ident_above = 1 };
        }
        if r.flags & rule_flags::EXCEPT != 0 {
            // SAFETY: as above.
            unsafe { (*c).ident_except = u32::from(r.rule) + 1 };
        } else {
            // SAFETY: as above.
            let (first, except) = unsafe {
                (
                    (*c).ident_flags & u32::from(flags::BY_IDENTITY) == 0,
                    (*c).ident_except,
                )
            };
            let enforce = enforces(c, r) && except != u32::from(r.rule) + 1;
            if first || enforce {
                // SAFETY: as above.
                unsafe {
                    (*c).tail = IdentityTail {
                        dev,
                        up: index as u16,
                        rule: r.rule,
                        ino,
                    };
                    (*c).ident_flags |= u32::from(flags::BY_IDENTITY);
                }
            }
            if enforce {
                // SAFETY: as above.
                unsafe { (*c).picked = u32::from(r.rule) + 1 };
                return 1;
            }
        }
    }
    // SAFETY: as above.
    unsafe { (*c).ident_d = core_read::dentry_up(d) as u64 };
    0
}

/// Whether the directory of the file `dentry` is known clear (1, else 0): no entry
/// on it or above it, under the rules and the tree in force. When not, it is noted
/// in the check, to be remembered if the walk finds it so ([`identity`]).
///
/// Its own function, called once before the walk: in the walk's step, the compat
/// build's chunk (the step inlined eight times) had the verifier check the lookup
/// eight times, and its frame would be the file check's (the open's exit chain has
/// no byte to spare on Linux 6.1); here it is a frame beside the step's.
#[inline(never)]
extern "C" fn guard_dir_clear(dentry: u64) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 0;
    };
    let d = core_read::dentry_up(dentry as *const core::ffi::c_void);
    if d.is_null() {
        return 0;
    }
    let (dev, ino) = core_read::dentry_ident(d);
    if ino == 0 {
        return 0;
    }
    let Some(now) = clear_epoch(TREE_DIRS) else {
        return 0;
    };
    let key = InodeKey::new(0, inode_kind::TREE, dev, ino);
    // SAFETY: read-only copy of the map value.
    if unsafe { IDENT_CLEAR.get(key) }.copied() == Some(now) {
        return 1;
    }
    // SAFETY: this CPU's check.
    unsafe {
        (*c).dir_dev = dev;
        (*c).dir_ino = ino;
        (*c).dir_epoch = now;
    }
    0
}

/// The identity walk from `dentry` up; leaves its result in the check.
#[inline(always)]
pub(super) fn identity(c: *mut Check, dentry: *const core::ffi::c_void) {
    // SAFETY: this CPU's check.
    unsafe { (*c).ident_d = dentry as u64 };
    // The file's directory known clear: the file's own entry is the only one left
    // to look up, and the walk stops after it as if it had passed the root.
    let clear = guard_dir_clear(dentry as u64) != 0;
    let levels = if clear { 1 } else { IDENTITY_DEPTH as u32 + 1 };
    each!(IDENTITY_DEPTH as u32 + 1 => levels, ident_step, guard_each_ident, 8);
    // SAFETY: as above.
    let (left, picked, found) = unsafe {
        (
            if clear { 0 } else { (*c).ident_d },
            (*c).picked,
            (*c).ident_flags & u32::from(flags::BY_IDENTITY),
        )
    };
    if found != 0 {
        crate::maps::count(counter::IDENTITY_HITS);
    }
    // The file's directory and everything above it up to the root had no entry:
    // the next open of a file there stops at its directory. Under the epochs read
    // before the walk: a change of the rules or of the tree since makes it stale.
    // SAFETY: this CPU's check.
    let (above, epoch, dev, ino) =
        unsafe { ((*c).ident_above, (*c).dir_epoch, (*c).dir_dev, (*c).dir_ino) };
    if left == 0 && above == 0 && epoch != 0 {
        let key = InodeKey::new(0, inode_kind::TREE, dev, ino);
        let _ = IDENT_CLEAR.insert(key, epoch, 0);
    }
    if picked != 0 {
        return;
    }
    // The walk ran out of levels before the root: not known to be outside every
    // protected directory. Or no entry placed a file with several names while
    // some protected directory's files did not all fit in the set: it may be a
    // hard link to one of them. Either way, fail closed: the first rule on a
    // concrete directory that would enforce on this check decides.
    let unplaced = left != 0 || (found == 0 && linked_unplaced(c, dentry));
    if unplaced {
        // SAFETY: as above.
        unsafe { (*c).ident_flags |= u32::from(flags::IDENTITY_UNKNOWN) };
        crate::maps::count(counter::IDENTITY_UNKNOWN);
        each!(
            IDENTITY_UNKNOWN_MAX as u32,
            unknown_step,
            guard_each_unknown,
            8
        );
    }
}

/// Whether `dentry` is a regular file with several names while the generation in
/// force has its `MEMBERS_OVER` entry (the files of a protected directory did not
/// all fit in the identity set).
#[inline(always)]
pub(super) fn linked_unplaced(c: *mut Check, dentry: *const core::ffi::c_void) -> bool {
    // SAFETY: this CPU's check.
    let generation = unsafe { (*c).generation };
    let key = InodeKey::new(generation as u8, inode_kind::MEMBERS_OVER, 0, 0);
    // The map's answer first: it is almost always no, and then the inode is not read.
    // SAFETY: presence only.
    unsafe { INODE_RULES.get(key) }.is_some() && core_read::dentry_links(dentry) >= 2
}

/// Fail-closed entry `index` (`inode_kind::UNKNOWN`): the first that enforces on
/// the check ends the loop with `picked` set; the first missing one ends it too.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn unknown_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let generation = unsafe { (*c).generation };
    let key = InodeKey::new(generation as u8, inode_kind::UNKNOWN, 0, u64::from(index));
    // SAFETY: read-only copy of the map value.
    let Some(r) = (unsafe { INODE_RULES.get(key) }).copied() else {
        return 1;
    };
    if !enforces(c, r) {
        return 0;
    }
    // SAFETY: as above. The refusal is for want of a place, not a match: the
    // record says `IDENTITY_UNKNOWN` alone.
    unsafe {
        (*c).picked = u32::from(r.rule) + 1;
        (*c).ident_flags &= !u32::from(flags::BY_IDENTITY);
    }
    1
}

/// What the last identity walk on this CPU found: its `Header::flags` bits and,
/// with `flags::BY_IDENTITY`, the match.
#[inline(always)]
pub(crate) fn identity_tail() -> IdentityTail {
    match CHECKS.get_ptr_mut(0) {
        // SAFETY: this CPU's check.
        Some(c) => unsafe { (*c).tail },
        None => IdentityTail::default(),
    }
}
