//! The `ops` binary: parse, run, print; errors on stderr with a non-zero exit code (2 for a
//! command line that cannot work, 1 for everything else).

use clap::Parser;
use ops::cli::Cli;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let json = cli.json;
    match ops::run(cli).await {
        Ok(out) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                );
            } else {
                print!("{}", out.text);
            }
        }
        Err(e) => {
            eprintln!("ops: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
