;; idle: Gate programs that block in `io` forever, for the density and
;; migration benchmarks (bench/density.ts, bench/migration.ts).
;;
;;   idle     1 page of memory: writes "idle\n" to the debug log (fd 2),
;;            then blocks.
;;   idle1m   grows to 1 MiB, fills it densely, then blocks.
;;   idle32m  grows to 32 MiB (gate-server's default limit), fills it densely, then blocks.
;;   idle64m  grows to 64 MiB, fills it densely, then blocks.
;;
;; Blocking: io with nothing to receive or send and timeout -1 waits until
;; input is available (abi.md §4); nobody sends any, so it waits forever
;; (the loop only guards against spurious wake-ups).
(module
  (import "env" "__gate_io_65536" (func $io (param i32 i32 i32 i32 i32 i32 i64 i32)))
  (import "env" "__wasi_fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; ciovec {32, 5} at 40 for the debug line at 32 (0..31: io's out-words).
  (data (i32.const 32) "idle\n")
  (data (i32.const 40) "\20\00\00\00\05\00\00\00")
  (func $block
    (loop $wait
      ;; nrecv at 16, nsent at 20, flags at 24
      (call $io (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 20) (i64.const -1) (i32.const 24))
      (br $wait)))
  ;; Grows memory to $pages and writes a pseudo-random word (never zero) at
  ;; every 4-byte address from 64 on: the largest snapshot that size gives.
  (func $fill (param $pages i32) (local $addr i32) (local $end i32) (local $x i32)
    (if (i32.lt_u (memory.size) (local.get $pages))
      (then (if (i32.lt_s (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const 0))
        (then unreachable))))
    (local.set $addr (i32.const 64))
    (local.set $end (i32.mul (local.get $pages) (i32.const 65536)))
    (loop $next
      (local.set $x (i32.mul (local.get $addr) (i32.const -1640531535)))
      (i32.store (local.get $addr) (i32.or (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 13))) (i32.const 1)))
      (local.set $addr (i32.add (local.get $addr) (i32.const 4)))
      (br_if $next (i32.lt_u (local.get $addr) (local.get $end)))))
  (func (export "idle")
    (drop (call $fd_write (i32.const 2) (i32.const 40) (i32.const 1) (i32.const 48)))
    (call $block))
  (func (export "idle1m") (call $fill (i32.const 16)) (call $block))
  (func (export "idle32m") (call $fill (i32.const 512)) (call $block))
  (func (export "idle64m") (call $fill (i32.const 1024)) (call $block)))
