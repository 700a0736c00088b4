//! Allocates and touches memory in 1 MiB steps until an allocation is refused (which, in
//! Rust, aborts: the host sees a trap after a denied `memory.grow`).
fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        block[(1 << 20) - 1] = 1;
        blocks.push(std::hint::black_box(block));
        if blocks.len() % 16 == 0 {
            eprintln!("allocated {} MiB", blocks.len());
        }
    }
}
