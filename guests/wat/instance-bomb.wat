;; The instance bomb: a command component made of twelve instances of one tiny core module,
;; so that starting it takes twelve core-instance slots. Where instances come from a shared
;; pool, a sandbox may take only its share, and this one must be refused at start — before it
;; can take slots its neighbours need. Its `wasi:cli/run` returns ok.
(component
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i0 (instantiate $m))
  (core instance $i1 (instantiate $m))
  (core instance $i2 (instantiate $m))
  (core instance $i3 (instantiate $m))
  (core instance $i4 (instantiate $m))
  (core instance $i5 (instantiate $m))
  (core instance $i6 (instantiate $m))
  (core instance $i7 (instantiate $m))
  (core instance $i8 (instantiate $m))
  (core instance $i9 (instantiate $m))
  (core instance $i10 (instantiate $m))
  (core instance $i11 (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i11 "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
