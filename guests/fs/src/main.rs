//! Filesystem probe: `fs cat PATH`, `fs write PATH TEXT`, `fs ls DIR`, `fs stdin` (echo stdin).
//! Failures print the OS error and exit 1, so tests can see exactly what was denied.
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("cat") if args.len() == 3 => std::fs::read_to_string(&args[2]).map(|s| print!("{s}")),
        Some("write") if args.len() == 4 => std::fs::write(&args[2], &args[3]).map(|()| println!("wrote {}", args[2])),
        Some("stdin") if args.len() == 2 => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).map(|_| print!("stdin: {input}"))
        }
        Some("ls") if args.len() == 3 => std::fs::read_dir(&args[2]).map(|entries| {
            let mut names: Vec<String> =
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }),
        _ => {
            eprintln!("usage: fs cat PATH | fs write PATH TEXT | fs ls DIR | fs stdin");
            exit(2);
        }
    };
    if let Err(err) = result {
        eprintln!("fs {}: {err}", args[1]);
        exit(1);
    }
}
