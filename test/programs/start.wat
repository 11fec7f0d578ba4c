;; A module with a start section: the start function writes "start\n" to the
;; debug log before any entry function runs; the entry function "main" writes
;; "main\n".  (abi.md §1.4: start runs first on a fresh instance, and is not
;; re-run on resume.)
(module
  (import "env" "__wasi_fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; ciovec {ptr, len} at 64 and 72 (address 0 is the null pointer: EFAULT),
  ;; output word at 80, strings from 32.
  (data (i32.const 64) "\20\00\00\00\06\00\00\00")   ;; {32, 6}
  (data (i32.const 72) "\28\00\00\00\05\00\00\00")   ;; {40, 5}
  (data (i32.const 32) "start\n")
  (data (i32.const 40) "main\n")
  (func $start
    (drop (call $fd_write (i32.const 2) (i32.const 64) (i32.const 1) (i32.const 80))))
  (func (export "main")
    (drop (call $fd_write (i32.const 2) (i32.const 72) (i32.const 1) (i32.const 80))))
  (start $start))
