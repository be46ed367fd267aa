fn main() -> std::process::ExitCode {
    ssv_ha::cli::main()
}
