//! Writes every harness's seeds into `DIR/TARGET/seed-N`, the corpus
//! directories cargo-fuzz starts from (`fuzz/run.sh` calls this).

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: ringi-fuzz-seeds DIR");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    for target in ringi_fuzz::targets() {
        let out = dir.join(target.name);
        if let Err(e) = std::fs::create_dir_all(&out) {
            eprintln!("ringi-fuzz-seeds: {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        for (i, seed) in (target.seeds)().iter().enumerate() {
            let path = out.join(format!("seed-{i}"));
            if let Err(e) = std::fs::write(&path, seed) {
                eprintln!("ringi-fuzz-seeds: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
