//! The smallest useful guest: one line on stdout.
fn main() {
    println!("Hello from Spore!");
}
