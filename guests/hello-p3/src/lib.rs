//! A WASI 0.3 command: `wasi:cli/run@0.3.0`, everything through 0.3 interfaces. Prints a
//! greeting, its arguments and `$GREETING`; with a directory preopened at `/data`, the contents
//! of `/data/in.txt` (wasi:filesystem@0.3.0); with an argument `--exit=N`, exits with code N
//! (`exit-with-code`).

use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

wasip3::cli::command::export!(Hello);

struct Hello;

impl wasip3::exports::cli::run::Guest for Hello {
    async fn run() -> Result<(), ()> {
        let args = wasip3::cli::environment::get_arguments();
        let env = wasip3::cli::environment::get_environment();
        let greeting = env.iter().find(|(k, _)| k == "GREETING").map(|(_, v)| v.as_str()).unwrap_or("-");
        let mut text = format!("Hello from WASI 0.3! args={args:?} GREETING={greeting}\n");
        if let Some(contents) = read_data_file().await {
            text.push_str(&format!("in.txt: {contents}"));
        }
        print(text).await?;
        if let Some(code) = args.iter().find_map(|a| a.strip_prefix("--exit=")?.parse::<u8>().ok()) {
            wasip3::cli::exit::exit_with_code(code);
        }
        Ok(())
    }
}

/// `/data/in.txt`, when `/data` is preopened.
async fn read_data_file() -> Option<String> {
    let dirs = wasip3::filesystem::preopens::get_directories();
    let (dir, _) = dirs.into_iter().find(|(_, path)| path == "/data")?;
    let file = dir.open_at(PathFlags::empty(), "in.txt".into(), OpenFlags::empty(), DescriptorFlags::READ).await.ok()?;
    let (contents, _done) = file.read_via_stream(0);
    Some(String::from_utf8_lossy(&contents.collect().await).into_owned())
}

/// Writes `text` to stdout through a 0.3 stream.
async fn print(text: String) -> Result<(), ()> {
    let (mut tx, rx) = wasip3::wit_stream::new();
    let (written, ()) = futures::join!(async { wasip3::cli::stdout::write_via_stream(rx).await }, async {
        let left = tx.write_all(text.into_bytes()).await;
        assert!(left.is_empty());
        drop(tx);
    });
    written.map_err(|_| ())
}
