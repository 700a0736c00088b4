//! `wat2wasm IN.wat OUT.wasm`: assembles a text-format guest with the `wat` crate.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        eprintln!("usage: wat2wasm IN.wat OUT.wasm");
        std::process::exit(2);
    };
    match wat::parse_file(input) {
        Ok(bytes) => std::fs::write(output, bytes).unwrap_or_else(|e| panic!("{output}: {e}")),
        Err(e) => {
            eprintln!("{input}: {e}");
            std::process::exit(1);
        }
    }
}
