// Kernel struct reads for guard's eBPF programs, portable across kernels.
//
// Every struct below is a minimal local view marked preserve_access_index: clang
// records each field access as a CO-RE relocation, and the loader (aya) rewrites it
// against the running kernel's BTF, so no offset of this build is baked in.
// bpf-linker links this bitcode into the Rust object and inlines the accessors.
//
// Keep this file to reads. Decisions stay in Rust.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __co_re __attribute__((preserve_access_index))
#define ACCESSOR __attribute__((always_inline))

struct qstr {
	u32 hash;
	u32 len;
	const unsigned char *name;
} __co_re;

struct super_block;

struct inode {
	unsigned short i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
	unsigned int i_nlink;
	long long i_size;
} __co_re;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} __co_re;

struct vfsmount {
	struct dentry *mnt_root;
} __co_re;

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __co_re;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __co_re;

struct file {
	struct path f_path;
} __co_re;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __co_re;

struct files_struct {
	struct fdtable *fdt;
} __co_re;

struct fs_struct {
	struct path pwd;
} __co_re;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	unsigned long env_start;
	unsigned long env_end;
} __co_re;

struct atomic_t_view {
	int counter;
};

struct signal_struct {
	struct atomic_t_view live;
} __co_re;

struct seccomp {
	int mode;
} __co_re;

struct ns_common {
	unsigned int inum;
} __co_re;

struct net {
	struct ns_common ns;
} __co_re;

struct mnt_namespace {
	struct ns_common ns;
} __co_re;

struct user_namespace {
	struct ns_common ns;
} __co_re;

struct nsproxy {
	struct mnt_namespace *mnt_ns;
	struct net *net_ns;
} __co_re;

typedef struct {
	unsigned int val;
} kuid_t;

struct cred {
	struct user_namespace *user_ns;
	kuid_t euid;
} __co_re;

struct task_struct {
	s32 pid;
	s32 tgid;
	u64 start_time;
	int exit_code;
	struct task_struct *real_parent;
	struct files_struct *files;
	struct fs_struct *fs;
	struct mm_struct *mm;
	struct signal_struct *signal;
	struct task_struct *group_leader;
	char comm[16];
	struct seccomp seccomp;
	unsigned long atomic_flags;
	struct nsproxy *nsproxy;
	const struct cred *cred;
} __co_re;

struct linux_binprm {
	struct file *file;
	const char *filename;
	const char *interp;
} __co_re;

// ---- task ----

ACCESSOR u32 guard_task_pid(struct task_struct *t) { return BPF_CORE_READ(t, pid); }

// The program's name: the thread group leader's comm (16 bytes, NUL padded), where
// bpf_get_current_comm gives the calling thread's own name.
ACCESSOR void guard_task_leader_comm(struct task_struct *t, char *dst)
{
	struct task_struct *leader = BPF_CORE_READ(t, group_leader);
	if (bpf_core_read(dst, 16, &leader->comm))
		__builtin_memset(dst, 0, 16);
}
ACCESSOR u32 guard_task_tgid(struct task_struct *t) { return BPF_CORE_READ(t, tgid); }
ACCESSOR u64 guard_task_start_ns(struct task_struct *t) { return BPF_CORE_READ(t, start_time); }
ACCESSOR u32 guard_task_ppid(struct task_struct *t) { return BPF_CORE_READ(t, real_parent, tgid); }
ACCESSOR u32 guard_task_exit_code(struct task_struct *t) { return BPF_CORE_READ(t, exit_code); }

// Threads still alive in t's thread group; do_exit() decrements it before the
// sched_process_exit tracepoint, so 0 there means the whole process is gone.
ACCESSOR s32 guard_task_live_threads(struct task_struct *t)
{
	return BPF_CORE_READ(t, signal, live.counter);
}

