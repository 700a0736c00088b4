;; The table bomb: grows a table by 65,536 elements (512 KiB of host memory each time) until
;; the host refuses, then exits with the number of growths that succeeded. Tables live outside
;; linear memory, so a host that charged only linear memory to `--memory` would let it grow to
;; its element cap instead.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func (export "_start")
    (local $grown i32)
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (table.grow $t (ref.null func) (i32.const 65536)) (i32.const -1)))
        (local.set $grown (i32.add (local.get $grown) (i32.const 1)))
        (br $more)))
    (call $exit (local.get $grown))))
