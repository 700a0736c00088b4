//! An image's command line as `docker run IMAGE ARGS` composes it, for every front end that
//! starts one (`spore run`, the daemon, the shim, a bundle).

/// The arguments after argv\[0\] for an image whose `argv` is its Entrypoint (the first
/// `entrypoint_len` words, the program at least) then its Cmd: the Entrypoint's own arguments,
/// then `args` when any are given (they replace the Cmd; the Entrypoint stays), else the Cmd.
pub fn image_args(argv: &[String], entrypoint_len: usize, args: Vec<String>) -> Vec<String> {
    let entrypoint_len = entrypoint_len.max(1);
    let fixed = argv.iter().take(entrypoint_len).skip(1).cloned();
    let rest = match args.is_empty() {
        true => argv.iter().skip(entrypoint_len).cloned().collect(),
        false => args,
    };
    fixed.chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_replace_the_cmd_and_keep_the_entrypoint() {
        let argv = words("/app.wasm --verbose serve --port 80");
        assert_eq!(image_args(&argv, 2, vec![]), words("--verbose serve --port 80"));
        assert_eq!(image_args(&argv, 2, words("check")), words("--verbose check"));
        assert_eq!(image_args(&argv, 0, words("x")), words("x"), "the program is the Entrypoint at least");
        assert_eq!(image_args(&[], 1, words("x")), words("x"));
        assert_eq!(image_args(&argv, 99, words("x")), words("--verbose serve --port 80 x"));
    }
}