// What confines the task (sandbox truth, read at exec): its seccomp mode
// (SECCOMP_MODE_*), no_new_privs (PFA_NO_NEW_PRIVS, bit 0 of atomic_flags), and the
// inode numbers of its network, mount and user namespaces (0 when unreadable).
ACCESSOR u32 guard_task_seccomp_mode(struct task_struct *t) { return BPF_CORE_READ(t, seccomp.mode); }
ACCESSOR u32 guard_task_no_new_privs(struct task_struct *t) { return BPF_CORE_READ(t, atomic_flags) & 1; }
ACCESSOR u32 guard_task_net_ns(struct task_struct *t) { return BPF_CORE_READ(t, nsproxy, net_ns, ns.inum); }
ACCESSOR u32 guard_task_mnt_ns(struct task_struct *t) { return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum); }
ACCESSOR u32 guard_task_user_ns(struct task_struct *t) { return BPF_CORE_READ(t, cred, user_ns, ns.inum); }

ACCESSOR u64 guard_task_arg_start(struct task_struct *t) { return BPF_CORE_READ(t, mm, arg_start); }
ACCESSOR u64 guard_task_arg_end(struct task_struct *t) { return BPF_CORE_READ(t, mm, arg_end); }

ACCESSOR u64 guard_task_env_start(struct task_struct *t) { return BPF_CORE_READ(t, mm, env_start); }
ACCESSOR u64 guard_task_env_end(struct task_struct *t) { return BPF_CORE_READ(t, mm, env_end); }

ACCESSOR struct file *guard_binprm_file(struct linux_binprm *b) { return BPF_CORE_READ(b, file); }

// An interpreter runs the file (a `#!` script, binfmt_misc): binfmt_script and
// binfmt_misc replace bprm->interp, which starts as bprm->filename.
ACCESSOR u32 guard_binprm_interpreted(struct linux_binprm *b)
{
	return BPF_CORE_READ(b, filename) != BPF_CORE_READ(b, interp);
}

// The open file behind descriptor fd of task t, or NULL.
ACCESSOR struct file *guard_task_fd_file(struct task_struct *t, u32 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt)
		return 0;
	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// ---- an open's arguments at its exit (the default build) ----
//
// The registers a thread entered a system call with are saved at the top of its
// kernel stack and, for the open calls, still hold the arguments when the call
// exits: the default build reads them there (bpf_task_pt_regs, Linux 5.15; every
// kernel with bpf_loop has it) instead of noting them at each open's entry, so no
// program runs at an open's entry. The compat build notes them at entry.
#ifndef GUARD_COMPAT
#if defined(GUARD_ARCH_X86_64)
struct pt_regs {
	unsigned long r10;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
} __co_re;
#elif defined(GUARD_ARCH_AARCH64)
struct pt_regs {
	u64 regs[31];
	u64 orig_x0;
} __co_re;
#else
#error "guard-ebpf reads system call arguments on x86_64 and aarch64 only"
#endif

// The first four arguments of the current task's system call into a[0..4].
ACCESSOR void guard_syscall_args(u64 *a)
{
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#if defined(GUARD_ARCH_X86_64)
	a[0] = r->di;
	a[1] = r->si;
	a[2] = r->dx;
	a[3] = r->r10; // the fourth argument of a system call (rcx holds the return address)
#else
	a[0] = r->orig_x0; // x0 holds the return value by the call's exit
	a[1] = r->regs[1];
	a[2] = r->regs[2];
	a[3] = r->regs[3];
#endif
}

// The current task's fields through its BTF pointer (bpf_get_current_task_btf,
// Linux 5.11): plain loads, which the verifier makes fault-safe, instead of a
// helper call per field. On every open's exit.
ACCESSOR u64 guard_current_start_ns(void)
{
	return bpf_get_current_task_btf()->start_time;
}

