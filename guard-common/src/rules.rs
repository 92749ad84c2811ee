//! Enforcement rules user space compiles into kernel maps.
//!
//! Every key starts with a generation byte. User space writes a new policy's entries
//! under the inactive generation, then flips [`Config::generation`]: the kernel sees
//! the old rule set or the new one, never a mix, and never none.

/// Bytes of path data in a [`PathKey`] (generation and kind bytes included).
pub const PATH_KEY_DATA: usize = 256;

/// What a path key is matched against (second data byte).
pub mod path_kind {
    /// The whole path of an opened file.
    pub const FILE: u8 = 1;
    /// The file name of an opened file.
    pub const FILE_NAME: u8 = 2;
    /// The file name of an opened file, reversed (suffix patterns).
    pub const FILE_NAME_REV: u8 = 3;
    /// The whole path of an executed file.
    pub const EXEC: u8 = 4;
    /// The file name of an executed file, as `comm` (15 bytes at most).
    pub const EXEC_NAME: u8 = 5;
    /// A run of whole components anywhere in a file's path (`**/.git/hooks/**` is
    /// stored as the prefix `/.git/hooks/`): looked up at every `/` of the path.
    pub const COMPONENTS: u8 = 6;
    /// Exceptions by whole path ([`FILE`]'s shapes), kept apart so that a longer
    /// entry of another rule never hides them from the longest-prefix lookup.
    pub const FILE_EXCEPT: u8 = 7;
    /// A route the policy refuses for sessions (`[sessions]`): one byte, a
    /// `crate::route` number, exact.
    pub const ROUTE: u8 = 8;
    /// Taint entries (`secret = true` rules whose action lets the open happen) use
    /// the file kinds plus this offset: [`FILE`] + 8 and so on. They live beside the
    /// kill and deny entries in the same map under kinds of their own, so a taint
    /// entry never hides a kill entry from a longest-prefix lookup, nor the reverse.
    pub const TAINT_OFFSET: u8 = 8;
    /// [`FILE`] entries of taint rules.
    pub const TAINT_FILE: u8 = FILE + TAINT_OFFSET;
    /// [`FILE_NAME`] entries of taint rules.
    pub const TAINT_FILE_NAME: u8 = FILE_NAME + TAINT_OFFSET;
    /// [`FILE_NAME_REV`] entries of taint rules.
    pub const TAINT_FILE_NAME_REV: u8 = FILE_NAME_REV + TAINT_OFFSET;
    /// [`COMPONENTS`] entries of taint rules.
    pub const TAINT_COMPONENTS: u8 = COMPONENTS + TAINT_OFFSET;
    /// [`FILE_EXCEPT`] entries of taint rules.
    pub const TAINT_FILE_EXCEPT: u8 = FILE_EXCEPT + TAINT_OFFSET;
    /// [`FILE`]'s shapes (whole paths: directory prefixes, exact paths) of the
    /// rules on reads only ([`FILE`] holds every rule's, as it always did). An open
    /// that only reads looks them up here: a longer entry of a rule on writes then
    /// never hides a shorter entry of a rule on reads from its longest-prefix
    /// lookup (`~/.ssh/authorized_keys` for writes inside `~/.ssh/**` for reads).
    /// Opens that write, and execs, look up [`FILE`].
    pub const FILE_READ: u8 = 16;
    /// Program names of multi-call binaries (`busybox`, `toybox`), as file name
    /// prefixes (busybox takes every name that starts with `busybox` for itself),
    /// `access` 1. An exec of one is also judged by the applet it runs: the file
    /// name in its `argv[0]`, or in its first argument when `argv[0]` names the
    /// binary itself (`busybox nc`), looked up among [`EXEC_NAME_REV`].
    pub const MULTICALL: u8 = 17;
    /// Exec rules' program names reversed, each twice: exact (`cn`, the name
    /// alone) and as a prefix with the `/` before it (`cn/`, the name at the end
    /// of a path). A reversed argument's longest match is then its file name's.
    /// The multi-call binaries' names are here too, marked by `access` 1 and no
    /// verdict: an argument naming the binary itself.
    pub const EXEC_NAME_REV: u8 = 18;
}

/// Data of a `PATH_RULES` LPM-trie key: `[generation, kind, bytes…]`. An exact entry
/// ends its bytes with NUL (counted in the key's prefix length); a prefix does not.
/// Lookups use the whole string plus NUL, so the longest stored prefix wins.
pub type PathData = [u8; PATH_KEY_DATA];

/// Bits of [`RuleRef::access`].
pub mod access {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
}

