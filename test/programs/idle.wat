;; idle: blocks in `io` forever with one page of memory, for tests that need
;; many persistent RUNNING instances at little cost (graceful stop of a few
;; hundred instances, restart).
;;
;;   idle   blocks until input arrives (nobody sends any), forever.
(module
  (import "env" "__gate_io_65536" (func $io (param i32 i32 i32 i32 i32 i32 i64 i32)))
  (memory (export "memory") 1)
  (func (export "idle")
    (loop $wait
      ;; nrecv at 16, nsent at 20, flags at 24; timeout -1: wait for input
      (call $io (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 20) (i64.const -1) (i32.const 24))
      (br $wait))))
