;; greet: the work of test/programs/hello.wasm `greet` without Gate's ABI,
;; for the workerd side of bench/http.ts: writes the same 13-byte greeting
;; "hello, world\n" into memory at 64 and returns its length.
(module
  (memory (export "memory") 1)
  (func (export "greet") (result i32)
    (i64.store (i32.const 64) (i64.const 0x77202c6f6c6c6568)) ;; "hello, w"
    (i32.store (i32.const 72) (i32.const 0x646c726f))          ;; "orld"
    (i32.store8 (i32.const 76) (i32.const 10))                 ;; "\n"
    (i32.const 13)))