// guard_task_fd_file of the current task for a descriptor its system call just
// returned: without the bound check (a descriptor the call installed lies within
// its table, which only ever grows).
ACCESSOR struct file *guard_current_new_fd_file(u32 fd)
{
	struct file **fds = bpf_get_current_task_btf()->files->fdt->fd;
	struct file *f = 0;
	if (fds)
		bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// The OpenCall (guard-common) of system call number nr, or -1 for another call.
ACCESSOR s32 guard_open_call(s32 nr)
{
	switch (nr) {
#if defined(GUARD_ARCH_X86_64)
	case 2:
		return 0; // open
	case 85:
		return 3; // creat
	case 257:
		return 1; // openat
#else
	case 56:
		return 1; // openat
#endif
	case 437:
		return 2; // openat2, the same number on every architecture
	default:
		return -1;
	}
}
#endif

// ---- path resolution ----
//
// guard_path_walk writes the absolute path of (mnt, dentry) into buf so that it
// ends just before buf[end], walking dentries to the root and crossing mount
// points the way d_path() does. It returns the offset where the path starts, with
// bit 31 set when the walk stopped early (deeper than `depth` components or longer
// than `end` bytes): then buf holds the last components only.
//
// The walk body runs under bpf_loop, so the verifier checks it once instead of once
// per level (an open-coded loop over levels with a mount-crossing branch made the
// verifier's state count explode). Offsets are masked with WALK_MASK.

#define WALK_TRUNCATED 0x80000000u
#define NAME_MAX_LEN 255u

// GUARD_EACH(n, step, ctx) runs step(i, ctx) for i in 0..n until it returns
// non-zero and gives how many iterations ran, as bpf_loop does. The compat build
// (kernels without bpf_loop: see guard-ebpf/src/each.rs) runs it as a bounded loop
// with smaller counts.
#ifdef GUARD_COMPAT
#define GUARD_EACH(n, step, ctx)                                                       \
	({                                                                             \
		u32 __i = 0;                                                           \
		for (; __i < (n); __i++)                                               \
			if (step(__i, ctx)) {                                          \
				__i++;                                                 \
				break;                                                 \
			}                                                              \
		(long)__i;                                                             \
	})
#else
#define GUARD_EACH(n, step, ctx) bpf_loop(n, step, ctx, 0)
#endif
// Levels and mount crossings a walk takes at most; deeper, the path is truncated.
#define WALK_STEPS 160u
// Offsets into the walk buffer are masked with this; the buffer must be at least
// WALK_MASK + 1 + NAME_MAX_LEN bytes (guard's is twice WALK_MASK + 1).
#define WALK_MASK 8191u

struct walk {
	struct dentry *d;
	struct mount *mnt;
	// The root of the mount being walked (mnt->mnt.mnt_root), read once per mount.
	struct dentry *root;
	u8 *buf;
	u32 off;
	u32 depth;
	u32 truncated;
};

// A dentry's parent and name as they lie in struct dentry: d_name right after
// d_parent, as in every kernel guard supports. Read with one helper call when the
// running kernel's layout says so (checked against its BTF at load time), else
// field by field.
struct parent_name {
	struct dentry *parent;
	struct qstr___raw {
		u32 hash;
		u32 len;
		const unsigned char *name;
	} name;
};

static __attribute__((always_inline)) int read_parent_name(struct dentry *d,
							     struct parent_name *pn)
{
	if (bpf_core_field_offset(struct dentry, d_name) ==
	    bpf_core_field_offset(struct dentry, d_parent) + sizeof(void *))
		return bpf_probe_read_kernel(pn, sizeof(*pn),
					     (u8 *)d + bpf_core_field_offset(struct dentry, d_parent));
	pn->parent = BPF_CORE_READ(d, d_parent);
	pn->name.len = BPF_CORE_READ(d, d_name.len);
	pn->name.name = BPF_CORE_READ(d, d_name.name);
	return 0;
}

static long walk_step(u32 index, void *data)
{
	// Copy the walk state into locals first: inside BPF_CORE_READ every member
	// access becomes a CO-RE relocation, and `struct walk` is ours, not the kernel's.
	struct walk *w = data;
	struct dentry *d = w->d;
	struct mount *mnt = w->mnt;
	struct dentry *root = w->root;
	struct parent_name pn;
	if (read_parent_name(d, &pn))
		return 1;
	struct dentry *parent = pn.parent;

	if (d == root || d == parent) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (d != root || up == mnt || !up)
			return 1; // the root of the namespace (or of a detached tree)
		w->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->root = BPF_CORE_READ(up, mnt.mnt_root);
		return 0;
	}
	if (w->depth == 0) {
		w->truncated = 1;
		return 1;
	}
	w->depth--;

	u32 len = pn.name.len;
	const unsigned char *name = pn.name.name;
	if (len > NAME_MAX_LEN)
		len = NAME_MAX_LEN;
	u32 off = w->off;
	if (off < len + 1) {
		w->truncated = 1;
		return 1;
	}
	off -= len;
	u8 *buf = w->buf;
	bpf_probe_read_kernel(&buf[off & WALK_MASK], len & NAME_MAX_LEN, name);
	off -= 1;
	buf[off & WALK_MASK] = '/';
	w->off = off;
	w->d = parent;
	return 0;
}

