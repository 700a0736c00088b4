;; The lean reference daemon: prints "tick N", sleeps S seconds (first argument, default 10),
;; forever — like guests/refdaemon, but hand-written against WASI preview 1 with one 64 KiB page
;; of memory and no language runtime, so the density benchmark can tell Spore's per-sandbox cost
;; from a guest's own.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Layout: 0 iovec | 16 nwritten | 32 subscription (48 bytes) | 96 event (32 bytes)
  ;;         | 128 argc, 132 argv-buf-size | 256 argv pointers | 512 argv bytes | 1024 line
  (data (i32.const 1024) "tick ")

  ;; Parses the decimal digits at $p (stops at the first non-digit); 0 when there are none.
  (func $atoi (param $p i32) (result i64)
    (local $n i64) (local $c i32)
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57))))
        (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10)) (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Writes "tick N\n" at 1024 and returns its length.
  (func $line (param $n i64) (result i32)
    (local $len i32) (local $i i32) (local $digits i32)
    ;; digits of N, backwards, at 1100..
    (loop $d
      (i32.store8 (i32.add (i32.const 1100) (local.get $digits))
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $d (i64.ne (local.get $n) (i64.const 0))))
    (local.set $len (i32.const 5))
    (loop $copy
      (local.set $digits (i32.sub (local.get $digits) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 1024) (local.get $len)) (i32.load8_u (i32.add (i32.const 1100) (local.get $digits))))
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (br_if $copy (i32.ne (local.get $digits) (i32.const 0))))
    (i32.store8 (i32.add (i32.const 1024) (local.get $len)) (i32.const 10))
    (i32.add (local.get $len) (i32.const 1)))

  (func (export "_start")
    (local $secs i64) (local $tick i64)
    (local.set $secs (i64.const 10))
    ;; argv[1], if given, is the interval in seconds.
    (drop (call $args_sizes_get (i32.const 128) (i32.const 132)))
    (if (i32.and (i32.ge_u (i32.load (i32.const 128)) (i32.const 2)) (i32.le_u (i32.load (i32.const 132)) (i32.const 256)))
      (then
        (drop (call $args_get (i32.const 256) (i32.const 512)))
        (local.set $secs (call $atoi (i32.load (i32.const 260))))))
    ;; One relative clock subscription: userdata 0, tag 0 (clock), CLOCK_MONOTONIC, timeout.
    (i32.store8 (i32.const 40) (i32.const 0))
    (i32.store (i32.const 48) (i32.const 1))
    (i64.store (i32.const 56) (i64.mul (local.get $secs) (i64.const 1000000000)))
    (loop $forever
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (call $line (local.get $tick)))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (drop (call $poll_oneoff (i32.const 32) (i32.const 96) (i32.const 1) (i32.const 16)))
      (local.set $tick (i64.add (local.get $tick) (i64.const 1)))
      (br $forever))))
