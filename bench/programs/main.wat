;; main: the smallest Gate program with an entry function (bench/launch.ts):
;; one page of memory, `main` returns at once.
(module
  (memory (export "memory") 1)
  (func (export "main")))