#ifdef GUARD_COMPAT
// The compat build's walk. A bounded loop in place had the verifier check its body
// once per level on every path to each call (60% of the open exit's verified
// instructions on Linux 5.10, ten seconds of its start under emulation): its state
// lives in a per-CPU map instead, and core_read.rs runs its steps as chunks of a
// global function (guard-ebpf/src/each.rs), which the verifier checks once. The
// step sees the path scratch (every walk's buffer: core_read.rs says so).
struct walk_state {
	struct dentry *d;
	struct mount *mnt;
	struct dentry *root;
	u32 off;
	u32 depth;
	u32 truncated;
	// Set when a step ended the walk (else it ran out of steps).
	u32 stopped;
};

// guard-ebpf/src/maps.rs: the per-CPU map of one walk_state.
extern char WALK[];
// guard-ebpf/src/core_read.rs: steps base..base + WALK_CHUNK (below n) of the walk in
// WALK; non-zero when it is over.
extern long guard_each_walk(u32 base, u32 n);
// The steps guard_each_walk runs a call (its `chunk::<8>`): change both.
#define WALK_CHUNK 8u

// One step of the walk in `s`, writing into `buf`; non-zero when the walk is over.
ACCESSOR long guard_walk_step(struct walk_state *s, u8 *buf)
{
	struct walk w = {
		.d = s->d,
		.mnt = s->mnt,
		.root = s->root,
		.buf = buf,
		.off = s->off,
		.depth = s->depth,
		.truncated = s->truncated,
	};
	long stop = walk_step(0, &w);
	s->d = w.d;
	s->mnt = w.mnt;
	s->root = w.root;
	s->off = w.off;
	s->depth = w.depth;
	s->truncated = w.truncated;
	s->stopped = stop != 0;
	return stop;
}

