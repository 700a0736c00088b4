//! A WASI preview 2 command component: greets, echoes its arguments and GREETING, and exits
//! with the code in EXIT_CODE (default 0).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    println!("{greeting} from a component! args={args:?}");
    if let Some(code) = std::env::var("EXIT_CODE").ok().and_then(|c| c.parse().ok()) {
        std::process::exit(code);
    }
}
