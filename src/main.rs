use std::process::ExitCode;

fn main() -> ExitCode {
    cfaccess::main()
}