ACCESSOR u32 guard_path_walk(struct path *p, u8 *buf, u32 end, u32 depth)
{
	u32 zero = 0;
	struct walk_state *s = bpf_map_lookup_elem(WALK, &zero);
	if (!s)
		return end | WALK_TRUNCATED;
	s->d = BPF_CORE_READ(p, dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(p, mnt);
	s->mnt = (void *)((u8 *)vmnt - bpf_core_field_offset(struct mount, mnt));
	s->root = BPF_CORE_READ(vmnt, mnt_root);
	s->off = end;
	s->depth = depth;
	s->truncated = 0;
	s->stopped = 0;
	if (!s->d)
		return end | WALK_TRUNCATED;
	for (u32 base = 0; base < WALK_STEPS; base += WALK_CHUNK)
		if (guard_each_walk(base, WALK_STEPS))
			break;
	u32 truncated = s->truncated || !s->stopped;
	u32 off = s->off;
	if (off == end) {
		// the root itself
		off -= 1;
		buf[off & WALK_MASK] = '/';
	}
	return off | (truncated ? WALK_TRUNCATED : 0);
}
#else
ACCESSOR u32 guard_path_walk(struct path *p, u8 *buf, u32 end, u32 depth)
{
	struct walk w = {};
	w.d = BPF_CORE_READ(p, dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(p, mnt);
	w.mnt = (void *)((u8 *)vmnt - bpf_core_field_offset(struct mount, mnt));
	w.root = BPF_CORE_READ(vmnt, mnt_root);
	w.buf = buf;
	w.off = end;
	w.depth = depth;
	if (!w.d)
		return end | WALK_TRUNCATED;
	long loops = GUARD_EACH(WALK_STEPS, walk_step, &w);
	if (loops >= WALK_STEPS)
		w.truncated = 1; // more mount crossings than steps: give what we have
	u32 off = w.off;
	if (off == end) {
		// the root itself
		off -= 1;
		buf[off & WALK_MASK] = '/';
	}
	return off | (w.truncated ? WALK_TRUNCATED : 0);
}
#endif

ACCESSOR u32 guard_file_path(struct file *f, u8 *buf, u32 end, u32 depth)
{
	struct path p;
	if (bpf_core_read(&p, sizeof(p), &f->f_path))
		return WALK_TRUNCATED | end;
	return guard_path_walk(&p, buf, end, depth);
}

ACCESSOR u32 guard_task_cwd_path(struct task_struct *t, u8 *buf, u32 end, u32 depth)
{
	struct path p;
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	if (!fs || bpf_core_read(&p, sizeof(p), &fs->pwd))
		return WALK_TRUNCATED | end;
	return guard_path_walk(&p, buf, end, depth);
}

// ---- file names, for rule lookups ----

// Copies the name (last component) of dentry d into dst, at most `max` bytes and
// never more than 253 (what a rule key holds after its two header bytes); returns
// its length.
//
// The barrier keeps the clamp a compare the verifier can follow. Without it LLVM
// merges this clamp with a caller's smaller one (exec names are cut to 15) into a
// single compare with the constant in the destination register, which verifiers
// before ~6.7 cannot use to bound the other register: Linux 6.1 then walks a dead
// branch with impossible bounds (umin 253 > umax 14) and rejects the program with
// "R1 invalid mem access 'scalar'" (see docs/kernels.md).
ACCESSOR u32 guard_dentry_name(struct dentry *d, u8 *dst, u32 max)
{
	u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	if (max > 253)
		max = 253;
	barrier_var(max);
	if (len > max)
		len = max;
	barrier_var(len);
	if (bpf_probe_read_kernel(dst, len & 255, name))
		return 0;
	return len;
}

ACCESSOR struct dentry *guard_file_dentry(struct file *f) { return BPF_CORE_READ(f, f_path.dentry); }

struct rev {
	u8 *dst;
	const u8 *src;
	u32 len;
};

static long rev_step(u32 i, void *data)
{
	struct rev *r = data;
	u8 *dst = r->dst;
	const u8 *src = r->src;
	u32 len = r->len;
	if (i >= len || len > 253)
		return 1;
	// Masked indexes: the caller's buffers have 256 bytes of slack past any masked
	// offset, so the verifier can prove every access in bounds.
	dst[i & 255] = src[(len - 1 - i) & 255];
	return 0;
}

// dst[i] = src[len - 1 - i] for i < len (len <= 253): the file name reversed, so
// that suffix patterns (`*.pem`) become prefixes an LPM trie can match. Both
// buffers need 256 bytes of room past any offset masked with 255.
ACCESSOR void guard_reverse(u8 *dst, const u8 *src, u32 len)
{
	struct rev r = { .dst = dst, .src = src, .len = len };
	GUARD_EACH(253, rev_step, &r);
}

// ---- for the BPF-LSM hooks ----

// A CO-RE "flavor" of struct file (libbpf and aya ignore the ___suffix when
// matching): the minimal view above has no f_flags.
struct file___flags {
	unsigned int f_flags;
} __co_re;

ACCESSOR u32 guard_file_flags(struct file *f)
{
	return BPF_CORE_READ((struct file___flags *)f, f_flags);
}

// ---- for the BPF-LSM path hooks (CONFIG_SECURITY_PATH) ----

// The absolute path of a kernel `struct path`, like guard_file_path.
ACCESSOR u32 guard_path_of(struct path *p, u8 *buf, u32 end, u32 depth)
{
	return guard_path_walk(p, buf, end, depth);
}

// The absolute path of the entry `d` in directory `dir`, the way the path_* hooks
// name it (d may be negative: the file is about to be created). The name goes at
// the end first, then the directory is walked to end just before its slash.
ACCESSOR u32 guard_dir_entry_path(struct path *dir, struct dentry *d, u8 *buf, u32 end,
				  u32 depth)
{
	u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	if (len > NAME_MAX_LEN)
		len = NAME_MAX_LEN;
	barrier_var(len);
	if (end < len + 2)
		return end | WALK_TRUNCATED;
	u32 slash = end - len - 1;
	bpf_probe_read_kernel(&buf[(slash + 1) & WALK_MASK], len & NAME_MAX_LEN, name);
	buf[slash & WALK_MASK] = '/';
	u32 walk = guard_path_walk(dir, buf, slash, depth);
	u32 start = walk & ~WALK_TRUNCATED;
	// The directory is the root: its walk wrote a lone "/" before our slash.
	if (start + 1 == slash)
		start = slash;
	return start | (walk & WALK_TRUNCATED);
}

// The path of `d`, an entry somewhere on the mount of `on` (the source of a hard
// link: the kernel hands path_link the old dentry without its mount, and a link
// never crosses mounts).
ACCESSOR u32 guard_dentry_path_on(struct path *on, struct dentry *d, u8 *buf, u32 end, u32 depth)
{
	struct path p;
	p.mnt = BPF_CORE_READ(on, mnt);
	p.dentry = d;
	return guard_path_walk(&p, buf, end, depth);
}

ACCESSOR struct dentry *guard_path_dentry(struct path *p) { return BPF_CORE_READ(p, dentry); }

// ---- self-protection: which process a /proc file or pidfd is about, and whether
// a dentry lies in guard's pin directory ----

#define PROC_SUPER_MAGIC 0x9fa0
#define PIDFS_MAGIC 0x50494446
#define ANON_INODE_FS_MAGIC 0x09041934
#define S_IFMT 00170000
#define S_IFDIR 0040000
#define S_IFREG 0100000

struct super_block {
	unsigned long s_magic;
	unsigned int s_dev;
} __co_re;

struct dentry___inode {
	struct inode *d_inode;
	struct dentry *d_parent;
} __co_re;

struct upid {
	int nr;
} __co_re;

struct pid {
	struct upid numbers[1];
} __co_re;

// fs/proc/internal.h: every /proc inode is the vfs_inode of one of these; `pid` is
// set for the entries under /proc/<pid>/ (and /proc/<pid>/task/<tid>/).
struct proc_inode {
	struct pid *pid;
	struct inode vfs_inode;
} __co_re;

struct file___private {
	void *private_data;
} __co_re;

struct vfsmount___sb {
	struct super_block *mnt_sb;
} __co_re;

static __attribute__((always_inline)) struct inode *dentry_inode(struct dentry *d)
{
	return BPF_CORE_READ((struct dentry___inode *)d, d_inode);
}

// The pid (in the initial namespace: numbers[0]) of the task a /proc inode belongs
// to, or 0 when the inode is not procfs or belongs to no task (/proc/meminfo).
static __attribute__((always_inline)) u32 proc_inode_pid(struct inode *inode)
{
	if (!inode || BPF_CORE_READ(inode, i_sb, s_magic) != PROC_SUPER_MAGIC)
		return 0;
	struct proc_inode *pi =
		(void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	struct pid *pid = BPF_CORE_READ(pi, pid);
	if (!pid)
		return 0;
	return BPF_CORE_READ(pid, numbers[0].nr);
}

// For an opened file: the /proc owner's pid (0 when none), whether it is a
// directory (bit 31 of the result).
ACCESSOR u32 guard_file_proc_pid(struct file *f)
{
	struct inode *inode = dentry_inode(BPF_CORE_READ(f, f_path.dentry));
	u32 pid = proc_inode_pid(inode);
	if (!pid)
		return 0;
	u32 dir = (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFDIR ? 0x80000000u : 0;
	return pid | dir;
}

// The pid a pidfd (pidfs or anonymous inode) or a /proc/<pid> directory descriptor
// refers to; 0 for other files.
ACCESSOR u32 guard_file_target_pid(struct file *f)
{
	struct inode *inode = dentry_inode(BPF_CORE_READ(f, f_path.dentry));
	if (!inode)
		return 0;
	unsigned long magic = BPF_CORE_READ(inode, i_sb, s_magic);
	if (magic == PROC_SUPER_MAGIC)
		return proc_inode_pid(inode);
	if (magic != PIDFS_MAGIC && magic != ANON_INODE_FS_MAGIC)
		return 0;
	struct pid *pid = BPF_CORE_READ((struct file___private *)f, private_data);
	if (!pid)
		return 0;
	return BPF_CORE_READ(pid, numbers[0].nr);
}

// Up to 8 bytes of a dentry's name, zero-padded, when it is 7 bytes or shorter
// (the /proc names tracked processes may read are); else 0.
ACCESSOR u64 guard_dentry_short_name(struct dentry *d)
{
	u64 out = 0;
	if (BPF_CORE_READ(d, d_name.len) > 7)
		return 0;
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	bpf_probe_read_kernel_str(&out, sizeof(out), name);
	return out;
}

// Whether d is the directory (dev, ino) or lies at most 4 levels below it.
ACCESSOR u32 guard_dentry_under(struct dentry *d, u32 dev, u64 ino)
{
	if (!ino || !d)
		return 0;
	// A dentry's parents are on its own file system: one on another device is not
	// under the directory (the case of nearly every file, decided in three reads
	// instead of a walk).
	struct inode *first = dentry_inode(d);
	if (first && BPF_CORE_READ(first, i_sb, s_dev) != dev)
		return 0;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		if (!d)
			return 0;
		struct inode *inode = dentry_inode(d);
		if (inode && BPF_CORE_READ(inode, i_ino) == ino &&
		    BPF_CORE_READ(inode, i_sb, s_dev) == dev)
			return 1;
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		if (parent == d)
			return 0;
		d = parent;
	}
	return 0;
}

// The device of the file system a mount shows.
ACCESSOR u32 guard_mount_dev(struct vfsmount *m)
{
	return BPF_CORE_READ((struct vfsmount___sb *)m, mnt_sb, s_dev);
}

// ---- for the routes ----

// Whether file f has a name in the file system: 1 for a pseudo file (its dentry
// is its own parent without being a mount's root: a memfd, named by its dentry
// name "memfd:NAME"), 2 for a file with no links left (deleted, or O_TMPFILE never
// linked), 0 otherwise.
ACCESSOR u32 guard_file_fileless(struct file *f)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct dentry *root = BPF_CORE_READ(f, f_path.mnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (parent == d)
		return d != root ? 1 : 0;
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	return inode && BPF_CORE_READ(inode, i_nlink) == 0 ? 2 : 0;
}

// The size in bytes of the file f.
ACCESSOR u64 guard_file_size(struct file *f)
{
	return BPF_CORE_READ(f, f_path.dentry, d_inode, i_size);
}

// ---- identity: the (device, inode) of a dentry and its parent, for the walk
// against the identity rules ----

// The inode number of d's inode in *ino and its file system's device (the kernel's
// MKDEV encoding) as the result; 0 and *ino = 0 for a negative dentry.
ACCESSOR u32 guard_dentry_ident(struct dentry *d, u64 *ino)
{
	struct inode *inode = dentry_inode(d);
	if (!inode) {
		*ino = 0;
		return 0;
	}
	*ino = BPF_CORE_READ(inode, i_ino);
	return BPF_CORE_READ(inode, i_sb, s_dev);
}

// The link count of d's inode when it is a regular file, else 0.
ACCESSOR u32 guard_dentry_links(struct dentry *d)
{
	struct inode *inode = dentry_inode(d);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return 0;
	return BPF_CORE_READ(inode, i_nlink);
}

// The file type of d's inode: its mode's S_IFMT bits shifted down (4 a directory,
// 8 a regular file), or 0 for a negative dentry.
ACCESSOR u32 guard_dentry_type(struct dentry *d)
{
	struct inode *inode = dentry_inode(d);
	if (!inode)
		return 0;
	return (BPF_CORE_READ(inode, i_mode) & S_IFMT) >> 12;
}

// d's parent, or NULL when d is the root of its file system (its own parent).
ACCESSOR struct dentry *guard_dentry_up(struct dentry *d)
{
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	return parent == d ? 0 : parent;
}

// ---- Unix domain sockets ----

struct sock_common {
	unsigned short skc_family;
} __co_re;

struct sock {
	struct sock_common __sk_common;
	unsigned short sk_type;
	struct pid *sk_peer_pid;
	const struct cred *sk_peer_cred;
} __co_re;

struct socket {
	struct sock *sk;
} __co_re;

struct unix_sock {
	struct path path;
	struct sock *peer;
} __co_re;

#define S_IFSOCK_MODE 0140000
#define AF_UNIX_FAMILY 1

// The socket behind file f when it is an AF_UNIX socket, else NULL.
ACCESSOR struct sock *guard_file_unix_sock(struct file *f)
{
	unsigned short mode = BPF_CORE_READ(f, f_path.dentry, d_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK_MODE)
		return 0;
	struct socket *s = BPF_CORE_READ((struct file___private *)f, private_data);
	struct sock *sk = BPF_CORE_READ(s, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX_FAMILY)
		return 0;
	return sk;
}

ACCESSOR u32 guard_sock_type(struct sock *sk) { return BPF_CORE_READ(sk, sk_type); }

// The process on the other side of a connected stream socket, as SO_PEERCRED
// names it (for a client, the listener: the pid that called listen(2)), in the
// initial pid namespace; 0 when none.
ACCESSOR u32 guard_sock_peer_pid(struct sock *sk)
{
	struct pid *p = BPF_CORE_READ(sk, sk_peer_pid);
	if (!p)
		return 0;
	return BPF_CORE_READ(p, numbers[0].nr);
}

// That process's effective uid then; (u32)-1 when unknown.
ACCESSOR u32 guard_sock_peer_uid(struct sock *sk)
{
	const struct cred *c = BPF_CORE_READ(sk, sk_peer_cred);
	if (!c)
		return (u32)-1;
	return BPF_CORE_READ(c, euid.val);
}

// The socket a connected AF_UNIX socket is connected to (for a stream socket, the
// server side of the connection, which carries the listener's path), or NULL.
ACCESSOR struct sock *guard_unix_peer(struct sock *sk)
{
	return BPF_CORE_READ((struct unix_sock *)sk, peer);
}

// The socket file an AF_UNIX socket is bound to: a pointer to its `struct path`
// inside the kernel's unix_sock, or NULL when it has none (an abstract name, an
// unnamed socket).
ACCESSOR struct path *guard_unix_path(struct sock *sk)
{
	if (!sk || !BPF_CORE_READ((struct unix_sock *)sk, path.dentry))
		return 0;
	return __builtin_preserve_access_index(&((struct unix_sock *)sk)->path);
}

// The `struct sock` of a `struct socket` (the BPF-LSM unix_may_send hook's
// arguments).
ACCESSOR struct sock *guard_socket_sock(struct socket *s) { return BPF_CORE_READ(s, sk); }

// What names an opened file for the repeat cache (file.rs, repeat.rs): its dentry
// and mount, the dentry's parent, name hash and length, and its inode number. All
// zero when the file cannot be read.
struct repeat_key {
	u64 dentry;
	u64 mnt;
	u64 parent;
	u64 name;
	u64 ino;
};

ACCESSOR void guard_file_repeat_key(struct file *f, struct repeat_key *k)
{
	struct path p;
	if (bpf_core_read(&p, sizeof(p), &f->f_path) || !p.dentry) {
		k->dentry = 0;
		return;
	}
	struct dentry *d = p.dentry;
	k->dentry = (u64)d;
	k->mnt = (u64)p.mnt;
	struct parent_name pn;
	if (read_parent_name(d, &pn)) {
		k->dentry = 0;
		return;
	}
	k->parent = (u64)pn.parent;
	k->name = ((u64)pn.name.hash << 32) | pn.name.len;
	k->ino = BPF_CORE_READ(d, d_inode, i_ino);
}
