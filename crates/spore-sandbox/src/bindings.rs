//! Host bindings for the interfaces Spore implements itself (`wit/world.wit`): wasi:keyvalue
//! (0.2.0-draft and -draft2), wasi:config at both names apps import, and Spin's key-value,
//! variables and SQLite of Spin 2 (`fermyon:spin@2.0.0`, spin-sdk 5) and Spin 3 (`spin:*@3`,
//! spin-sdk 7). One world, so each interface has one set of types; its host side lives with the
//! capability it gives ([`crate::kv`], [`crate::kv_draft2`], [`crate::spin_kv`],
//! [`crate::variables`], [`crate::sqlite`]).

wasmtime::component::bindgen!({
    path: "wit",
    world: "spore:host/capabilities",
    // Functions declared sync in WIT run on the guest's fiber and may await the backend;
    // Spin 3's are WIT `async` and take the store's accessor (component-model async).
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store@0.2.0-draft.bucket": crate::kv::Bucket,
        "wasi:keyvalue/store@0.2.0-draft2.bucket": crate::kv::Bucket,
        "wasi:keyvalue/atomics@0.2.0-draft2.cas": crate::kv_draft2::Cas,
        "fermyon:spin/key-value.store": crate::kv::Bucket,
        "spin:key-value/key-value.store": crate::kv::Bucket,
        "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
        "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
    },
});
