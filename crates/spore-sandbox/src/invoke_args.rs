//! `--invoke EXPORT ARGS…`: text arguments read as the export's parameter types, and its
//! results printed back as text.

use crate::SandboxError;
use wasmtime::{Val, ValType};

/// `args` read as the parameters `params` of `export`: each must parse as its type.
pub fn parse_params(
    export: &str,
    params: impl ExactSizeIterator<Item = ValType>,
    args: &[String],
) -> Result<Vec<Val>, SandboxError> {
    let problem = |problem: String| SandboxError::InvokeArgs { export: export.to_owned(), problem };
    let types: Vec<ValType> = params.collect();
    if types.len() != args.len() {
        return Err(problem(format!(
            "takes {} argument(s) ({}), {} given",
            types.len(),
            types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
            args.len()
        )));
    }
    types
        .iter()
        .zip(args)
        .map(|(ty, arg)| {
            let bad = || problem(format!("argument {arg:?} is not a valid {ty}"));
            Ok(match ty {
                ValType::I32 => {
                    Val::I32(arg.parse::<i32>().or_else(|_| arg.parse::<u32>().map(|v| v as i32)).map_err(|_| bad())?)
                }
                ValType::I64 => {
                    Val::I64(arg.parse::<i64>().or_else(|_| arg.parse::<u64>().map(|v| v as i64)).map_err(|_| bad())?)
                }
                ValType::F32 => Val::F32(arg.parse::<f32>().map_err(|_| bad())?.to_bits()),
                ValType::F64 => Val::F64(arg.parse::<f64>().map_err(|_| bad())?.to_bits()),
                other => {
                    return Err(problem(format!("parameters of type {other} cannot be given on the command line")));
                }
            })
        })
        .collect()
}

pub(crate) fn format_val(v: &Val) -> String {
    match v {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        Val::V128(v) => format!("{:#034x}", v.as_u128()),
        other => format!("{other:?}"),
    }
}
