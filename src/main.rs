/// mimalloc: Pingora's many small per-request allocations are measurably cheaper with it than
/// with the system allocator (see the benchmark section of the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ssv_ha::cli::main()
}