/// Bits of [`RuleRef::flags`].
pub mod rule_flags {
    /// Kill the process when it matches.
    pub const KILL: u8 = 1;
    /// Only the session root matches.
    pub const ROOT_ONLY: u8 = 2;
    /// Only processes other than the root match.
    pub const DESCENDANTS_ONLY: u8 = 4;
    /// An exception: a match here cancels a kill by the same rule.
    pub const EXCEPT: u8 = 8;
    /// Network: refuse (the hook returns EPERM).
    pub const DENY: u8 = 16;
    /// Network: allow-listed (ports in `ports`, or any when all are zero).
    pub const ALLOW: u8 = 32;
    /// Only processes whose role is in the entry's role set match:
    /// [`super::RuleRef::access`] bits 2..7 hold it (bit `role + 1`, see
    /// [`super::role_bits`]); a process of unknown role (0) always matches.
    pub const ROLES: u8 = 64;
    /// A file entry of a `secret = true` rule whose action lets the open happen
    /// (`log`, `alert`): a read through it taints the process
    /// ([`crate::TAINTED`]). Never kills or refuses. Taint entries use the
    /// `path_kind::TAINT_*` kinds.
    pub const TAINT: u8 = 128;
}

/// The [`RuleRef::access`] bits of a role set (`roles`: bit `r - 1` for role `r`).
pub const fn role_bits(roles: u8) -> u8 {
    (roles & 0x3f) << 2
}

/// Whether an entry with `flags` and `access` applies to a process with Tracked
/// `who` flags (root bit and role): its root/descendants and role scopes.
#[inline(always)]
pub fn scope_applies(flags: u8, access: u8, who: u32) -> bool {
    let is_root = who & u32::from(crate::flags::ROOT_PROCESS) != 0;
    if flags & rule_flags::ROOT_ONLY != 0 && !is_root
        || flags & rule_flags::DESCENDANTS_ONLY != 0 && is_root
    {
        return false;
    }
    if flags & rule_flags::ROLES != 0 {
        let role = crate::role::of(who);
        if role != 0 && role <= crate::role::MAX && (access >> 2) & (1 << (role - 1)) == 0 {
            return false;
        }
    }
    true
}

/// The value of a rule entry: which rule, and what the kernel does on a match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    /// Index of the rule in the policy (reported back in events, plus one).
    pub rule: u16,
    /// [`access`] bits a file rule covers.
    pub access: u8,
    /// [`rule_flags`].
    pub flags: u8,
    /// Network entries: the ports this entry covers; all zero means any port.
    pub ports: [u16; 8],
}

/// Most identity entries (`INODE_RULES`) one policy installs; the map holds two
/// generations of them. Entries past it are reported, not installed.
pub const IDENTITY_MAX: usize = 4096;

/// What an [`InodeKey`] is matched against.
pub mod inode_kind {
    /// The opened file itself (a rule on a concrete file).
    pub const FILE: u8 = 1;
    /// A directory above the opened file (a rule on a concrete directory's tree).
    pub const TREE: u8 = 2;
    /// Fail-closed entries (device 0, inode 0, 1, …; at most
    /// [`IDENTITY_UNKNOWN_MAX`](super::IDENTITY_UNKNOWN_MAX)): the rules on concrete
    /// directories, judged when an opened file's directories could not be walked to
    /// its file system's root, so whether it lies in one of them is unknown.
    pub const UNKNOWN: u8 = 3;
    /// The executed file itself (a program an exec rule names, by path or by a
    /// name found in the standard program directories).
    pub const EXEC: u8 = 4;
    /// One entry (device 0, inode 0) present when the files of some protected
    /// directory did not all fit in [`IDENTITY_MEMBERS_MAX`](super::IDENTITY_MEMBERS_MAX):
    /// an open of a regular file with several names that no entry places is then
    /// judged by the fail-closed entries ([`UNKNOWN`]), as a file too deep to place.
    pub const MEMBERS_OVER: u8 = 5;
}

/// Most entries per generation for the regular files inside protected directories
/// (`inode_kind::FILE` entries carrying their directory's rule), so that a hard
/// link elsewhere to a file inside one is that file. Past it, files with several
/// names go in first, and [`inode_kind::MEMBERS_OVER`] fails the rest closed.
pub const IDENTITY_MEMBERS_MAX: usize = 8192;

/// Size of the `INODE_RULES` map: two generations of every kind of entry.
pub const INODE_RULES_MAX: u32 =
    2 * (IDENTITY_MAX + IDENTITY_MEMBERS_MAX + IDENTITY_UNKNOWN_MAX + 1) as u32;

/// Most fail-closed entries ([`inode_kind::UNKNOWN`]) per generation: one per rule
/// on concrete directories that the kernel enforces; past it, the rest are reported.
pub const IDENTITY_UNKNOWN_MAX: usize = 64;

