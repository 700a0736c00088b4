//! An app's variables (the spec's `capabilities.variables`), read through every interface apps
//! use for them: wasi:config/store at its two names (`0.2.0-rc.1`; `0.2.0-draft-2024-09-27`,
//! spin-sdk 5's), and Spin's variables of Spin 2 (`fermyon:spin/variables@2.0.0`) and Spin 3
//! (`spin:variables/variables@3.0.0`, WIT `async`). A sandbox sees exactly its spec's variables.

use crate::bindings::fermyon::spin::variables as spin2;
use crate::bindings::spin::variables::variables as spin3;
use crate::bindings::wasi::config0_2_0_draft_2024_09_27::store as draft;
use crate::bindings::wasi::config0_2_0_rc_1::store as rc1;
use std::collections::BTreeMap;
use wasmtime::component::{Accessor, HasData};

/// One sandbox's variables, by name.
pub(crate) type Variables = BTreeMap<String, String>;

/// The view the bindings work on.
pub(crate) struct VarsView<'a>(pub(crate) &'a Variables);

pub(crate) struct HasVars;

impl HasData for HasVars {
    type Data<'a> = VarsView<'a>;
}

/// Links the four interfaces.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> VarsView<'_>,
) -> wasmtime::Result<()> {
    rc1::add_to_linker::<T, HasVars>(linker, view)?;
    draft::add_to_linker::<T, HasVars>(linker, view)?;
    spin2::add_to_linker::<T, HasVars>(linker, view)?;
    spin3::add_to_linker::<T, HasVars>(linker, view)?;
    Ok(())
}

/// Why Spin refuses a name: its variable names are lowercase ASCII letters, digits and single
/// underscores, begin with a letter and do not end with an underscore.
fn invalid_spin_name(name: &str) -> Option<&'static str> {
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("a variable name begins with a lowercase letter");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Some("a variable name has only lowercase letters, digits and underscores");
    }
    if name.contains("__") || name.ends_with('_') {
        return Some("a variable name has no double underscore and does not end with one");
    }
    None
}

/// Spin's lookup, its two error cases as text: invalid name, undefined.
fn spin_get(vars: &Variables, name: &str) -> Result<String, (bool, String)> {
    if let Some(why) = invalid_spin_name(name) {
        return Err((true, format!("{name:?}: {why}")));
    }
    vars.get(name).cloned().ok_or_else(|| (false, format!("no variable {name:?} is defined for this component")))
}

impl rc1::Host for VarsView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, rc1::Error>> {
        Ok(Ok(self.0.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, rc1::Error>> {
        Ok(Ok(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }
}

impl draft::Host for VarsView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, draft::Error>> {
        Ok(Ok(self.0.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, draft::Error>> {
        Ok(Ok(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }
}

impl spin2::Host for VarsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin2::Error>> {
        Ok(spin_get(self.0, &name).map_err(|(invalid, why)| match invalid {
            true => spin2::Error::InvalidName(why),
            false => spin2::Error::Undefined(why),
        }))
    }
}

impl spin3::Host for VarsView<'_> {}

impl<U: 'static> spin3::HostWithStore<U> for HasVars {
    async fn get(accessor: &Accessor<U, Self>, name: String) -> wasmtime::Result<Result<String, spin3::Error>> {
        let found = accessor.with(|mut access| spin_get(access.get().0, &name));
        Ok(found.map_err(|(invalid, why)| match invalid {
            true => spin3::Error::InvalidName(why),
            false => spin3::Error::Undefined(why),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_names_follow_spins_rule() {
        for ok in ["a", "api_key", "v2", "a_b_c"] {
            assert_eq!(invalid_spin_name(ok), None, "{ok}");
        }
        for bad in ["", "A", "1a", "_a", "a-b", "a__b", "a_", "Key", "a.b"] {
            assert!(invalid_spin_name(bad).is_some(), "{bad:?}");
        }
        let vars = Variables::from([("greeting".to_owned(), "hi".to_owned())]);
        assert_eq!(spin_get(&vars, "greeting"), Ok("hi".into()));
        assert!(matches!(spin_get(&vars, "missing"), Err((false, _))));
        assert!(matches!(spin_get(&vars, "Greeting"), Err((true, _))));
    }
}
