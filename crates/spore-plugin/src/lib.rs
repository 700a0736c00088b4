//! Host-function plugins: native shared libraries an operator names in a Linux runner's
//! configuration, each serving one interface of host functions (a device: a serial port, a
//! GPIO chip) to the apps granted it — the Linux side of the device interfaces a board's
//! firmware serves itself. The ABI is C's and versioned (`include/spore_plugin.h`,
//! docs/devices.md); this crate loads a plugin, checks everything it declares, opens its
//! device, and calls its functions one at a time.
//!
//! A plugin is the operator's own native code, trusted as the runner is; what is checked is
//! that it is a sound plugin of this ABI, so a wrong file or a wrong build is refused at start
//! with a message rather than found by an app.
//!
//! Depends on `libloading` and `spore-wasip1` (the function descriptions engines link); never
//! on an engine or an async runtime.

use libloading::{Library, Symbol};
use spore_wasip1::{Import, Ty};
use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The ABI version this runner loads.
pub const ABI: u32 = 1;

/// What a function answers for "nothing yet: call again" (WASI's `-EAGAIN`; errnos in this
/// ABI are WASI's, as every Spore host answers them).
pub const AGAIN: i32 = -spore_wasip1::errno::AGAIN;

/// Parameters a plugin's function may have at most: as many as the largest WASI preview 1
/// function's, which every engine's host-call path carries.
pub const MAX_PARAMS: usize = 9;

/// Whether `name` may name a device: letters, digits, '-' and '_', at most 64 — what `--device`
/// grants on every host.
pub fn valid_name(name: &str) -> bool {
    spore_types::plain_name(name)
}

/// Why `plugin` cannot join `loaded` on one host: its name or its interface taken (an app
/// imports an interface by its module name, so one device serves it).
pub fn conflict(loaded: &[std::sync::Arc<Plugin>], plugin: &Plugin) -> Option<String> {
    if !valid_name(plugin.name()) {
        return Some(format!("{:?} is not a device name: letters, digits, '-' and '_' (at most 64)", plugin.name()));
    }
    loaded.iter().find_map(|p| {
        if p.name() == plugin.name() {
            Some(format!("a device named {} is loaded already", p.name()))
        } else if p.interface() == plugin.interface() {
            Some(format!("{} serves {} already; a host has one device an interface", p.name(), p.interface()))
        } else {
            None
        }
    })
}

/// The symbol a plugin exports.
const ENTRY: &[u8] = b"spore_plugin_v1\0";

/// The ABI's types, as `include/spore_plugin.h` declares them, for plugins written in Rust.
pub mod abi {
    use std::ffi::{c_char, c_void};

    /// A function's code: `(state, memory, memory_len, args) -> answer`.
    pub type CallFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize, *const u64) -> i32;

    /// `spore_function`.
    #[repr(C)]
    pub struct Function {
        /// The import's name, NUL-terminated.
        pub name: *const c_char,
        /// One letter a parameter ('i' i32, 'I' i64), NUL-terminated.
        pub params: *const c_char,
        /// Its code.
        pub call: Option<CallFn>,
    }

    /// `spore_plugin`: what `spore_plugin_v1` answers.
    #[repr(C)]
    pub struct Descriptor {
        /// [`crate::ABI`].
        pub abi: u32,
        /// The import module, NUL-terminated.
        pub interface: *const c_char,
        /// `function_count` functions.
        pub functions: *const Function,
        /// How many.
        pub function_count: usize,
        /// Opens the device from the configuration string; null with a message in the error
        /// buffer if it cannot.
        pub open: Option<unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_void>,
        /// Closes it.
        pub close: Option<unsafe extern "C" fn(*mut c_void)>,
    }

    // SAFETY: a plugin's descriptor is static and never written: its pointers are to static
    // strings and functions.
    unsafe impl Sync for Function {}
    // SAFETY: as above.
    unsafe impl Sync for Descriptor {}
}

use abi::CallFn;

/// Why a plugin was refused; each names the plugin and what to do.
#[derive(Debug)]
pub struct PluginError {
    name: String,
    path: PathBuf,
    why: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} ({}): {}", self.name, self.path.display(), self.why)
    }
}

impl std::error::Error for PluginError {}

/// The device's state, which only the plugin reads; behind the plugin's lock.
struct State(*mut c_void);

// SAFETY: the pointer is the plugin's; this crate only passes it back to the plugin, one call
// at a time (the lock), as the ABI promises plugins.
unsafe impl Send for State {}

/// A loaded, checked plugin with its device open.
pub struct Plugin {
    name: String,
    interface: &'static str,
    functions: Vec<Import>,
    calls: Vec<CallFn>,
    close: Option<unsafe extern "C" fn(*mut c_void)>,
    state: Mutex<State>,
    // Last: the library stays loaded while anything of it can be called.
    _library: Library,
}

