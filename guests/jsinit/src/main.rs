//! A JavaScript app on boa: `/app.js` from the image is evaluated into a fresh context, then
//! its `main(args)` is called and what it returns printed. `wizer.initialize` does the first
//! part (the context with its builtins, the script parsed and run) at build time; `main`
//! checks whether it was done before the process started and says so.

use boa_engine::{Context, JsValue, Source, js_string};
use std::cell::RefCell;

thread_local! {
    /// The app's context, made by the init (before the snapshot) or at start.
    static APP: RefCell<Option<Context>> = const { RefCell::new(None) };
}

fn load() -> Context {
    let script = std::fs::read("/app.js").unwrap_or_else(|e| panic!("/app.js: {e}"));
    let mut context = Context::default();
    context.eval(Source::from_bytes(&script)).unwrap_or_else(|e| panic!("/app.js: {e}"));
    context
}

#[unsafe(export_name = "wizer.initialize")]
pub extern "C" fn init() {
    APP.with(|app| *app.borrow_mut() = Some(load()));
}

fn main() {
    let ready = APP.with(|app| app.borrow().is_some());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = APP.with(|app| {
        let mut app = app.borrow_mut();
        let context = app.get_or_insert_with(load);
        let main = context.global_object().get(js_string!("main"), context).expect("main");
        let list: Vec<JsValue> = args.iter().map(|a| JsValue::from(js_string!(a.as_str()))).collect();
        let array = boa_engine::object::builtins::JsArray::from_iter(list, context);
        let result = main
            .as_callable()
            .expect("main is a function")
            .call(&JsValue::undefined(), &[array.into()], context)
            .unwrap_or_else(|e| panic!("main: {e}"));
        result.to_string(context).expect("a string").to_std_string_escaped()
    });
    println!("{out} ({})", if ready { "pre-initialised" } else { "initialised at start" });
}
