//! Loops the verifier checks once per program, not once per iteration.
//!
//! The default build runs each loop body as a `bpf_loop` callback (Linux 5.17): the
//! verifier checks the callback once, whatever the count, and its state comes back
//! through per-CPU maps, never as registers the caller's paths would multiply.
//!
//! The `compat` build (feature `compat`, for kernels without `bpf_loop` or without
//! callbacks as subprograms: Linux 5.10-5.16) gets the same property from global
//! functions (Linux 5.6), which the verifier also checks once, with any arguments:
//! [`each!`] defines one per loop that runs [`CHUNK`] iterations of the body, and
//! calls it chunk by chunk in a bounded loop (Linux 5.3). The caller's loop is a call
//! and a test per chunk; a body that stops the loop stops it within its chunk.
use core::ffi::c_void;

/// A loop body: iteration `index`; returns 0 to go on, 1 to stop.
pub(crate) type Step = extern "C" fn(index: u32, ctx: *mut c_void) -> i64;

/// Runs `step` for iterations `0..n` until it returns non-zero, under `bpf_loop`.
#[cfg(not(feature = "compat"))]
#[inline(always)]
pub(crate) fn run(n: u32, step: Step) {
    // SAFETY: the bodies find their state in per-CPU maps; no context is passed.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(n, step as *mut c_void, core::ptr::null_mut(), 0);
    }
}

/// Iterations one global function runs in the compat build: the verifier checks a
/// body this many times per program; the caller's loop has `n / CHUNK` iterations,
/// each a state the verifier keeps until the loop ends (at most 8,192 in all).
#[cfg(feature = "compat")]
pub(crate) const CHUNK: u32 = 128;

/// A global function of [`each!`]: iterations `base..base + CHUNK` below `n`;
/// non-zero when the loop is over.
#[cfg(feature = "compat")]
pub(crate) type Chunk = extern "C" fn(base: u32, n: u32) -> i64;

/// The body of a [`Chunk`]: `step` for iterations `base..base + K` below `n` (`K`
/// is [`CHUNK`], or less for a shorter loop).
#[cfg(feature = "compat")]
#[inline(always)]
pub(crate) fn chunk<const K: u32>(base: u32, n: u32, step: Step) -> i64 {
    let mut i = 0;
    while i < K {
        let index = base.wrapping_add(i);
        if index >= n || step(index, core::ptr::null_mut()) != 0 {
            return 1;
        }
        i += 1;
    }
    0
}

/// Runs `step` for iterations `0..N` in place, until it returns non-zero.
#[cfg(feature = "compat")]
#[inline(always)]
pub(crate) fn inline<const N: u32>(step: Step) {
    let mut i = 0;
    while i < N {
        if step(i, core::ptr::null_mut()) != 0 {
            return;
        }
        i += 1;
    }
}

/// Runs `chunk` for iterations `0..n` until it says the loop is over.
#[cfg(feature = "compat")]
#[inline(always)]
pub(crate) fn run_chunks<const K: u32>(n: u32, chunk: Chunk) {
    let mut base = 0;
    while base < n {
        if chunk(base, n) != 0 {
            return;
        }
        base += K;
    }
}

/// `each!(n, step, global)`: runs loop body `step` ([`Step`]) for iterations `0..n`
/// until it returns non-zero: a `bpf_loop` callback in the default build; in the
/// compat build, chunks of a global function named `global` (unique in the object).
/// `each!(max => n, step, global, chunk)`: iterations `0..n` of a loop of at most
/// `max` (a constant; `n` may be known only when the program runs).
/// `each!(n, step)`, for a few iterations inside a function the verifier checks
/// once anyway (a global one): in the compat build, a bounded loop in place, which
/// costs the call chain no frame.
macro_rules! each {
    ($n:expr, $step:path) => {{
        #[cfg(not(feature = "compat"))]
        {
            $crate::each::run($n, $step);
        }
        #[cfg(feature = "compat")]
        {
            $crate::each::inline::<{ $n }>($step);
        }
    }};
    ($n:expr, $step:path, $global:ident) => {
        $crate::each::each!($n, $step, $global, $crate::each::CHUNK)
    };
    ($n:expr, $step:path, $global:ident, $chunk:expr) => {
        $crate::each::each!($n => $n, $step, $global, $chunk)
    };
    ($max:expr => $n:expr, $step:path, $global:ident, $chunk:expr) => {{
        #[cfg(not(feature = "compat"))]
        {
            $crate::each::run($n, $step);
        }
        #[cfg(feature = "compat")]
        {
            const K: u32 = if $max < $chunk { $max } else { $chunk };
            #[unsafe(no_mangle)]
            #[inline(never)]
            extern "C" fn $global(base: u32, n: u32) -> i64 {
                $crate::each::chunk::<K>(base, n, $step)
            }
            $crate::each::run_chunks::<K>($n, $global);
        }
    }};
}
pub(crate) use each;