/// Key of the `INODE_RULES` hash map: a concrete file or directory a file rule
/// names, by identity. Its value is the rule's [`RuleRef`] as its path entry holds
/// it (an exception's entry has [`rule_flags::EXCEPT`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeKey {
    /// The generation of the rule set ([`Config::generation`]).
    pub generation: u8,
    /// An [`inode_kind`].
    pub kind: u8,
    /// Reserved, zero.
    pub _reserved: u16,
    /// The kernel's device number, `MKDEV(major, minor)` (`major << 20 | minor`).
    pub dev: u32,
    /// The inode number.
    pub ino: u64,
}

impl InodeKey {
    /// The key of `(dev, ino)` as an [`inode_kind`] `kind` in rule set `generation`.
    pub const fn new(generation: u8, kind: u8, dev: u32, ino: u64) -> Self {
        Self {
            generation,
            kind,
            _reserved: 0,
            dev,
            ino,
        }
    }
}

/// Data of a `NET_RULES` (and `TAINT_NET`) LPM-trie key: `[generation, family, 16
/// address bytes]` (IPv4 uses the first 4; IPv4-mapped IPv6 is looked up as IPv4).
///
/// `TAINT_NET` holds the `[taint]` allowlist when the policy denies tainted egress:
/// `ALLOW` entries for the allowed destinations, and one entry of prefix length 8
/// (the generation byte alone: every destination) with `DENY` and the `[taint]`
/// rule's index. A tainted process's connect or send is refused unless its longest
/// match is an `ALLOW` entry covering the port; no entry of the generation in force
/// means tainted egress is not refused.
pub type NetData = [u8; 18];

/// Global switches, in the one-entry `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Generation of the rule entries in force (0 or 1).
    pub generation: u32,
    /// Index (plus one) of the network rule that denies destinations outside its
    /// allow list; 0 when no such rule is enforced.
    pub net_default_deny: u32,
    /// [`rule_flags`] scope bits of that rule (`ROOT_ONLY`, `DESCENDANTS_ONLY`,
    /// `ROLES`), and in bits 8..15 its role set as [`RuleRef::access`] holds one.
    pub net_default_flags: u32,
    /// Bit `1 << kind` is set when entries of that [`path_kind`] exist: lookups of
    /// kinds no rule uses are skipped.
    pub path_kinds: u32,
    /// Which exec records wake the daemon at once instead of waiting for its drain
    /// beat (10 ms), because user space decides a kill on them: `0` none,
    /// [`EXEC_WAKE_NAMED`] the execs the kernel held (a digest, a download) and
    /// those of a program named in `EXEC_WAKE` (the programs of argv rules),
    /// [`EXEC_WAKE_ALL`] every exec (a rule on a glob of programs). The wake-up
    /// costs the exec ~20 µs on a VM (an IPI to the daemon's CPU, and the daemon's
    /// read of one record): measured, 14 % of a fork and exec of `/bin/true`.
    /// Exec records are exempt from the session's budget whenever it is non-zero.
    pub exec_wakeup: u32,
    /// Plain records a session may send per second (`[limits] rate`); 0: no limit.
    pub limit_rate: u32,
    /// Records a session may send in a burst above the rate (`[limits] burst`).
    pub limit_burst: u32,
    /// Non-zero with `[limits] on_loss = "kill"` in enforce mode: a process whose
    /// record is dropped is killed on the spot (user space kills the rest of its
    /// session when the drop is reported).
    pub limit_kill: u32,
    /// Index (plus one) of the exec rule a multi-call binary's exec is killed under
    /// when the applet it runs cannot be named (see `path_kind::MULTICALL`); 0:
    /// none (no rule the kernel enforces by program name for every process).
    pub applet_fallback: u32,
    /// Non-zero when the policy judges downloads' execs (`[sessions]
    /// run_downloaded`): the kernel remembers what sessions download and holds the
    /// execs that could run it (guard-ebpf fetched.rs); 0: neither.
    pub downloads: u32,
}

/// Where the kernel says it enforced: stored in [`crate::Header::rule`] of the event.
pub mod enforced {
    /// The kernel sent SIGKILL.
    pub const KILLED: u16 = 1 << 14;
    /// The kernel refused the operation (EPERM).
    pub const DENIED: u16 = 1 << 15;
    /// Low bits: the rule index plus one.
    pub const RULE_MASK: u16 = 0x3fff;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integer structs without padding.
    unsafe impl aya::Pod for super::RuleRef {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::InodeKey {}
}

/// [`Config::exec_wakeup`]: held execs and the programs `EXEC_WAKE` names.
pub const EXEC_WAKE_NAMED: u32 = 1;
/// [`Config::exec_wakeup`]: every exec.
pub const EXEC_WAKE_ALL: u32 = 2;
/// Most programs `EXEC_WAKE` holds (more: every exec wakes the daemon).
pub const EXEC_WAKE_MAX: u32 = 256;
