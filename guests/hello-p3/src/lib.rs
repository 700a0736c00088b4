//! A WASI 0.3 command: `wasi:cli/run@0.3.0`, its output written through a 0.3 stream. Prints
//! a greeting and its arguments.

wasip3::cli::command::export!(Hello);

struct Hello;

impl wasip3::exports::cli::run::Guest for Hello {
    async fn run() -> Result<(), ()> {
        let args = wasip3::cli::environment::get_arguments();
        let text = format!("Hello from WASI 0.3! args={args:?}\n");
        let (mut tx, rx) = wasip3::wit_stream::new();
        let (written, ()) = futures::join!(async { wasip3::cli::stdout::write_via_stream(rx).await }, async {
            let left = tx.write_all(text.into_bytes()).await;
            assert!(left.is_empty());
            drop(tx);
        });
        written.map_err(|_| ())
    }
}