impl Plugin {
    /// Loads the library at `path` as the device `name` (what `--device` grants), checks what
    /// it declares, and opens its device with the operator's `config` string.
    pub fn load(name: &str, path: &Path, config: &str) -> Result<Plugin, PluginError> {
        let refuse = |why: String| PluginError { name: name.to_string(), path: path.to_path_buf(), why };
        // SAFETY: loading runs the library's initialisers: the operator named it as a plugin,
        // trusted as the runner's own code is.
        let library = unsafe { Library::new(path) }.map_err(|e| refuse(format!("cannot load it: {e}")))?;
        // SAFETY: the symbol's type is the ABI's; a library exporting it under another type is
        // not a plugin of this ABI, which the version field below catches for any plugin made
        // from the header.
        let entry: Symbol<'_, unsafe extern "C" fn() -> *const abi::Descriptor> = unsafe { library.get(ENTRY) }
            .map_err(|_| refuse("it exports no spore_plugin_v1: not a Spore plugin (docs/devices.md)".into()))?;
        // SAFETY: as above; the plugin returns a pointer to its static description.
        let raw = unsafe { entry() };
        // SAFETY: null is refused; otherwise the plugin's static description, per the ABI.
        let raw = unsafe { raw.as_ref() }.ok_or_else(|| refuse("spore_plugin_v1 answered nothing".into()))?;
        if raw.abi != ABI {
            return Err(refuse(format!("it is built for plugin ABI {}; this runner loads ABI {ABI}", raw.abi)));
        }
        let text = |p: *const c_char, what: &str| -> Result<String, PluginError> {
            if p.is_null() {
                return Err(refuse(format!("its {what} is missing")));
            }
            // SAFETY: a NUL-terminated string of the plugin's, per the ABI.
            let s = unsafe { CStr::from_ptr(p) };
            s.to_str().map(str::to_string).map_err(|_| refuse(format!("its {what} is not UTF-8")))
        };
        let interface = text(raw.interface, "interface name")?;
        if interface.is_empty() || interface == spore_wasip1::MODULE {
            return Err(refuse(format!("it serves {interface:?}, which no plugin may: name its own interface")));
        }
        if raw.functions.is_null() || raw.function_count == 0 || raw.function_count > 256 {
            return Err(refuse(format!("it declares {} functions; 1 to 256", raw.function_count)));
        }
        // SAFETY: `function_count` entries at `functions`, per the ABI (null refused above).
        let declared = unsafe { std::slice::from_raw_parts(raw.functions, raw.function_count) };
        // The import descriptions engines link are 'static: a plugin is loaded once, at start,
        // and stays for the runner's life, so its names are kept for good.
        let interface: &'static str = Box::leak(interface.into_boxed_str());
        let (mut functions, mut calls) = (Vec::new(), Vec::new());
        for f in declared {
            let fname = text(f.name, "function name")?;
            let params = text(f.params, &format!("parameters of {fname}"))?;
            let params = signature(&params)
                .map_err(|bad| refuse(format!("function {fname} has parameters {params:?}: {bad}")))?;
            let call = f.call.ok_or_else(|| refuse(format!("function {fname} has no code")))?;
            if functions.iter().any(|i: &Import| i.name == fname) {
                return Err(refuse(format!("it declares {fname} twice")));
            }
            let fname: &'static str = Box::leak(fname.into_boxed_str());
            functions.push(Import { module: interface, name: fname, params, returns: true });
            calls.push(call);
        }
        let open = raw.open.ok_or_else(|| refuse("it has no open function".into()))?;
        let config_c = CString::new(config).map_err(|_| refuse("its configuration has a NUL byte".into()))?;
        let mut error = [0 as c_char; 256];
        // SAFETY: per the ABI: a NUL-terminated config and an error buffer of its length.
        let state = unsafe { open(config_c.as_ptr(), error.as_mut_ptr(), error.len()) };
        if state.is_null() {
            error[error.len() - 1] = 0;
            // SAFETY: NUL-terminated (the last byte at least).
            let why = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
            return Err(refuse(format!("its device did not open with {config:?}: {why}")));
        }
        Ok(Plugin {
            name: name.to_string(),
            interface,
            functions,
            calls,
            close: raw.close,
            state: Mutex::new(State(state)),
            _library: library,
        })
    }

    /// What a grant calls it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The import module its functions are under.
    pub fn interface(&self) -> &'static str {
        self.interface
    }

    /// Its functions, as engines link them.
    pub fn functions(&self) -> &[Import] {
        &self.functions
    }

    /// Calls function `index` with the app's memory and arguments: its answer, or [`AGAIN`].
    pub fn call(&self, index: usize, memory: &mut [u8], args: &[u64]) -> i32 {
        let Some(call) = self.calls.get(index) else { return -(spore_wasip1::errno::NOSYS) };
        let mut padded = [0u64; 16];
        for (slot, a) in padded.iter_mut().zip(args) {
            *slot = *a;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the plugin's function with its state, one call at a time (the lock), the
        // app's whole memory and at least as many arguments as it declared.
        unsafe { call(state.0, memory.as_mut_ptr(), memory.len(), padded.as_ptr()) }
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("interface", &self.interface).finish()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(close) = self.close {
            let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: the state `open` gave, closed once, before the library is unloaded.
            unsafe { close(state.0) };
        }
    }
}

/// Parameter letters as types, or what is wrong with them.
fn signature(letters: &str) -> Result<&'static [Ty], String> {
    let mut params = Vec::new();
    for c in letters.chars() {
        params.push(match c {
            'i' => Ty::I32,
            'I' => Ty::I64,
            other => return Err(format!("{other:?} is not 'i' (i32) or 'I' (i64)")),
        });
    }
    if params.len() > MAX_PARAMS {
        return Err(format!("more than {MAX_PARAMS}"));
    }
    // 'static as an import's are: built once, at start, for the runner's life.
    Ok(Box::leak(params.into_boxed_slice()))
}
