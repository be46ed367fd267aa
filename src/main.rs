/// mimalloc: Pingora's many small per-request allocations are measurably cheaper with it than
/// with the system allocator (see `docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tune_memory();
    ssv_ha::cli::main()
}

/// mimalloc's `purge_delay` option. libmimalloc-sys names its neighbours
/// (`mi_option_eager_commit_delay` = 14, `mi_option_use_numa_nodes` = 16) but not this one; the
/// unit test below checks the number against the option's default in the bundled mimalloc (1000
/// ms, set in its `options.c`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// Two settings for a process that holds thousands of long-lived connections (measured with idle
/// WebSockets through ssv-ha, see `docs/benchmarks.md`):
///
/// - No transparent huge pages. Where the kernel uses them unasked (`enabled` = `always`), each
///   session that touches a few bytes of a fresh buffer makes 2 MiB resident instead of 4 KiB:
///   2000 sessions took 506 MB with them, 143 MB without.
/// - Freed memory goes back to the kernel after 100 ms, not mimalloc's default of a second (after
///   which it purges only when it next collects). Otherwise buffers that Pingora allocates per connection come
///   back dirty and fully resident: a process that held 3000 sessions six times over grew from
///   198 MB to 446 MB; with this it stays at 198 MB. 0 and 10 ms did as well for memory but
///   purged so often that 1 MB responses lost up to a quarter of their rate.
fn tune_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and reads or writes none of our memory. Its
    // failure (an old kernel) leaves the kernel's default, which is only a matter of memory use.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // An operator's own MIMALLOC_PURGE_DELAY wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option takes plain integers; mimalloc reads it when it purges.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_number_is_purge_delay() {
        // Its default is 1000 ms; the neighbouring options default to 1 and 0.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(value, 1000);
        }
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}
